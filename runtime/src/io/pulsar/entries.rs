//! Which broker acknowledgements a consumer owes, given the deliveries it settled.
//!
//! A batched entry holds several messages under one ledger entry. The `pulsar` crate
//! acknowledges the whole entry when any one of its messages is acknowledged, so an entry is
//! acknowledged only once every message of it is done; if any of them failed, the whole entry
//! is negatively acknowledged instead (its messages that were done come again: at-least-once).
//! An entry with a message left unacknowledged (`manual` guarantees) is not acknowledged at all.

use std::{collections::HashMap, sync::Arc, time::Duration};

/// One ledger entry of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EntryKey {
    pub topic: Arc<str>,
    pub ledger: u64,
    pub entry: u64,
    pub partition: i32,
}

/// How one delivery was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    Ack,
    /// Redeliver after this delay.
    Nack(Duration),
    /// Done with, but left unacknowledged (`manual` guarantees): the broker is told nothing.
    Hold,
}

#[derive(Debug)]
struct OpenEntry {
    outstanding: u32,
    /// The longest delay asked for by a failed message of the entry.
    nack: Option<Duration>,
    /// A message of the entry is left unacknowledged, so the entry cannot be acknowledged.
    held: bool,
}

/// The batched entries with messages still unsettled.
#[derive(Debug, Default)]
pub(super) struct Entries {
    open: HashMap<EntryKey, OpenEntry>,
}

impl Entries {
    /// A message of `entry` (which holds `messages` messages) was received. Only the first
    /// message of an entry opens it.
    pub fn received(&mut self, entry: &EntryKey, messages: u32) {
        if messages > 1 && !self.open.contains_key(entry) {
            self.open.insert(entry.clone(), OpenEntry { outstanding: messages, nack: None, held: false });
        }
    }

    /// One message of `entry` was settled: returns what the broker should be told about the
    /// entry now, if anything. A failed message makes the whole entry redelivered; a held one
    /// (and no failure) leaves it unacknowledged.
    pub fn settle(&mut self, entry: &EntryKey, settle: Settle) -> Option<Settle> {
        let Some(open) = self.open.get_mut(entry) else {
            return (settle != Settle::Hold).then_some(settle);
        };
        match settle {
            Settle::Ack => {}
            Settle::Nack(delay) => open.nack = Some(open.nack.map_or(delay, |longest| longest.max(delay))),
            Settle::Hold => open.held = true,
        }
        open.outstanding = open.outstanding.saturating_sub(1);
        if open.outstanding > 0 {
            return None;
        }
        let done = self.open.remove(entry)?;
        match done.nack {
            Some(delay) => Some(Settle::Nack(delay)),
            None => (!done.held).then_some(Settle::Ack),
        }
    }

    /// Forgets every open entry (its consumer is gone; the broker redelivers them).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> EntryKey {
        EntryKey { topic: "t".into(), ledger: 1, entry: n, partition: -1 }
    }

    #[test]
    fn a_single_message_entry_is_settled_at_once() {
        let mut entries = Entries::default();
        entries.received(&entry(1), 1);
        assert_eq!(entries.settle(&entry(1), Settle::Ack), Some(Settle::Ack));
        let delay = Duration::from_millis(5);
        assert_eq!(entries.settle(&entry(2), Settle::Nack(delay)), Some(Settle::Nack(delay)));
    }

    #[test]
    fn a_batch_is_acknowledged_only_when_every_message_is_done() {
        let mut entries = Entries::default();
        for _ in 0..3 {
            entries.received(&entry(7), 3);
        }
        assert_eq!(entries.settle(&entry(7), Settle::Ack), None);
        assert_eq!(entries.settle(&entry(7), Settle::Ack), None);
        assert_eq!(entries.settle(&entry(7), Settle::Ack), Some(Settle::Ack));
        assert_eq!(entries.open.len(), 0);
    }

    #[test]
    fn a_batch_with_one_failure_is_redelivered_after_the_longest_delay() {
        let mut entries = Entries::default();
        entries.received(&entry(9), 3);
        assert_eq!(entries.settle(&entry(9), Settle::Nack(Duration::from_millis(10))), None);
        assert_eq!(entries.settle(&entry(9), Settle::Ack), None);
        assert_eq!(
            entries.settle(&entry(9), Settle::Nack(Duration::from_millis(40))),
            Some(Settle::Nack(Duration::from_millis(40)))
        );
    }

    #[test]
    fn a_held_message_keeps_its_batch_unacknowledged_unless_another_failed() {
        let mut entries = Entries::default();
        entries.received(&entry(3), 2);
        assert_eq!(entries.settle(&entry(3), Settle::Hold), None);
        assert_eq!(entries.settle(&entry(3), Settle::Ack), None, "a batch with a held message was acknowledged");
        assert_eq!(entries.open.len(), 0);

        entries.received(&entry(4), 2);
        assert_eq!(entries.settle(&entry(4), Settle::Hold), None);
        let delay = Duration::from_millis(5);
        assert_eq!(entries.settle(&entry(4), Settle::Nack(delay)), Some(Settle::Nack(delay)), "the failure was lost");

        entries.received(&entry(5), 1);
        assert_eq!(entries.settle(&entry(5), Settle::Hold), None);
    }
}
