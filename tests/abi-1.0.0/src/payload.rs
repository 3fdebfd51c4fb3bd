//! Decoding inputs and writing outputs: the types a function may take and return.

use std::{fmt, io};

use abi_stable::std_types::RVec;
use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, ffi::Produced};

/// A value carried as JSON: `Json<T>` as input parses the payload, as output serialises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

/// Types a function can take as input, decoded from the message payload.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an input type a pfn function can take",
    note = "accepted inputs: Vec<u8>, &[u8], String, &str, or Json<T> for any serde type T"
)]
pub trait FromPayload<'a>: Sized {
    /// Decodes the payload; an error dead-letters the message as bad input.
    fn from_payload(payload: &'a [u8]) -> Result<Self, Error>;
}

impl<'a> FromPayload<'a> for &'a [u8] {
    #[inline]
    fn from_payload(payload: &'a [u8]) -> Result<Self, Error> {
        Ok(payload)
    }
}

impl<'a> FromPayload<'a> for Vec<u8> {
    #[inline]
    fn from_payload(payload: &'a [u8]) -> Result<Self, Error> {
        Ok(payload.to_vec())
    }
}

impl<'a> FromPayload<'a> for &'a str {
    #[inline]
    fn from_payload(payload: &'a [u8]) -> Result<Self, Error> {
        std::str::from_utf8(payload).map_err(|e| Error::bad_input(format!("payload is not UTF-8: {e}")))
    }
}

impl<'a> FromPayload<'a> for String {
    #[inline]
    fn from_payload(payload: &'a [u8]) -> Result<Self, Error> {
        <&str>::from_payload(payload).map(str::to_owned)
    }
}

impl<'a, T: DeserializeOwned> FromPayload<'a> for Json<T> {
    #[inline]
    fn from_payload(payload: &'a [u8]) -> Result<Self, Error> {
        serde_json::from_slice(payload)
            .map(Json)
            .map_err(|e| Error::bad_input(format!("payload is not the expected JSON: {e}")))
    }
}

/// The host-owned buffer a function's output is written into (reused across messages).
#[derive(Debug)]
pub struct Output<'a> {
    buffer: &'a mut RVec<u8>,
}

impl<'a> Output<'a> {
    #[doc(hidden)]
    #[inline]
    pub fn new(buffer: &'a mut RVec<u8>) -> Self {
        Self { buffer }
    }

    /// Appends bytes to the output.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_copy_slice(bytes);
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_slice()
    }
}

impl io::Write for Output<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Output::write(self, bytes);
        Ok(bytes.len())
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A value that becomes the output message's payload.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an output type a pfn function can return",
    note = "accepted outputs: Vec<u8>, &[u8], String, &str, or Json<T> for any serde type T"
)]
pub trait OutputValue {
    /// Writes the value into the output buffer.
    fn write_to(self, out: &mut Output<'_>) -> Result<(), Error>;
}

impl OutputValue for Vec<u8> {
    #[inline]
    fn write_to(self, out: &mut Output<'_>) -> Result<(), Error> {
        out.write(&self);
        Ok(())
    }
}

impl OutputValue for &[u8] {
    #[inline]
    fn write_to(self, out: &mut Output<'_>) -> Result<(), Error> {
        out.write(self);
        Ok(())
    }
}

impl OutputValue for String {
    #[inline]
    fn write_to(self, out: &mut Output<'_>) -> Result<(), Error> {
        out.write(self.as_bytes());
        Ok(())
    }
}

impl OutputValue for &str {
    #[inline]
    fn write_to(self, out: &mut Output<'_>) -> Result<(), Error> {
        out.write(self.as_bytes());
        Ok(())
    }
}

impl<T: Serialize> OutputValue for Json<T> {
    #[inline]
    fn write_to(self, out: &mut Output<'_>) -> Result<(), Error> {
        serde_json::to_writer(out, &self.0).map_err(|e| Error::user(format!("cannot serialise output: {e}")))
    }
}

/// What a function's return value means for the message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a return type a pfn function can have",
    note = "accepted: (), Result<(), E>, O, Option<O>, Result<O, E> or Result<Option<O>, E>",
    note = "where O is Vec<u8>, &[u8], String, &str or Json<T>, and E implements Display"
)]
pub trait IntoOutcome {
    /// Writes any output and says whether there was one.
    fn into_outcome(self, out: &mut Output<'_>) -> Result<Produced, Error>;
}

impl IntoOutcome for () {
    #[inline]
    fn into_outcome(self, _out: &mut Output<'_>) -> Result<Produced, Error> {
        Ok(Produced::Nothing)
    }
}

impl<T: OutputValue> IntoOutcome for T {
    #[inline]
    fn into_outcome(self, out: &mut Output<'_>) -> Result<Produced, Error> {
        self.write_to(out)?;
        Ok(Produced::Output)
    }
}

impl<T: OutputValue> IntoOutcome for Option<T> {
    #[inline]
    fn into_outcome(self, out: &mut Output<'_>) -> Result<Produced, Error> {
        match self {
            Some(value) => value.into_outcome(out),
            None => Ok(Produced::Nothing),
        }
    }
}

impl<T: IntoOutcome, E: fmt::Display> IntoOutcome for Result<T, E> {
    #[inline]
    fn into_outcome(self, out: &mut Output<'_>) -> Result<Produced, Error> {
        match self {
            Ok(value) => value.into_outcome(out),
            Err(error) => Err(Error::user(format!("{error:#}"))),
        }
    }
}
