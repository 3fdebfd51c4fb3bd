//! [`Context`]: what a function sees of the runtime while it runs.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use abi_stable::std_types::{RSlice, RStr, RString};

use crate::ffi::{
    ContextErrorKind, CtxResult, FfiContext, FfiContextError, FfiRecord, FunctionInfo, OutMessage, Property,
};

/// An error from a context call: the host could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextError {
    pub kind: ContextErrorKind,
    pub message: String,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ContextError {}

impl From<FfiContextError> for ContextError {
    fn from(error: FfiContextError) -> Self {
        Self { kind: error.kind, message: error.message.into_string() }
    }
}

/// The error for a call the host's vtable is too old to have.
fn older_host(call: &str) -> ContextError {
    ContextError {
        kind: ContextErrorKind::NotAvailable,
        message: format!("{call} needs a runtime with plugin interface 1.1 or later"),
    }
}

fn lift<T>(result: CtxResult<T>) -> Result<T, ContextError> {
    result.into_result().map_err(ContextError::from)
}

/// The runtime as a function sees it: identity, config, the current message, state,
/// metrics, secrets and publishing. Log with the `tracing` macros (re-exported as
/// `pfn_abi::tracing`); events reach the host's log.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    ffi: &'a FfiContext,
    record: Option<&'a FfiRecord<'a>>,
}

impl<'a> Context<'a> {
    /// Wraps the host's context for one call.
    #[doc(hidden)]
    pub fn new(ffi: &'a FfiContext, record: Option<&'a FfiRecord<'a>>) -> Self {
        Self { ffi, record }
    }

    fn info(&self) -> FunctionInfo<'a> {
        (self.ffi.callbacks().function_info())(self.ffi.host)
    }

    /// The function's tenant.
    pub fn tenant(&self) -> &'a str {
        self.info().tenant.as_str()
    }

    /// The function's namespace.
    pub fn namespace(&self) -> &'a str {
        self.info().namespace.as_str()
    }

    /// The function's name.
    pub fn function_name(&self) -> &'a str {
        self.info().name.as_str()
    }

    /// The version of the plugin this instance runs.
    pub fn function_version(&self) -> &'a str {
        self.info().function_version.as_str()
    }

    /// This instance's id, from 0 to `num_instances() - 1`.
    pub fn instance_id(&self) -> u32 {
        self.info().instance_id
    }

    /// How many instances of the function run.
    pub fn num_instances(&self) -> u32 {
        self.info().num_instances
    }

    /// The topics the function reads.
    pub fn input_topics(&self) -> impl Iterator<Item = &'a str> {
        self.info().input_topics.as_slice().iter().map(|topic| topic.as_str())
    }

    /// The topic the function's results go to, if it has one.
    pub fn output_topic(&self) -> Option<&'a str> {
        self.info().output_topic.into_option().map(|topic| topic.as_str())
    }

    /// One value of the function's user config.
    pub fn user_config_value(&self, key: &str) -> Option<&'a str> {
        (self.ffi.callbacks().user_config_value())(self.ffi.host, RStr::from_str(key))
            .into_option()
            .map(|value| value.as_str())
    }

    /// One user-config value read as `T` (any serde type: numbers, booleans, strings, lists,
    /// structs), or None when the spec does not set it. The spec may give any TOML or JSON value;
    /// a string is read as it is when `T` is a string. A value that does not fit `T` is an error
    /// naming the key and the type.
    pub fn user_config_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.user_config_value(key).map(|text| parse_config(key, text)).transpose()
    }

    /// One user-config value read as `T`, or `default` when the spec does not set it.
    pub fn user_config_or<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.user_config_as(key)?.unwrap_or(default))
    }

    /// All of the function's user config.
    pub fn user_config(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let entries: RSlice<'a, Property<'a>> = (self.ffi.callbacks().user_config())(self.ffi.host);
        entries.as_slice().iter().map(|entry| (entry.key.as_str(), entry.value.as_str()))
    }

    /// The message being processed (None during `init` and `close`).
    pub fn current_record(&self) -> Option<RecordView<'a>> {
        self.record.map(|record| RecordView { record })
    }

    /// Reads a state value.
    pub fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, ContextError> {
        let value = lift((self.ffi.callbacks().state_get())(self.ffi.host, RStr::from_str(key)))?;
        Ok(value.into_option().map(|bytes| bytes.into_vec()))
    }

    /// Writes a state value.
    pub fn put_state(&self, key: &str, value: &[u8]) -> Result<(), ContextError> {
        lift((self.ffi.callbacks().state_put())(self.ffi.host, RStr::from_str(key), RSlice::from_slice(value)))
    }

    /// Deletes a state value.
    pub fn delete_state(&self, key: &str) -> Result<(), ContextError> {
        lift((self.ffi.callbacks().state_delete())(self.ffi.host, RStr::from_str(key)))
    }

    /// Adds `amount` to a counter and returns its new value.
    pub fn incr_counter(&self, key: &str, amount: i64) -> Result<i64, ContextError> {
        lift((self.ffi.callbacks().state_incr())(self.ffi.host, RStr::from_str(key), amount))
    }

    /// Reads a counter (0 when it was never incremented).
    pub fn get_counter(&self, key: &str) -> Result<i64, ContextError> {
        lift((self.ffi.callbacks().state_get_counter())(self.ffi.host, RStr::from_str(key)))
    }

    /// Up to `limit` state keys that start with `prefix`, in order, after `start_after` when
    /// given: pass the last key of a page to get the next one. The host returns at most 1,000
    /// keys a page.
    pub fn list_state(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<String>, ContextError> {
        let list = self.ffi.callbacks().state_list().ok_or_else(|| older_host("list_state"))?;
        let keys = lift(list(self.ffi.host, RStr::from_str(prefix), start_after.map(RStr::from_str).into(), limit))?;
        Ok(keys.into_iter().map(RString::into_string).collect())
    }

    /// Deletes every state key that starts with `prefix` (an empty prefix: all of them).
    pub fn delete_state_prefix(&self, prefix: &str) -> Result<(), ContextError> {
        let delete = self.ffi.callbacks().state_delete_prefix().ok_or_else(|| older_host("delete_state_prefix"))?;
        lift(delete(self.ffi.host, RStr::from_str(prefix)))
    }

    /// Records one value of a user metric.
    pub fn record_metric(&self, name: &str, value: f64) -> Result<(), ContextError> {
        lift((self.ffi.callbacks().record_metric())(self.ffi.host, RStr::from_str(name), value))
    }

    /// Publishes `payload` to `topic`; it is sent before the current input is acknowledged.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), ContextError> {
        self.publish_message(&Message::new(topic, payload))
    }

    /// Publishes a message with a key, properties or event time.
    pub fn publish_message(&self, message: &Message<'_>) -> Result<(), ContextError> {
        let properties: Vec<Property<'_>> = message
            .properties
            .iter()
            .map(|(key, value)| Property { key: RStr::from_str(key), value: RStr::from_str(value) })
            .collect();
        let out = OutMessage {
            topic: RStr::from_str(message.topic),
            payload: RSlice::from_slice(message.payload),
            key: message.key.map(RStr::from_str).into(),
            properties: RSlice::from_slice(&properties),
            event_time_ms: message.event_time_ms.into(),
        };
        lift((self.ffi.callbacks().publish())(self.ffi.host, &out))
    }

    /// Looks up a secret by name.
    pub fn secret(&self, name: &str) -> Result<Option<String>, ContextError> {
        let value = lift((self.ffi.callbacks().secret())(self.ffi.host, RStr::from_str(name)))?;
        Ok(value.into_option().map(|secret| secret.into_string()))
    }

    /// Acknowledges the current input. Under `manual` processing guarantees the runtime
    /// acknowledges only the inputs whose call did this (once their outputs are published), and
    /// does not retry one whose call then failed; under the others it acknowledges every input
    /// itself and this does nothing.
    pub fn ack(&self) -> Result<(), ContextError> {
        lift((self.ffi.callbacks().ack())(self.ffi.host))
    }
}

/// A user-config value that does not fit the type it was read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    /// The type it was read as.
    pub expected: &'static str,
    /// The value, as the spec gave it.
    pub found: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user config {}: {:?} is not a {}: {}", self.key, self.found, self.expected, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Reads a user-config value's text as `T`: as JSON (numbers, booleans, lists, objects, quoted
/// strings), else as a plain string.
fn parse_config<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T, ConfigError> {
    serde_json::from_str::<T>(text).or_else(|as_json| {
        serde_json::from_value::<T>(serde_json::Value::String(text.to_owned())).map_err(|_| ConfigError {
            key: key.to_owned(),
            expected: std::any::type_name::<T>(),
            found: text.to_owned(),
            reason: as_json.to_string(),
        })
    })
}

/// A message to publish through [`Context::publish_message`].
#[derive(Debug, Clone, Copy)]
pub struct Message<'m> {
    pub topic: &'m str,
    pub payload: &'m [u8],
    pub key: Option<&'m str>,
    pub properties: &'m [(&'m str, &'m str)],
    pub event_time_ms: Option<i64>,
}

impl<'m> Message<'m> {
    /// A message with a payload and nothing else.
    pub fn new(topic: &'m str, payload: &'m [u8]) -> Self {
        Self { topic, payload, key: None, properties: &[], event_time_ms: None }
    }
}

/// The metadata of the message being processed.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    record: &'a FfiRecord<'a>,
}

impl<'a> RecordView<'a> {
    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.record.payload.as_slice()
    }

    /// The message key, if any.
    pub fn key(&self) -> Option<&'a str> {
        self.record.key.into_option().map(|key| key.as_str())
    }

    /// All properties.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.record.properties.as_slice().iter().map(|p| (p.key.as_str(), p.value.as_str()))
    }

    /// One property.
    pub fn property(&self, key: &str) -> Option<&'a str> {
        self.properties().find(|(name, _)| *name == key).map(|(_, value)| value)
    }

    /// The event time in milliseconds since the Unix epoch.
    pub fn event_time_ms(&self) -> Option<i64> {
        self.record.event_time_ms.into_option()
    }

    /// The event time.
    pub fn event_time(&self) -> Option<SystemTime> {
        let millis = u64::try_from(self.event_time_ms()?).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_millis(millis))
    }

    /// The topic the message came from.
    pub fn topic(&self) -> &'a str {
        self.record.topic.as_str()
    }

    /// The message id.
    pub fn message_id(&self) -> &'a str {
        self.record.message_id.as_str()
    }

    /// How many times the message was delivered before.
    pub fn redelivery_count(&self) -> u32 {
        self.record.redelivery_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Rule {
        field: String,
        above: f64,
    }

    #[test]
    fn user_config_reads_each_type_and_names_the_key_when_it_does_not_fit() {
        assert_eq!(parse_config::<i64>("n", "42"), Ok(42));
        assert_eq!(parse_config::<f64>("x", "2.5"), Ok(2.5));
        assert_eq!(parse_config::<bool>("b", "true"), Ok(true));
        assert_eq!(parse_config::<String>("s", "hello"), Ok("hello".to_owned()));
        assert_eq!(parse_config::<String>("s", "true"), Ok("true".to_owned()), "a string that looks like JSON");
        assert_eq!(parse_config::<Vec<u32>>("l", "[1,2]"), Ok(vec![1, 2]));
        let rule = parse_config::<Rule>("rule", r#"{"field":"temp","above":30}"#);
        assert_eq!(rule, Ok(Rule { field: "temp".into(), above: 30.0 }));
        let error = parse_config::<i64>("limit", "lots").expect_err("not a number");
        assert_eq!((error.key.as_str(), error.expected, error.found.as_str()), ("limit", "i64", "lots"));
        assert!(error.to_string().starts_with("user config limit: \"lots\" is not a i64"), "{error}");
    }
}
