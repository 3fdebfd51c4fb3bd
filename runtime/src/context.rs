//! The host side of the context vtable: what a plugin's `Context` calls into.
//!
//! Every callback runs under `catch_unwind`, so a host-side panic never unwinds into a plugin.
//! Facilities that belong to later parts of the runtime (state, metrics, publish, secrets)
//! answer `NotAvailable` with a message saying so.

use std::{
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::atomic::{AtomicBool, Ordering},
};

use abi_stable::{
    prefix_type::WithMetadata,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
};
use pfn_abi::ffi::{
    ContextErrorKind, CtxResult, FfiContext, FfiContextError, FunctionInfo, HostHandle, HostVtable, HostVtableRef,
    LogLevel, OutMessage, Property,
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
            user_config: spec.user_config.clone(),
        }
    }

    /// `tenant/namespace/name`.
    pub fn fqfn(&self) -> String {
        crate::vocabulary::fqfn(&self.tenant, &self.namespace, &self.name)
    }
}

/// What a call did through its context, to be applied with its input's commit, or dropped with
/// it when the call's results are discarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The function acknowledged its input (`manual` guarantees).
    pub acked: bool,
}

impl Effects {
    /// What two calls on the same input did (the new version's and the old one's, on probation).
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self { acked: self.acked || other.acked }
    }
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
    /// Set when the function acknowledges the input it is processing (`manual` guarantees).
    input_acked: AtomicBool,
}

/// Extends a borrow of a string owned by an `InstanceHost` to `'static`.
///
/// # Safety
/// `text` must be owned by an `InstanceHost` field that is never mutated, and the result must
/// not be used after that `InstanceHost` is dropped.
unsafe fn pinned_view(text: &str) -> RStr<'static> {
    // SAFETY: per this function's contract, the buffer outlives every use of the view.
    unsafe { std::mem::transmute::<RStr<'_>, RStr<'static>>(RStr::from_str(text)) }
}

impl InstanceHost {
    /// The host state for an instance of `identity` running plugin version `function_version`.
    pub fn new(identity: FunctionIdentity, function_version: String) -> Self {
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
        Self { identity, function_version, topic_views, config_views, input_acked: AtomicBool::new(false) }
    }

    /// The identity this host reports.
    pub fn identity(&self) -> &FunctionIdentity {
        &self.identity
    }

    /// What the function did through its context since this was last asked.
    pub fn take_effects(&self) -> Effects {
        Effects { acked: self.input_acked.swap(false, Ordering::Relaxed) }
    }

    /// The FFI context for this host; valid while `self` is neither moved nor dropped.
    pub fn ffi_context(&self) -> FfiContext {
        FfiContext { host: HostHandle(std::ptr::from_ref(self).cast()), vtable: HOST_VTABLE }
    }
}

/// Recovers the host state from a handle.
///
/// # Safety
/// `host` must come from [`InstanceHost::ffi_context`] of a live `InstanceHost`.
unsafe fn host_of<'a>(host: HostHandle) -> &'a InstanceHost {
    // SAFETY: per this function's contract.
    unsafe { &*host.0.cast::<InstanceHost>() }
}

/// Runs a callback body so that a host panic becomes `fallback` instead of unwinding.
fn guarded<T>(fallback: impl FnOnce() -> T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| fallback())
}

fn failure<T>(kind: ContextErrorKind, message: impl Into<String>) -> CtxResult<T> {
    RResult::RErr(FfiContextError { kind, message: RString::from(message.into()) })
}

fn guarded_ctx<T>(body: impl FnOnce() -> CtxResult<T>) -> CtxResult<T> {
    guarded(|| failure(ContextErrorKind::Failed, "the runtime failed while serving this call"), body)
}

fn not_available<T>(facility: &str) -> CtxResult<T> {
    failure(ContextErrorKind::NotAvailable, format!("{facility} is not available in this runtime yet"))
}

extern "C" fn log_enabled(level: LogLevel) -> bool {
    guarded(
        || false,
        || match level {
            LogLevel::Error => tracing::enabled!(target: "pfn::plugin", tracing::Level::ERROR),
            LogLevel::Warn => tracing::enabled!(target: "pfn::plugin", tracing::Level::WARN),
            LogLevel::Info => tracing::enabled!(target: "pfn::plugin", tracing::Level::INFO),
            LogLevel::Debug => tracing::enabled!(target: "pfn::plugin", tracing::Level::DEBUG),
            LogLevel::Trace => tracing::enabled!(target: "pfn::plugin", tracing::Level::TRACE),
        },
    )
}

extern "C" fn log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
    let (target, message) = (target.as_str(), message.as_str());
    guarded(
        || (),
        || match level {
            LogLevel::Error => tracing::error!(target: "pfn::plugin", plugin_target = target, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "pfn::plugin", plugin_target = target, "{message}"),
            LogLevel::Info => tracing::info!(target: "pfn::plugin", plugin_target = target, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "pfn::plugin", plugin_target = target, "{message}"),
            LogLevel::Trace => tracing::trace!(target: "pfn::plugin", plugin_target = target, "{message}"),
        },
    );
}

extern "C" fn function_info(host: HostHandle) -> FunctionInfo<'static> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    let identity = &host.identity;
    // SAFETY: the views are into `host`, which outlives the instance's use of them (see
    // `HostVtable`: returned `'static` slices are valid while the instance lives).
    unsafe {
        FunctionInfo {
            tenant: pinned_view(&identity.tenant),
            namespace: pinned_view(&identity.namespace),
            name: pinned_view(&identity.name),
            function_version: pinned_view(&host.function_version),
            instance_id: identity.instance_id,
            num_instances: identity.num_instances,
            input_topics: RSlice::from_slice(std::mem::transmute::<&[RStr<'static>], &'static [RStr<'static>]>(
                host.topic_views.as_slice(),
            )),
            output_topic: identity.output_topic.as_deref().map(|topic| pinned_view(topic)).into(),
        }
    }
}

extern "C" fn user_config_value(host: HostHandle, key: RStr<'_>) -> ROption<RStr<'static>> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    guarded(
        || ROption::RNone,
        || {
            let value = host.identity.user_config.get(key.as_str());
            // SAFETY: the value is owned by `host`; see `function_info`.
            value.map(|value| unsafe { pinned_view(value) }).into()
        },
    )
}

extern "C" fn user_config(host: HostHandle) -> RSlice<'static, Property<'static>> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    // SAFETY: the views are owned by `host`; see `function_info`.
    RSlice::from_slice(unsafe {
        std::mem::transmute::<&[Property<'static>], &'static [Property<'static>]>(host.config_views.as_slice())
    })
}

extern "C" fn state_get(_: HostHandle, _: RStr<'_>) -> CtxResult<ROption<RVec<u8>>> {
    guarded_ctx(|| not_available("state"))
}

extern "C" fn state_put(_: HostHandle, _: RStr<'_>, _: RSlice<'_, u8>) -> CtxResult<()> {
    guarded_ctx(|| not_available("state"))
}

extern "C" fn state_delete(_: HostHandle, _: RStr<'_>) -> CtxResult<()> {
    guarded_ctx(|| not_available("state"))
}

extern "C" fn state_incr(_: HostHandle, _: RStr<'_>, _: i64) -> CtxResult<i64> {
    guarded_ctx(|| not_available("state"))
}

extern "C" fn state_get_counter(_: HostHandle, _: RStr<'_>) -> CtxResult<i64> {
    guarded_ctx(|| not_available("state"))
}

extern "C" fn record_metric(_: HostHandle, _: RStr<'_>, _: f64) -> CtxResult<()> {
    guarded_ctx(|| not_available("record_metric"))
}

extern "C" fn publish(_: HostHandle, _: &OutMessage<'_>) -> CtxResult<()> {
    guarded_ctx(|| not_available("publish"))
}

extern "C" fn secret(_: HostHandle, _: RStr<'_>) -> CtxResult<ROption<RString>> {
    guarded_ctx(|| not_available("secrets"))
}

/// Notes that the function acknowledged its current input; the instance loop acts on it under
/// `manual` guarantees and ignores it otherwise (the runtime acknowledges every input then).
extern "C" fn ack(host: HostHandle) -> CtxResult<()> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    guarded_ctx(|| {
        host.input_acked.store(true, Ordering::Relaxed);
        RResult::ROk(())
    })
}

static HOST_VTABLE_WITH_METADATA: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
    log_enabled,
    log,
    function_info,
    user_config_value,
    user_config,
    state_get,
    state_put,
    state_delete,
    state_incr,
    state_get_counter,
    record_metric,
    publish,
    secret,
    ack,
});

/// The callbacks every instance's context carries.
pub const HOST_VTABLE: HostVtableRef = HostVtableRef(HOST_VTABLE_WITH_METADATA.static_as_prefix());
