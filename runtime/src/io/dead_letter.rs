//! A dead letter as `pfn run` writes it: one JSON line per message that could not be processed.

use serde::Serialize;

use super::lines::PayloadJson;

/// One dead letter.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// The message id (for `pfn run`, the input line number).
    pub message_id: &'a str,
    /// `error`, `panic`, `bad_input` or `malformed`.
    pub reason: &'a str,
    /// What went wrong, e.g. the panic message with its location.
    pub error: &'a str,
    /// The input message.
    #[serde(flatten)]
    pub payload: PayloadJson<'a>,
}
