//! The host side of a plugin's `Context`: who the instance is, the services it was given when
//! it was created, and what its calls did.
//!
//! - [`vtable`]: the callbacks a plugin's `Context` calls into.

mod vtable;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use abi_stable::std_types::RStr;
use pfn_abi::ffi::{FfiContext, HostHandle, Property};

pub use self::vtable::HOST_VTABLE;
pub(crate) use self::vtable::record as record_plugin_event;
use crate::{
    io::transport::Message,
    plugin_log::{FunctionLog, InstanceLog},
    secrets::Secrets,
    state::{Layer, StateError},
    sync::lock,
};

/// Who a function instance is: the facts its context reports.
#[derive(Debug, Clone, Default)]
pub struct FunctionIdentity {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
    pub instance_id: u32,
    pub num_instances: u32,
    pub input_topics: Vec<String>,
    pub output_topic: Option<String>,
    pub user_config: BTreeMap<String, String>,
}

impl FunctionIdentity {
    /// The identity of instance `instance_id` of the function `spec` describes.
    pub fn for_spec(spec: &crate::config::FunctionSpec, instance_id: u32) -> Self {
        Self {
            tenant: spec.tenant.clone(),
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            instance_id,
            num_instances: spec.parallelism,
            input_topics: spec.inputs.clone(),
            output_topic: spec.output.clone(),
            user_config: spec.user_config.iter().map(|(key, value)| (key.clone(), config_text(value))).collect(),
        }
    }

    /// `tenant/namespace/name`.
    pub fn fqfn(&self) -> String {
        crate::vocabulary::fqfn(&self.tenant, &self.namespace, &self.name)
    }
}

/// How a user-config value reaches the function: a string as it is, anything else as JSON text
/// (which the function's `user_config_as` reads back typed).
pub fn config_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A message a call published to a topic of its choosing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub topic: String,
    pub message: Message,
}

/// What a call did through its context, to be applied with its input's commit, or dropped with
/// it when the call's results are discarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The function acknowledged its input (`manual` guarantees).
    pub acked: bool,
    /// What it published, in order; empty when the call failed.
    pub published: Vec<Publication>,
}

impl Effects {
    /// What two calls on the same input did (the new version's and the old one's, on probation).
    #[must_use]
    pub fn or(mut self, other: Self) -> Self {
        self.acked |= other.acked;
        self.published.extend(other.published);
        self
    }
}

/// The function's state as one instance sees it: its own writes in progress over what is
/// stored. A call's writes are its own until [`StateAccess::end_call`] says it succeeded.
pub trait StateAccess: Send + Sync + fmt::Debug {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError>;
    fn delete(&self, key: &str) -> Result<(), StateError>;
    /// Adds `amount` to counter `key`; returns its value as this call sees it now.
    fn incr(&self, key: &str, amount: i64) -> Result<i64, StateError>;
    fn get_counter(&self, key: &str) -> Result<i64, StateError>;
    /// Up to `limit` keys starting with `prefix`, after `start_after`, in order.
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<String>, StateError>;
    /// Deletes every key that starts with `prefix` (an empty prefix: every key).
    fn delete_prefix(&self, prefix: &str) -> Result<(), StateError>;
    /// Ends a call: its writes are kept when it succeeded, and dropped otherwise.
    fn end_call(&self, succeeded: bool);

    /// The writes kept so far, to go back to with [`Self::rewind`] when the calls after this
    /// point are undone (their process died). `None` where writes are not kept here.
    fn checkpoint(&self) -> Option<Layer> {
        None
    }

    /// Drops every write since `checkpoint` was taken.
    fn rewind(&self, checkpoint: Layer) {
        let _ = checkpoint;
    }
}

/// Where `record_metric` records.
pub trait MetricRecorder: Send + Sync + fmt::Debug {
    /// Records one value of the function's metric `name`.
    fn record(&self, name: &str, value: f64);

    /// Records that the process hosting the instance died and was restarted, and why.
    fn record_restart(&self, cause: &str) {
        let _ = cause;
    }
}

/// What an instance is given, when it is created, to serve its context calls. A service it was
/// not given answers `NotAvailable`.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// The function's state, seen through this instance's writes in progress.
    pub state: Option<Arc<dyn StateAccess>>,
    /// The instance's metrics, where `record_metric` records.
    pub metrics: Option<Arc<dyn MetricRecorder>>,
    /// The function's secrets, resolved when it started.
    pub secrets: Option<Arc<Secrets>>,
    /// The function's log level and log topic.
    pub log: Option<Arc<FunctionLog>>,
}

/// Why a publish was refused at once.
#[derive(Debug, thiserror::Error)]
enum PublishRefused {
    #[error("publish is possible only while processing a message, not in init or close")]
    OutsideCall,
    #[error("{topic:?} is not a topic name: {reason}")]
    TopicName { topic: String, reason: String },
}

/// The host state behind one instance's `HostHandle`. Its address must not change while the
/// instance lives (it is boxed by [`crate::instance::PluginInstance`]).
#[derive(Debug)]
pub struct InstanceHost {
    identity: FunctionIdentity,
    function_version: String,
    /// Views into the strings of `identity`, handed to the plugin. The strings' heap buffers
    /// never move or change while this struct lives, which is what makes these valid.
    topic_views: Vec<RStr<'static>>,
    config_views: Vec<Property<'static>>,
    services: Services,
    /// Where the plugin's log events go, for the instance's calls.
    log: Option<InstanceLog>,
    /// Set while the instance processes an input: publishing is possible only then.
    in_call: AtomicBool,
    /// Set when the function acknowledges the input it is processing (`manual` guarantees).
    input_acked: AtomicBool,
    /// What the call in progress published, and whether it published at all.
    published: Mutex<Vec<Publication>>,
    has_published: AtomicBool,
}

/// Extends a borrow of a string owned by an `InstanceHost` to `'static`.
///
/// # Safety
/// `text` must be owned by an `InstanceHost` field that is never mutated, and the result must
/// not be used after that `InstanceHost` is dropped.
pub(crate) unsafe fn pinned_view(text: &str) -> RStr<'static> {
    // SAFETY: per this function's contract, the buffer outlives every use of the view.
    unsafe { std::mem::transmute::<RStr<'_>, RStr<'static>>(RStr::from_str(text)) }
}

impl InstanceHost {
    /// The host state for an instance of `identity` running plugin version `function_version`.
    pub fn new(identity: FunctionIdentity, function_version: String, services: Services) -> Self {
        // The views point into `identity`'s strings, which move with it into the returned
        // struct without their heap buffers moving, and are never mutated.
        let topic_views = identity
            .input_topics
            .iter()
            // SAFETY: as just said.
            .map(|topic| unsafe { pinned_view(topic) })
            .collect();
        let config_views = identity
            .user_config
            .iter()
            // SAFETY: as for the topics.
            .map(|(key, value)| unsafe { Property { key: pinned_view(key), value: pinned_view(value) } })
            .collect();
        let log = services
            .log
            .as_ref()
            .map(|function| InstanceLog { function: Arc::clone(function), instance_id: identity.instance_id });
        Self {
            identity,
            function_version,
            topic_views,
            config_views,
            services,
            log,
            in_call: AtomicBool::new(false),
            input_acked: AtomicBool::new(false),
            published: Mutex::default(),
            has_published: AtomicBool::new(false),
        }
    }

    /// The identity this host reports.
    pub fn identity(&self) -> &FunctionIdentity {
        &self.identity
    }

    /// The instance's log, entered around every call into its plugin.
    pub fn log(&self) -> Option<&InstanceLog> {
        self.log.as_ref()
    }

    /// Starts a call: an acknowledgement made outside a call is forgotten.
    pub fn begin_call(&self) {
        self.input_acked.store(false, Ordering::Relaxed);
        self.in_call.store(true, Ordering::Relaxed);
    }

    /// Ends a call: what the function did through its context when it succeeded (its state
    /// writes kept for the batch, its publishes handed over); a failed call leaves no trace.
    pub fn end_call(&self, succeeded: bool) -> Effects {
        self.in_call.store(false, Ordering::Relaxed);
        if let Some(state) = &self.services.state {
            state.end_call(succeeded);
        }
        // Most calls publish nothing: leave the lock alone then.
        let published = if self.has_published.swap(false, Ordering::Relaxed) {
            let kept = std::mem::take(&mut *lock(&self.published));
            if succeeded { kept } else { Vec::new() }
        } else {
            Vec::new()
        };
        Effects { acked: self.input_acked.swap(false, Ordering::Relaxed), published }
    }

    /// Keeps a message the call in progress publishes, to be sent with its input's commit.
    fn publish(&self, publication: Publication) -> Result<(), PublishRefused> {
        if !self.in_call.load(Ordering::Relaxed) {
            return Err(PublishRefused::OutsideCall);
        }
        if let Err(reason) = crate::config::check_topic(&publication.topic) {
            return Err(PublishRefused::TopicName { topic: publication.topic, reason });
        }
        lock(&self.published).push(publication);
        self.has_published.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The FFI context for this host; valid while `self` is neither moved nor dropped.
    pub fn ffi_context(&self) -> FfiContext {
        FfiContext { host: HostHandle(std::ptr::from_ref(self).cast()), vtable: HOST_VTABLE }
    }
}
