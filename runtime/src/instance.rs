//! A live plugin instance: the host's handle on one `Function` inside a plugin.

use std::fmt;

use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RVec};
use pfn_abi::{
    ErrorKind, Produced,
    ffi::{FfiContext, FfiError, FfiRecord, InstanceHandle},
};
use thiserror::Error;

use crate::{
    context::{Effects, FunctionIdentity, InstanceHost, Services},
    loader::Plugin,
    plugin_log,
    vocabulary::{Failure, FailureKind},
};

fn failure_of(error: FfiError) -> Failure {
    let kind = match error.kind {
        ErrorKind::User => FailureKind::Error,
        ErrorKind::Panic => FailureKind::Panic,
        ErrorKind::BadInput => FailureKind::BadInput,
    };
    Failure { kind, message: error.message.into_string() }
}

/// Why an instance could not be created.
#[derive(Debug, Error)]
#[error("function {fqfn}: init of plugin {plugin} {version} failed: {cause}")]
pub struct InitError {
    pub fqfn: String,
    pub plugin: String,
    pub version: String,
    pub cause: Failure,
}

/// One instance of a plugin's function, with the host state its context points at.
///
/// Call it from one thread at a time (`&mut self`); it may move between threads.
pub struct PluginInstance {
    process_fn:
        unsafe extern "C" fn(InstanceHandle, &FfiContext, &FfiRecord<'_>, &mut RVec<u8>) -> RResult<Produced, FfiError>,
    close_fn: unsafe extern "C" fn(InstanceHandle, &FfiContext) -> RResult<(), FfiError>,
    handle: Option<InstanceHandle>,
    ffi: FfiContext,
    out: RVec<u8>,
    /// Boxed so that the address `ffi.host` holds stays put while the instance moves.
    host: Box<InstanceHost>,
    plugin: Plugin,
}

// SAFETY: the plugin instance is `Send` (the `Function` trait requires it), the host state is
// owned and only read, and `&mut self` keeps calls on one thread at a time.
unsafe impl Send for PluginInstance {}

impl fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin.info.name)
            .field("version", &self.plugin.info.version)
            .field("fqfn", &self.host.identity().fqfn())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Creates an instance of the plugin's function with the services it is given, running its
    /// `init`.
    pub fn instantiate(&self, identity: FunctionIdentity, services: Services) -> Result<PluginInstance, InitError> {
        let host = Box::new(InstanceHost::new(identity, self.info.version.clone(), services));
        let ffi = host.ffi_context();
        let new_instance = self.module.0.new_instance();
        let entered = plugin_log::enter(host.log());
        // SAFETY: `ffi` points at `host`, which the returned instance owns.
        let created = unsafe { new_instance(&ffi) };
        drop(entered);
        let handle = created.into_result().map_err(|error| InitError {
            fqfn: host.identity().fqfn(),
            plugin: self.info.name.clone(),
            version: self.info.version.clone(),
            cause: failure_of(error),
        })?;
        Ok(PluginInstance {
            process_fn: self.module.0.process(),
            close_fn: self.module.0.close(),
            handle: Some(handle),
            ffi,
            out: RVec::new(),
            host,
            plugin: self.clone(),
        })
    }
}

impl PluginInstance {
    /// Processes one record: `Ok(Some(bytes))` is the output, `Ok(None)` no output; and what
    /// the call did through its context (what it did outside a call is dropped).
    ///
    /// Inlined so that callers in other crates read the output buffer's pointer and length as
    /// the plugin left them, without a wide load that stalls on the plugin's narrower store.
    #[inline]
    pub fn process(&mut self, record: &FfiRecord<'_>) -> (Result<Option<&[u8]>, Failure>, Effects) {
        let Some(handle) = self.handle else {
            return (Err(Failure::new(FailureKind::Error, "instance is closed")), Effects::default());
        };
        self.out.clear();
        let _entered = plugin_log::enter(self.host.log());
        self.host.begin_call();
        // SAFETY: `handle` is live (not closed) and `&mut self` makes this the only call on it;
        // `ffi` points at `self.host`, alive for the call.
        let result = unsafe { (self.process_fn)(handle, &self.ffi, record, &mut self.out) };
        let result = match result {
            RResult::ROk(Produced::Output) => Ok(Some(self.out.as_slice())),
            RResult::ROk(Produced::Nothing) => Ok(None),
            RResult::RErr(error) => Err(failure_of(error)),
        };
        let effects = self.host.end_call(result.is_ok());
        (result, effects)
    }

    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Runs the function's `close`; the instance cannot be used afterwards.
    pub fn close(&mut self) -> Result<(), Failure> {
        let Some(handle) = self.handle.take() else { return Ok(()) };
        let _entered = plugin_log::enter(self.host.log());
        // SAFETY: the handle is live and is never used again (taken out of `self.handle`).
        unsafe { (self.close_fn)(handle, &self.ffi) }.into_result().map_err(failure_of)
    }
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(plugin = %self.plugin.info.name, %error, "plugin close failed");
        }
    }
}

/// A record with a payload, a topic and an id, and no key, properties or event time.
pub fn plain_record<'a>(payload: &'a [u8], topic: RStr<'a>, message_id: &'a str) -> FfiRecord<'a> {
    FfiRecord {
        payload: RSlice::from_slice(payload),
        key: ROption::RNone,
        properties: RSlice::EMPTY,
        event_time_ms: ROption::RNone,
        topic,
        message_id: RStr::from_str(message_id),
        redelivery_count: 0,
    }
}
