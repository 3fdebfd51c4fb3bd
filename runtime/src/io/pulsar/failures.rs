//! Failures per message, shared by every consumer of the worker.
//!
//! The `pulsar` crate does not expose the broker's redelivery count, so the worker counts a
//! message's failures itself, until it is acknowledged. The count is shared by the instances of
//! one worker (a message failed by one instance and redelivered to another keeps its count); a
//! message redelivered to another worker process starts again at 0 there.

use std::{collections::HashMap, sync::Arc};

use crate::{io::transport::MessageId, sync::lock, vocabulary::Failure};

/// One message on one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FailureKey {
    pub subscription: String,
    pub topic: Arc<str>,
    pub id: MessageId,
}

/// A message's failures so far, and the last one whose cause is known.
type FailureCount = (u32, Option<Arc<Failure>>);

/// Failures so far and the last reason, per message.
#[derive(Debug, Default)]
pub(super) struct Failures {
    counts: std::sync::Mutex<HashMap<FailureKey, FailureCount>>,
}

impl Failures {
    /// The failures of the message `key` names (built only when any failure is held).
    pub fn get(&self, key: impl FnOnce() -> FailureKey) -> Option<FailureCount> {
        let counts = lock(&self.counts);
        if counts.is_empty() {
            return None;
        }
        counts.get(&key()).map(|(count, failure)| (*count, failure.clone()))
    }

    /// Counts a failure of the message `key` names, keeping why when it is known.
    pub fn record(&self, key: FailureKey, failure: Option<&Failure>) {
        let mut counts = lock(&self.counts);
        let entry = counts.entry(key).or_insert((0, None));
        entry.0 += 1;
        if let Some(failure) = failure {
            entry.1 = Some(Arc::new(failure.clone()));
        }
    }

    /// Forgets the message `key` names (built only when any failure is held).
    pub fn forget(&self, key: impl FnOnce() -> FailureKey) {
        let mut counts = lock(&self.counts);
        if !counts.is_empty() {
            counts.remove(&key());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::FailureKind;

    #[test]
    fn counts_until_forgotten() {
        let failures = Failures::default();
        let key = FailureKey { subscription: "s".into(), topic: "t".into(), id: MessageId::Sequence(1) };
        assert_eq!(failures.get(|| key.clone()), None);
        let bad = Failure::new(FailureKind::Error, "bad");
        failures.record(key.clone(), Some(&Failure::new(FailureKind::Panic, "boom")));
        failures.record(key.clone(), Some(&bad));
        failures.record(key.clone(), None);
        assert_eq!(failures.get(|| key.clone()), Some((3, Some(Arc::new(bad)))));
        failures.forget(|| key.clone());
        assert_eq!(failures.get(|| key.clone()), None);
    }
}
