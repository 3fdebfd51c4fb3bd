//! Failures per message, shared by every consumer of the worker.
//!
//! The `pulsar` crate does not expose the broker's redelivery count, so the worker counts a
//! message's failures itself, until it is acknowledged. The count is shared by the instances of
//! one worker (a message failed by one instance and redelivered to another keeps its count); a
//! message redelivered to another worker process starts again at 0 there.

use std::{collections::HashMap, sync::Arc};

use crate::{io::transport::MessageId, sync::lock};

/// One message on one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FailureKey {
    pub subscription: String,
    pub topic: Arc<str>,
    pub id: MessageId,
}

/// Failures so far and the last reason, per message.
#[derive(Debug, Default)]
pub(super) struct Failures {
    counts: std::sync::Mutex<HashMap<FailureKey, (u32, Arc<str>)>>,
}

impl Failures {
    /// The failures of the message `key` names (built only when any failure is held).
    pub fn get(&self, key: impl FnOnce() -> FailureKey) -> Option<(u32, Arc<str>)> {
        let counts = lock(&self.counts);
        if counts.is_empty() {
            return None;
        }
        counts.get(&key()).map(|(count, reason)| (*count, Arc::clone(reason)))
    }

    pub fn record(&self, key: FailureKey, reason: &str) {
        let mut counts = lock(&self.counts);
        let failure = counts.entry(key).or_insert_with(|| (0, Arc::from("")));
        failure.0 += 1;
        failure.1 = Arc::from(reason);
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

    #[test]
    fn counts_until_forgotten() {
        let failures = Failures::default();
        let key = FailureKey { subscription: "s".into(), topic: "t".into(), id: MessageId::Sequence(1) };
        assert_eq!(failures.get(|| key.clone()), None);
        failures.record(key.clone(), "panic: boom");
        failures.record(key.clone(), "error: bad");
        assert_eq!(failures.get(|| key.clone()), Some((2, Arc::from("error: bad"))));
        failures.forget(|| key.clone());
        assert_eq!(failures.get(|| key.clone()), None);
    }
}
