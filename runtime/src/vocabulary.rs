//! The words every layer shares: function names, processing guarantees, subscription types and
//! positions, failures. A leaf: it depends on nothing else in the crate.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The fully qualified function name, `tenant/namespace/name`.
pub fn fqfn(tenant: &str, namespace: &str, name: &str) -> String {
    format!("{tenant}/{namespace}/{name}")
}

/// When an input is acknowledged, as Pulsar Functions name it (Pulsar's `ATLEAST_ONCE` spellings
/// are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantees {
    /// Acknowledge before processing: a failure loses the message.
    #[serde(alias = "ATMOST_ONCE")]
    AtMostOnce,
    /// Acknowledge after every output and publish has its receipt (the default).
    #[default]
    #[serde(alias = "ATLEAST_ONCE")]
    AtLeastOnce,
    /// At-least-once with broker-side deduplication of outputs.
    #[serde(alias = "EFFECTIVELY_ONCE")]
    EffectivelyOnce,
    /// The function acknowledges through its context.
    #[serde(alias = "MANUAL")]
    Manual,
}

/// Where a function's instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// In the worker's process, each on a thread of its own.
    #[default]
    Thread,
    /// Each in a child process of its own, restarted when it dies.
    Process,
}

/// How a subscription hands messages to its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionType {
    /// Each message to one consumer, whichever is free.
    #[default]
    Shared,
    /// Messages with the same key always to the same consumer.
    KeyShared,
    /// Every message to one active consumer; the others stand by.
    Failover,
}

impl SubscriptionType {
    /// Every type, in the order the command line lists them.
    pub const ALL: [Self; 3] = [Self::Shared, Self::KeyShared, Self::Failover];

    /// The name on the command line and in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::KeyShared => "key-shared",
            Self::Failover => "failover",
        }
    }
}

/// Pulsar's own spelling: `Shared`, `Key_Shared`, `Failover`.
impl fmt::Display for SubscriptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shared => "Shared",
            Self::KeyShared => "Key_Shared",
            Self::Failover => "Failover",
        })
    }
}

/// A word that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not one of: {expected}")]
pub struct UnknownWord {
    pub given: String,
    pub expected: &'static str,
}

impl FromStr for SubscriptionType {
    type Err = UnknownWord;

    /// Accepts the command line's names and Pulsar's, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().replace('_', "-").as_str() {
            "shared" => Ok(Self::Shared),
            "key-shared" | "keyshared" => Ok(Self::KeyShared),
            "failover" => Ok(Self::Failover),
            _ => Err(UnknownWord { given: text.to_owned(), expected: "shared, key-shared, failover" }),
        }
    }
}

/// Where a new subscription starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionPosition {
    /// At messages published after it is created.
    #[default]
    Latest,
    /// At the oldest message the topic still holds.
    Earliest,
}

/// What kind of failure a message met, as dead letters, logs and counters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The function returned an error.
    Error,
    /// The function panicked (caught inside the plugin).
    Panic,
    /// The payload did not decode into the function's input type.
    BadInput,
    /// The call ran past the function's `timeout_ms`.
    Timeout,
    /// The runtime failed around the call (a publish was refused, a store write failed).
    System,
    /// The input was not a valid message (a line that is no JSON envelope).
    Malformed,
    /// The process running the call died (process runtime): an abort, a signal, an exit.
    Crash,
}

impl FailureKind {
    /// The kind's name in dead letters and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Panic => "panic",
            Self::BadInput => "bad_input",
            Self::Timeout => "timeout",
            Self::System => "system",
            Self::Malformed => "malformed",
            Self::Crash => "crash",
        }
    }

    /// Whether the runtime, not the function's own code path, failed the input: it counts as a
    /// system exception.
    pub fn is_system(self) -> bool {
        matches!(self, Self::System | Self::Crash)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure: its kind and what was said about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_types_read_back_their_own_names_and_pulsars() {
        for kind in SubscriptionType::ALL {
            assert_eq!(kind.as_str().parse::<SubscriptionType>(), Ok(kind));
            assert_eq!(kind.to_string().parse::<SubscriptionType>(), Ok(kind));
        }
        let refused = "exclusive".parse::<SubscriptionType>().expect_err("not a pfn subscription type");
        assert!(refused.to_string().contains("key-shared"), "{refused}");
    }

    #[test]
    fn processing_guarantees_read_pfns_names_and_pulsars() {
        let read = |name: &str| serde_json::from_value::<ProcessingGuarantees>(serde_json::json!(name));
        for (pfn, pulsar, guarantee) in [
            ("at_most_once", "ATMOST_ONCE", ProcessingGuarantees::AtMostOnce),
            ("at_least_once", "ATLEAST_ONCE", ProcessingGuarantees::AtLeastOnce),
            ("effectively_once", "EFFECTIVELY_ONCE", ProcessingGuarantees::EffectivelyOnce),
            ("manual", "MANUAL", ProcessingGuarantees::Manual),
        ] {
            assert_eq!(read(pfn).expect("pfn's name"), guarantee);
            assert_eq!(read(pulsar).expect("Pulsar's name"), guarantee);
        }
    }
}
