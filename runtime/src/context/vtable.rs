//! The callbacks a plugin's `Context` calls into, one per `HostVtable` field.
//!
//! Every callback runs under `catch_unwind`, so a host-side panic never unwinds into a plugin.
//! A facility the instance was not given answers `NotAvailable` with a message saying so.

use std::{
    fmt::Write as _,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::atomic::Ordering,
};

use abi_stable::{
    prefix_type::{PrefixRef, WithMetadata, WithMetadata_},
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
};
use pfn_abi::ffi::{
    ContextErrorKind, CtxResult, FfiContextError, FunctionInfo, HostCallbacks, HostHandle, HostVtable_Prefix,
    HostVtableRef, LogLevel, OutMessage, Property,
};

use super::{InstanceHost, Publication, StateAccess, pinned_view};
use crate::{io::transport::Message, plugin_log, state::StateError};

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

/// The `tracing` level of a plugin's.
fn tracing_level(level: LogLevel) -> tracing::Level {
    match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    }
}

extern "C" fn log_enabled(level: LogLevel) -> bool {
    guarded(
        || false,
        || {
            if let Some(forward) = plugin_log::forwarding() {
                return forward.enabled(tracing_level(level));
            }
            match level {
                LogLevel::Error => tracing::enabled!(target: "pfn::plugin", tracing::Level::ERROR),
                LogLevel::Warn => tracing::enabled!(target: "pfn::plugin", tracing::Level::WARN),
                LogLevel::Info => tracing::enabled!(target: "pfn::plugin", tracing::Level::INFO),
                LogLevel::Debug => tracing::enabled!(target: "pfn::plugin", tracing::Level::DEBUG),
                LogLevel::Trace => tracing::enabled!(target: "pfn::plugin", tracing::Level::TRACE),
            }
        },
    )
}

extern "C" fn log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
    guarded(|| (), || forward_or_record(level, target.as_str(), message.as_str(), &[]));
}

extern "C" fn log_record(level: LogLevel, target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, Property<'_>>) {
    guarded(
        || (),
        || {
            let fields: Vec<(&str, &str)> =
                fields.as_slice().iter().map(|field| (field.key.as_str(), field.value.as_str())).collect();
            forward_or_record(level, target.as_str(), message.as_str(), &fields);
        },
    );
}

/// Forwards a plugin's event to the worker, in a process that hosts an instance for one, or
/// records it here.
fn forward_or_record(level: LogLevel, target: &str, message: &str, fields: &[(&str, &str)]) {
    match plugin_log::forwarding() {
        Some(forward) => forward.event(tracing_level(level), target, message, fields),
        None => record(tracing_level(level), target, message, fields),
    }
}

/// Records a plugin's event in the host's log, inside the calling instance's span, and on its
/// function's log topic.
pub(crate) fn record(level: tracing::Level, target: &str, message: &str, fields: &[(&str, &str)]) {
    let text = if fields.is_empty() {
        std::borrow::Cow::Borrowed(message)
    } else {
        let mut text = message.to_owned();
        for (key, value) in fields {
            // Writing into a String cannot fail.
            let _ = write!(text, " {key}={value}");
        }
        std::borrow::Cow::Owned(text)
    };
    match level {
        tracing::Level::ERROR => tracing::error!(target: "pfn::plugin", plugin_target = target, "{text}"),
        tracing::Level::WARN => tracing::warn!(target: "pfn::plugin", plugin_target = target, "{text}"),
        tracing::Level::INFO => tracing::info!(target: "pfn::plugin", plugin_target = target, "{text}"),
        tracing::Level::DEBUG => tracing::debug!(target: "pfn::plugin", plugin_target = target, "{text}"),
        tracing::Level::TRACE => tracing::trace!(target: "pfn::plugin", plugin_target = target, "{text}"),
    }
    plugin_log::to_topic(level, message, fields);
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

/// Runs a state call on the instance's slot, or answers `NotAvailable` when it has none.
fn with_state<T>(host: HostHandle, call: impl FnOnce(&dyn StateAccess) -> Result<T, StateError>) -> CtxResult<T> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    guarded_ctx(|| {
        let Some(state) = host.services.state.as_deref() else {
            return failure(ContextErrorKind::NotAvailable, "state is not available to this instance");
        };
        match call(state) {
            Ok(value) => RResult::ROk(value),
            Err(error) if error.is_invalid_argument() => failure(ContextErrorKind::InvalidArgument, error.to_string()),
            Err(error) => failure(ContextErrorKind::Failed, error.to_string()),
        }
    })
}

extern "C" fn state_get(host: HostHandle, key: RStr<'_>) -> CtxResult<ROption<RVec<u8>>> {
    with_state(host, |state| Ok(state.get(key.as_str())?.map(RVec::from).into()))
}

extern "C" fn state_put(host: HostHandle, key: RStr<'_>, value: RSlice<'_, u8>) -> CtxResult<()> {
    with_state(host, |state| state.put(key.as_str(), value.as_slice()))
}

extern "C" fn state_delete(host: HostHandle, key: RStr<'_>) -> CtxResult<()> {
    with_state(host, |state| state.delete(key.as_str()))
}

extern "C" fn state_incr(host: HostHandle, key: RStr<'_>, amount: i64) -> CtxResult<i64> {
    with_state(host, |state| state.incr(key.as_str(), amount))
}

extern "C" fn state_get_counter(host: HostHandle, key: RStr<'_>) -> CtxResult<i64> {
    with_state(host, |state| state.get_counter(key.as_str()))
}

extern "C" fn state_list(
    host: HostHandle,
    prefix: RStr<'_>,
    start_after: ROption<RStr<'_>>,
    limit: u32,
) -> CtxResult<RVec<RString>> {
    with_state(host, |state| {
        let keys = state.list(prefix.as_str(), start_after.into_option().map(|key| key.as_str()), limit as usize)?;
        Ok(keys.into_iter().map(RString::from).collect())
    })
}

extern "C" fn state_delete_prefix(host: HostHandle, prefix: RStr<'_>) -> CtxResult<()> {
    with_state(host, |state| state.delete_prefix(prefix.as_str()))
}

extern "C" fn record_metric(host: HostHandle, name: RStr<'_>, value: f64) -> CtxResult<()> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    guarded_ctx(|| {
        let Some(metrics) = host.services.metrics.as_deref() else {
            return failure(ContextErrorKind::NotAvailable, "metrics are not available to this instance");
        };
        let name = name.as_str();
        if name.is_empty() || !value.is_finite() {
            return failure(
                ContextErrorKind::InvalidArgument,
                format!("a metric needs a name and a finite value, not {name:?} = {value}"),
            );
        }
        metrics.record(name, value);
        RResult::ROk(())
    })
}

extern "C" fn publish(host: HostHandle, message: &OutMessage<'_>) -> CtxResult<()> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    guarded_ctx(|| {
        let publication = Publication {
            topic: message.topic.as_str().to_owned(),
            message: Message {
                payload: message.payload.as_slice().to_vec(),
                key: message.key.into_option().map(|key| key.as_str().to_owned()),
                properties: message
                    .properties
                    .as_slice()
                    .iter()
                    .map(|property| (property.key.as_str().to_owned(), property.value.as_str().to_owned()))
                    .collect(),
                event_time_ms: message.event_time_ms.into_option(),
            },
        };
        match host.publish(publication) {
            Ok(()) => RResult::ROk(()),
            Err(refused) => failure(ContextErrorKind::InvalidArgument, refused.to_string()),
        }
    })
}

extern "C" fn secret(host: HostHandle, name: RStr<'_>) -> CtxResult<ROption<RString>> {
    // SAFETY: the plugin passes back the handle of the context it was called with.
    let host = unsafe { host_of(host) };
    guarded_ctx(|| {
        let Some(secrets) = host.services.secrets.as_deref() else {
            return failure(ContextErrorKind::NotAvailable, "secrets are not available to this instance");
        };
        let value = secrets.get(name.as_str()).map(|value| RString::from(value.expose()));
        RResult::ROk(value.into())
    })
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

static HOST_CALLBACKS: &WithMetadata<HostCallbacks> = &WithMetadata::new(HostCallbacks {
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
    state_list,
    state_delete_prefix,
    log_record,
});

/// The callbacks every instance's context carries, typed as the interface-1.0 table that
/// `FfiContext` names (see `HostCallbacks` in pfn-abi for why).
pub const HOST_VTABLE: HostVtableRef =
    // SAFETY: `HostCallbacks` starts with `HostVtable`'s fields, in the same order and of the same
    // types (both are declared from one list); the table's metadata describes all of them.
    HostVtableRef(unsafe {
        PrefixRef::from_raw(
            HOST_CALLBACKS
                .static_as_prefix()
                .to_raw_ptr()
                .cast::<WithMetadata_<HostVtable_Prefix, HostVtable_Prefix>>(),
        )
    });
