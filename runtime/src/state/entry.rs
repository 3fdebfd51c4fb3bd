//! One state entry as Pulsar Functions' admin API shows it (`FunctionState`): the key with its
//! value as text, as base64 bytes, or as a counter's number.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde::{Deserialize, Serialize};

use super::{Layer, StateError, check_key, counter};

/// A key and its value, named as Pulsar's `FunctionState` names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    pub key: String,
    /// The value, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// The value in base64, when it is not UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_value: Option<String>,
    /// The counter's value, when asked for as a counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_value: Option<i64>,
}

impl StateEntry {
    /// The entry for `value` of `key`: its number when `as_counter`, else its text or bytes.
    pub fn read(key: &str, value: &[u8], as_counter: bool) -> Result<Self, StateError> {
        let mut entry = Self { key: key.to_owned(), ..Self::default() };
        if as_counter {
            entry.number_value =
                Some(counter::decode(value).ok_or_else(|| StateError::NotACounter { key: key.to_owned() })?);
        } else {
            match std::str::from_utf8(value) {
                Ok(text) => entry.string_value = Some(text.to_owned()),
                Err(_) => entry.byte_value = Some(BASE64.encode(value)),
            }
        }
        Ok(entry)
    }

    /// The write that sets the entry's value (exactly one of its values must be set).
    pub fn write(&self) -> Result<Layer, StateError> {
        check_key(&self.key)?;
        let value = match (&self.string_value, &self.byte_value, self.number_value) {
            (Some(text), None, None) => text.as_bytes().to_vec(),
            (None, Some(base64), None) => {
                BASE64.decode(base64).map_err(|error| StateError::BadEntry { reason: format!("byteValue: {error}") })?
            }
            (None, None, Some(number)) => counter::encode(number),
            _ => {
                return Err(StateError::BadEntry {
                    reason: "give exactly one of stringValue, byteValue and numberValue".into(),
                });
            }
        };
        let mut layer = Layer::default();
        layer.put(&self.key, value);
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_as_text_bytes_or_counters_and_write_back() {
        let text = StateEntry::read("k", b"hello", false).expect("text");
        assert_eq!(text.string_value.as_deref(), Some("hello"));
        let bytes = StateEntry::read("k", &[0xff, 0], false).expect("bytes");
        assert_eq!(bytes.byte_value.as_deref(), Some("/wA="));
        let number = StateEntry::read("k", &counter::encode(-7), true).expect("counter");
        assert_eq!(number.number_value, Some(-7));
        assert!(StateEntry::read("k", b"hello", true).is_err());
        for entry in [text, bytes, number] {
            assert!(!entry.write().expect("one value").is_empty());
        }
        assert!(StateEntry { key: "k".into(), ..StateEntry::default() }.write().is_err());
        let json = serde_json::to_string(&StateEntry::read("k", b"v", false).expect("text")).expect("json");
        assert_eq!(json, r#"{"key":"k","stringValue":"v"}"#);
    }
}
