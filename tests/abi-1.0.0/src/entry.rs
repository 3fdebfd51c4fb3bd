//! The `extern "C"` entry points of a plugin. Each runs its body under `catch_unwind`, so no
//! unwind ever leaves the plugin: a panic becomes an `ErrorKind::Panic` error value.

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::std_types::{RResult, RVec};

use crate::{
    Context, Function, Output, bridge,
    ffi::{ErrorKind, FfiContext, FfiError, FfiRecord, InstanceHandle, Produced},
    function::Error,
};

fn to_ffi(error: Error) -> FfiError {
    FfiError { kind: error.kind, message: error.message.into() }
}

/// Runs `body` so that neither a panic nor an error escapes as anything but an `FfiError`.
fn guarded<T>(body: impl FnOnce() -> Result<T, Error>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(to_ffi(error)),
        Err(payload) => {
            RResult::RErr(FfiError { kind: ErrorKind::Panic, message: bridge::panic_message(payload.as_ref()).into() })
        }
    }
}

/// # Safety
/// `ctx` must be a context the host keeps alive for the duration of the call.
pub(crate) unsafe extern "C" fn new_instance<F: Function>(ctx: &FfiContext) -> RResult<InstanceHandle, FfiError> {
    guarded(|| {
        bridge::install(ctx);
        let function = F::init(&Context::new(ctx, None))?;
        Ok(InstanceHandle(Box::into_raw(Box::new(function)).cast()))
    })
}

/// # Safety
/// `instance` must come from `new_instance::<F>` of this library, not be closed, and not be in
/// use on another thread.
pub(crate) unsafe extern "C" fn process<F: Function>(
    instance: InstanceHandle,
    ctx: &FfiContext,
    record: &FfiRecord<'_>,
    out: &mut RVec<u8>,
) -> RResult<Produced, FfiError> {
    guarded(|| {
        // SAFETY: per this function's contract, the handle is a live, exclusive `Box<F>`.
        let function = unsafe { &mut *instance.0.cast::<F>() };
        let mut context = Context::new(ctx, Some(record));
        function.process(&mut context, record.payload.as_slice(), &mut Output::new(out))
    })
}

/// # Safety
/// As for [`process`]; the handle must not be used again afterwards.
pub(crate) unsafe extern "C" fn close<F: Function>(
    instance: InstanceHandle,
    ctx: &FfiContext,
) -> RResult<(), FfiError> {
    // SAFETY: per this function's contract, the handle is a live `Box<F>` given back once.
    let mut function = unsafe { Box::from_raw(instance.0.cast::<F>()) };
    let closed = guarded(|| function.close(&Context::new(ctx, None)));
    let dropped = guarded(move || {
        drop(function);
        Ok(())
    });
    match closed {
        RResult::ROk(()) => dropped,
        failed => failed,
    }
}
