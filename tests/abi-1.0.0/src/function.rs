//! The traits a plugin implements (usually through `#[pfn_abi::function]`).

use std::fmt;

use crate::{Context, FromPayload, IntoOutcome, Output, ffi::ErrorKind, ffi::Produced};

/// An error a function reports for one message (or from `init`/`close`).
///
/// Any `std::error::Error` converts into it with `?`; use [`Error::user`] for a plain message.
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    /// An error the function itself reports.
    pub fn user(message: impl fmt::Display) -> Self {
        Self { kind: ErrorKind::User, message: message.to_string() }
    }

    /// The payload could not be decoded into the function's input.
    pub fn bad_input(message: impl fmt::Display) -> Self {
        Self { kind: ErrorKind::BadInput, message: message.to_string() }
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { kind: ErrorKind::User, message }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The low-level shape of every plugin function: raw payload in, bytes out.
///
/// The host calls one instance from one thread at a time. A panic anywhere in these methods
/// is caught inside the plugin and reported as an error for that message; the instance is
/// used again for the next one.
pub trait Function: Send + Sized + 'static {
    /// Creates an instance (once per function instance, before any message).
    fn init(ctx: &Context<'_>) -> Result<Self, Error>;

    /// Processes one payload, writing any result into `out`.
    fn process(&mut self, ctx: &mut Context<'_>, payload: &[u8], out: &mut Output<'_>) -> Result<Produced, Error>;

    /// Releases the instance's resources (once, after the last message).
    fn close(&mut self, _ctx: &Context<'_>) -> Result<(), Error> {
        Ok(())
    }
}

/// A function with state of its own: created from config by `init`, called for every message,
/// closed at the end. Export it by putting `#[pfn_abi::function]` on its `impl` block.
pub trait StatefulFunction: Send + Sized + 'static {
    /// The input type (see [`FromPayload`] for the accepted ones).
    type Input<'a>: FromPayload<'a>;
    /// The return type (see [`IntoOutcome`] for the accepted ones).
    type Output: IntoOutcome;

    /// Creates the instance, typically from [`Context::user_config_value`].
    fn init(ctx: &Context<'_>) -> Result<Self, Error>;

    /// Processes one message.
    fn process(&mut self, ctx: &mut Context<'_>, input: Self::Input<'_>) -> Self::Output;

    /// Releases the instance's resources.
    fn close(&mut self, _ctx: &Context<'_>) -> Result<(), Error> {
        Ok(())
    }
}

/// Adapts a [`StatefulFunction`] to [`Function`].
#[derive(Debug)]
pub struct Stateful<T>(pub T);

impl<T: StatefulFunction> Function for Stateful<T> {
    fn init(ctx: &Context<'_>) -> Result<Self, Error> {
        T::init(ctx).map(Stateful)
    }

    fn process(&mut self, ctx: &mut Context<'_>, payload: &[u8], out: &mut Output<'_>) -> Result<Produced, Error> {
        let input = T::Input::from_payload(payload)?;
        self.0.process(ctx, input).into_outcome(out)
    }

    fn close(&mut self, ctx: &Context<'_>) -> Result<(), Error> {
        self.0.close(ctx)
    }
}
