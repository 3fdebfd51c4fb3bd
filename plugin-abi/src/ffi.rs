//! FFI-safe types that cross the plugin edge.
//!
//! Ownership: everything a call receives by reference (records, the context, string slices)
//! is owned by the caller and valid only for that call. Owned values returned across the edge
//! (`RString`, `RVec`) carry their own deallocator, so either side may free them.

use std::ffi::c_void;

use abi_stable::{
    StableAbi,
    prefix_type::{PrefixRef, WithMetadata_},
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
};

/// A key/value pair: a message property or a user-config entry.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Property<'a> {
    pub key: RStr<'a>,
    pub value: RStr<'a>,
}

/// One input message, borrowed from the host for the duration of a call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiRecord<'a> {
    /// The message payload.
    pub payload: RSlice<'a, u8>,
    /// The message key (Pulsar's partition key), if any.
    pub key: ROption<RStr<'a>>,
    /// The message properties.
    pub properties: RSlice<'a, Property<'a>>,
    /// The event time in milliseconds since the Unix epoch, if the producer set one.
    pub event_time_ms: ROption<i64>,
    /// The topic the message came from.
    pub topic: RStr<'a>,
    /// The message id, in the transport's own textual form.
    pub message_id: RStr<'a>,
    /// How many times this message was delivered before (0 on the first delivery).
    pub redelivery_count: u32,
}

/// What a successful call produced.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produced {
    /// The output bytes are in the call's output buffer.
    Output,
    /// No output: the function returned nothing or filtered the message out.
    Nothing,
}

/// Why a call failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The function returned an error.
    User,
    /// The function panicked; the panic was caught inside the plugin.
    Panic,
    /// The payload could not be decoded into the function's input type.
    BadInput,
}

/// An error returned across the edge.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    pub kind: ErrorKind,
    pub message: RString,
}

/// An opaque pointer to a plugin-side instance; only the plugin that made it can use it.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct InstanceHandle(pub *mut c_void);

// SAFETY: the host gives an instance to one thread at a time; `Function` requires `Send`.
unsafe impl Send for InstanceHandle {}

/// An opaque pointer to the host's per-instance state, passed back to every host callback.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct HostHandle(pub *const c_void);

// SAFETY: the host's per-instance state is `Sync`; the pointer is only dereferenced by the host.
unsafe impl Send for HostHandle {}
// SAFETY: as above.
unsafe impl Sync for HostHandle {}

/// What the host hands to every call: its state and its callbacks.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiContext {
    pub host: HostHandle,
    /// The host's callbacks, typed as the interface-1.0 table (see [`HostCallbacks`] for all of
    /// them and why).
    pub vtable: HostVtableRef,
}

impl FfiContext {
    /// Every callback of the host, including those added after interface 1.0 (each of which
    /// an older host's table lacks: its accessor returns `None` then).
    pub fn callbacks(&self) -> HostCallbacksRef {
        // SAFETY: the host's table is a `WithMetadata<HostCallbacks>` of this or an older minor
        // of the interface: `HostVtable`'s fields in the same order, then the ones added since.
        // Its metadata says which fields it has, and the accessors of the later ones check it.
        HostCallbacksRef(unsafe {
            PrefixRef::from_raw(
                self.vtable.0.to_raw_ptr().cast::<WithMetadata_<HostCallbacks_Prefix, HostCallbacks_Prefix>>(),
            )
        })
    }
}

impl std::fmt::Debug for FfiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfiContext").field("host", &self.host).finish_non_exhaustive()
    }
}

/// Log levels, most severe first.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Static facts about the running function instance.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FunctionInfo<'a> {
    pub tenant: RStr<'a>,
    pub namespace: RStr<'a>,
    pub name: RStr<'a>,
    /// The plugin version the instance runs.
    pub function_version: RStr<'a>,
    pub instance_id: u32,
    pub num_instances: u32,
    pub input_topics: RSlice<'a, RStr<'a>>,
    pub output_topic: ROption<RStr<'a>>,
}

/// A message published through the context to a topic of the function's choosing.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct OutMessage<'a> {
    pub topic: RStr<'a>,
    pub payload: RSlice<'a, u8>,
    pub key: ROption<RStr<'a>>,
    pub properties: RSlice<'a, Property<'a>>,
    pub event_time_ms: ROption<i64>,
}

/// Why a context call failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextErrorKind {
    /// This runtime does not provide the facility (yet, or in this mode).
    NotAvailable,
    /// The arguments were refused (an unknown topic, a key too long, ...).
    InvalidArgument,
    /// The facility is there but the operation failed (store error, broker error, ...).
    Failed,
}

/// An error from a context call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiContextError {
    pub kind: ContextErrorKind,
    pub message: RString,
}

/// A context call's result.
pub type CtxResult<T> = RResult<T, FfiContextError>;

/// Declares the host's two callback tables from one list: [`HostVtable`], the callbacks of
/// interface 1.0, and [`HostCallbacks`], the same followed by those added since.
///
/// `FfiContext` names `HostVtable`, which stays as it was in 1.0 for good: the load-time layout
/// check only accepts a library's prefix types with at least the loader's fields, and this table
/// goes the other way (the host makes it, the plugin reads it), so a 1.0 plugin would be refused
/// by a host whose declared table had grown. The host builds a `HostCallbacks` table; plugins
/// read it through [`FfiContext::callbacks`]. The callbacks themselves never change within a
/// major version of [`crate::ABI_VERSION`].
macro_rules! host_callback_tables {
    (
        $( $(#[doc = $doc:literal])* pub $field:ident : $ty:ty, )*
        last: $(#[doc = $last_doc:literal])* pub $last:ident : $last_ty:ty,
        added: $( $(#[doc = $added_doc:literal])* pub $added:ident : $added_ty:ty, )*
    ) => {
        /// The two tables, apart so that the lint exception covers what the derive generates.
        #[allow(missing_debug_implementations)]
        mod callback_tables {
            use super::*;

        /// The host's callbacks of interface 1.0; see [`HostCallbacks`].
        #[repr(C)]
        #[derive(StableAbi)]
        #[sabi(kind(Prefix(prefix_ref = HostVtableRef)))]
        #[sabi(missing_field(panic))]
        pub struct HostVtable {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $(#[doc = $last_doc])*
            #[sabi(last_prefix_field)]
            pub $last: $last_ty,
        }

        /// The host's callbacks: those of interface 1.0, then those added since, which an older
        /// host's table may lack (their accessors return `None` then).
        ///
        /// String slices returned with a `'static` lifetime are valid while the instance lives.
        #[repr(C)]
        #[derive(StableAbi)]
        #[sabi(kind(Prefix(prefix_ref = HostCallbacksRef)))]
        #[sabi(missing_field(panic))]
        pub struct HostCallbacks {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $(#[doc = $last_doc])*
            #[sabi(last_prefix_field)]
            pub $last: $last_ty,
            $( $(#[doc = $added_doc])* #[sabi(missing_field(option))] pub $added: $added_ty, )*
        }
        }

        pub use callback_tables::{
            HostCallbacks, HostCallbacks_Prefix, HostCallbacksRef, HostVtable, HostVtable_Prefix, HostVtableRef,
        };
    };
}

host_callback_tables! {
    /// Whether an event at `level` would be recorded; lets plugins skip formatting.
    pub log_enabled: extern "C" fn(level: LogLevel) -> bool,
    /// Records a log event from the plugin in the host's log, inside the calling instance's span.
    pub log: extern "C" fn(level: LogLevel, target: RStr<'_>, message: RStr<'_>),
    /// The function's name, tenant, namespace, instance and topics.
    pub function_info: extern "C" fn(host: HostHandle) -> FunctionInfo<'static>,
    /// One user-config value.
    pub user_config_value: extern "C" fn(host: HostHandle, key: RStr<'_>) -> ROption<RStr<'static>>,
    /// All user-config entries.
    pub user_config: extern "C" fn(host: HostHandle) -> RSlice<'static, Property<'static>>,
    /// Reads a state value.
    pub state_get: extern "C" fn(host: HostHandle, key: RStr<'_>) -> CtxResult<ROption<RVec<u8>>>,
    /// Writes a state value.
    pub state_put: extern "C" fn(host: HostHandle, key: RStr<'_>, value: RSlice<'_, u8>) -> CtxResult<()>,
    /// Deletes a state value.
    pub state_delete: extern "C" fn(host: HostHandle, key: RStr<'_>) -> CtxResult<()>,
    /// Adds `amount` to a counter and returns its new value.
    pub state_incr: extern "C" fn(host: HostHandle, key: RStr<'_>, amount: i64) -> CtxResult<i64>,
    /// Reads a counter (0 when absent).
    pub state_get_counter: extern "C" fn(host: HostHandle, key: RStr<'_>) -> CtxResult<i64>,
    /// Records a value of a user metric.
    pub record_metric: extern "C" fn(host: HostHandle, name: RStr<'_>, value: f64) -> CtxResult<()>,
    /// Publishes a message to a topic; it is sent before the current input is acknowledged.
    pub publish: extern "C" fn(host: HostHandle, message: &OutMessage<'_>) -> CtxResult<()>,
    /// Looks up a secret by name.
    pub secret: extern "C" fn(host: HostHandle, name: RStr<'_>) -> CtxResult<ROption<RString>>,
    last:
    /// Acknowledges the current input (functions with `manual` processing guarantees).
    pub ack: extern "C" fn(host: HostHandle) -> CtxResult<()>,
    added:
    /// Up to `limit` state keys that start with `prefix` and sort after `start_after`, in order
    /// (since 1.1).
    pub state_list: extern "C" fn(
        host: HostHandle,
        prefix: RStr<'_>,
        start_after: ROption<RStr<'_>>,
        limit: u32,
    ) -> CtxResult<RVec<RString>>,
    /// Deletes every state key that starts with `prefix` (since 1.1).
    pub state_delete_prefix: extern "C" fn(host: HostHandle, prefix: RStr<'_>) -> CtxResult<()>,
    /// Records a log event from the plugin with its fields apart from its message, for the
    /// host's log and the function's log topic (since 1.2; `log` before).
    pub log_record:
        extern "C" fn(level: LogLevel, target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, Property<'_>>),
}
