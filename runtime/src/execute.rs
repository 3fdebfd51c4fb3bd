//! The per-message path, once, for `pfn run` and the worker: build the record of an input, call
//! the instance, classify what the call came to, collect what it did besides, and decide what
//! becomes of the input under the function's guarantees and retry policy.
//!
//! The callers keep what differs between them: where outputs and dead letters go (a file, a
//! topic), when inputs are acknowledged (at once, or once their commit is held), hot swaps and
//! timeouts.

use abi_stable::std_types::{RSlice, RStr};
use pfn_abi::ffi::{FfiRecord, Property};

pub use crate::context::Effects;
use crate::{
    instance::PluginInstance,
    io::transport::Delivery,
    vocabulary::{Failure, FailureKind, ProcessingGuarantees},
};

/// One input as the executor needs it, borrowed from wherever it came from.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a str>,
    pub properties: Vec<Property<'a>>,
    pub event_time_ms: Option<i64>,
    pub topic: &'a str,
    pub message_id: &'a str,
    pub redelivery_count: u32,
}

impl<'a> Input<'a> {
    /// A payload with a topic and an id, and nothing else.
    pub fn plain(payload: &'a [u8], topic: &'a str, message_id: &'a str) -> Self {
        Self { payload, key: None, properties: Vec::new(), event_time_ms: None, topic, message_id, redelivery_count: 0 }
    }

    /// A delivery from a transport; `message_id` is its id as text.
    pub fn of_delivery(delivery: &'a Delivery, message_id: &'a str) -> Self {
        let message = &delivery.message;
        Self {
            payload: &message.payload,
            key: message.key.as_deref(),
            properties: properties(message.properties.iter().map(|(key, value)| (key.as_str(), value.as_str()))),
            event_time_ms: message.event_time_ms,
            topic: &delivery.topic,
            message_id,
            redelivery_count: delivery.redelivery_count,
        }
    }

    fn record(&self) -> FfiRecord<'_> {
        FfiRecord {
            payload: RSlice::from_slice(self.payload),
            key: self.key.map(RStr::from_str).into(),
            properties: RSlice::from_slice(&self.properties),
            event_time_ms: self.event_time_ms.into(),
            topic: RStr::from_str(self.topic),
            message_id: RStr::from_str(self.message_id),
            redelivery_count: self.redelivery_count,
        }
    }
}

/// Message properties as the record carries them.
pub fn properties<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Property<'a>> {
    pairs.map(|(key, value)| Property { key: RStr::from_str(key), value: RStr::from_str(value) }).collect()
}

/// What a call came to. `O` is the output: borrowed from the instance until its next call, or
/// owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome<O> {
    /// The function returned a result.
    Output(O),
    /// The function returned nothing: the input is filtered out.
    Filtered,
    /// The call failed: an error, a panic, an undecodable payload.
    Failed(Failure),
}

impl CallOutcome<&[u8]> {
    /// The outcome with its output copied out of the instance.
    pub fn to_owned_output(&self) -> CallOutcome<Vec<u8>> {
        match self {
            Self::Output(output) => CallOutcome::Output(output.to_vec()),
            Self::Filtered => CallOutcome::Filtered,
            Self::Failed(failure) => CallOutcome::Failed(failure.clone()),
        }
    }
}

impl<O> CallOutcome<O> {
    /// The failure, when the call failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Self::Failed(failure) => Some(failure),
            Self::Output(_) | Self::Filtered => None,
        }
    }
}

/// A finished call: what it came to and what it did.
#[derive(Debug)]
pub struct Executed<O> {
    pub outcome: CallOutcome<O>,
    pub effects: Effects,
}

/// Calls `instance` on `input` and collects what the call came to and did.
#[inline]
pub fn execute<'i>(instance: &'i mut PluginInstance, input: &Input<'_>) -> Executed<&'i [u8]> {
    let record = input.record();
    let (result, effects) = instance.process(&record);
    let outcome = match result {
        Ok(Some(output)) => CallOutcome::Output(output),
        Ok(None) => CallOutcome::Filtered,
        Err(failure) => CallOutcome::Failed(failure),
    };
    Executed { outcome, effects }
}

/// What becomes of an input once its call is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Acknowledge it with its commit.
    Ack,
    /// Leave it unacknowledged: the function did not acknowledge it (`manual` guarantees).
    Keep,
    /// Nothing to do: it was acknowledged when received (`at_most_once`).
    AckedAlready,
    /// Have it redelivered, to be tried again.
    Retry,
    /// Send it to the dead letters (which acknowledges it).
    DeadLetter,
}

/// The function's acknowledgement and retry rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub guarantees: ProcessingGuarantees,
    /// Deliveries after the first before a failing input is dead-lettered.
    pub max_message_retries: u32,
}

impl Policy {
    /// `pfn run`'s rules: every result is kept, every failure dead-lettered at once.
    pub const RUN: Self = Self { guarantees: ProcessingGuarantees::AtLeastOnce, max_message_retries: 0 };

    /// Whether an input was delivered too often to be called again: it goes to the dead letters
    /// with the failure it last met.
    pub fn exhausted(&self, redelivery_count: u32) -> bool {
        redelivery_count > self.max_message_retries
    }

    /// The failure to dead-letter an exhausted input with, when its last one is not known.
    pub fn exhausted_failure() -> Failure {
        Failure::new(FailureKind::Error, "retries exhausted")
    }

    /// What becomes of an input delivered `redelivery_count` times before, whose call came to
    /// `outcome` with `effects`. Under `manual` an input is acknowledged only when the function
    /// acknowledged it, and one it acknowledged and then failed on is not retried.
    pub fn settle<O>(&self, outcome: &CallOutcome<O>, effects: &Effects, redelivery_count: u32) -> Settlement {
        let runtime_acks = self.guarantees != ProcessingGuarantees::Manual;
        match outcome {
            CallOutcome::Output(_) | CallOutcome::Filtered if runtime_acks || effects.acked => Settlement::Ack,
            CallOutcome::Output(_) | CallOutcome::Filtered => Settlement::Keep,
            CallOutcome::Failed(_) if self.guarantees == ProcessingGuarantees::AtMostOnce => Settlement::AckedAlready,
            CallOutcome::Failed(_) if !runtime_acks && effects.acked => Settlement::Ack,
            CallOutcome::Failed(_) if redelivery_count >= self.max_message_retries => Settlement::DeadLetter,
            CallOutcome::Failed(_) => Settlement::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> CallOutcome<()> {
        CallOutcome::Failed(Failure::new(FailureKind::Panic, "boom"))
    }

    #[test]
    fn failures_are_retried_then_dead_lettered() {
        let policy = Policy { guarantees: ProcessingGuarantees::AtLeastOnce, max_message_retries: 2 };
        let none = Effects::default();
        assert_eq!(policy.settle(&failed(), &none, 0), Settlement::Retry);
        assert_eq!(policy.settle(&failed(), &none, 1), Settlement::Retry);
        assert_eq!(policy.settle(&failed(), &none, 2), Settlement::DeadLetter);
        assert!(!policy.exhausted(2) && policy.exhausted(3));
        assert_eq!(Policy::RUN.settle(&failed(), &none, 0), Settlement::DeadLetter);
        assert_eq!(policy.settle(&CallOutcome::Output(()), &none, 0), Settlement::Ack);
    }

    #[test]
    fn manual_acknowledges_only_what_the_function_did() {
        let policy = Policy { guarantees: ProcessingGuarantees::Manual, max_message_retries: 3 };
        let (acked, none) = (Effects { acked: true, ..Effects::default() }, Effects::default());
        assert_eq!(policy.settle(&CallOutcome::Filtered::<()>, &none, 0), Settlement::Keep);
        assert_eq!(policy.settle(&CallOutcome::Filtered::<()>, &acked, 0), Settlement::Ack);
        assert_eq!(policy.settle(&failed(), &acked, 0), Settlement::Ack);
        assert_eq!(policy.settle(&failed(), &none, 0), Settlement::Retry);
    }

    #[test]
    fn at_most_once_never_retries() {
        let policy = Policy { guarantees: ProcessingGuarantees::AtMostOnce, max_message_retries: 3 };
        assert_eq!(policy.settle(&failed(), &Effects::default(), 0), Settlement::AckedAlready);
    }
}
