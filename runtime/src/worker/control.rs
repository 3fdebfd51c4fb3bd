//! What the worker shares with each instance's thread: the stop flag, the swap slot, the call
//! watch for timeouts, and the counters.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use super::stats::InstanceStats;
use crate::{
    hosted::Instance,
    io::transport::{Delivery, DeliveryTag, MessageId, Source},
    state::StateSlot,
    sync::lock,
    telemetry::InstanceMetrics,
};

/// A new plugin instance waiting to be switched to between two messages.
#[derive(Debug)]
pub(super) struct Swap {
    pub instance: Instance,
    /// Keep the old version beside it and roll back after this many regressions.
    pub probation: Option<u32>,
}

/// The shared side of one instance.
#[derive(Debug)]
pub(super) struct InstanceControl {
    pub id: u32,
    pub source: Arc<dyn Source>,
    /// The instance's state writes in progress, shared by the versions it runs.
    pub state: Arc<StateSlot>,
    pub stats: InstanceStats,
    pub stop: AtomicBool,
    pub swap_ready: AtomicBool,
    swap: Mutex<Option<Swap>>,
    pub watch: CallWatch,
    /// Held while a batch is committed or taken back; `true` once the watchdog took it back.
    pub commit: Mutex<bool>,
    /// Mirrors `commit`'s flag so the loop can check it without locking.
    pub revoked: AtomicBool,
}

impl InstanceControl {
    pub fn new(
        id: u32,
        source: Arc<dyn Source>,
        version: &str,
        state: Arc<StateSlot>,
        metrics: Arc<InstanceMetrics>,
    ) -> Self {
        Self {
            id,
            source,
            state,
            stats: InstanceStats::new(version, metrics),
            stop: AtomicBool::new(false),
            swap_ready: AtomicBool::new(false),
            swap: Mutex::new(None),
            watch: CallWatch::default(),
            commit: Mutex::new(false),
            revoked: AtomicBool::new(false),
        }
    }

    /// Leaves `swap` for the instance to take at its next message boundary. Returns the swap
    /// it replaces, if the instance had not taken that one yet.
    pub fn offer_swap(&self, swap: Swap) -> Option<Swap> {
        let replaced = lock(&self.swap).replace(swap);
        self.swap_ready.store(true, Ordering::Release);
        self.source.wake();
        replaced
    }

    /// Takes the waiting swap, if any: the instance's loop to switch to it, the worker to
    /// withdraw one the instance has not taken yet. The flag is cleared before the slot is
    /// emptied, so a swap offered in between leaves the flag set and is not stranded.
    pub fn take_swap(&self) -> Option<Swap> {
        self.swap_ready.store(false, Ordering::Release);
        lock(&self.swap).take()
    }

    /// Takes back the batch in hand, as the watchdog does with a stuck call: the loop stops
    /// after the call returns and discards what the batch came to.
    pub fn take_back_batch(&self) {
        let mut revoked = lock(&self.commit);
        *revoked = true;
        self.revoked.store(true, Ordering::Release);
    }

    /// Asks the loop to stop after the batch in hand.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.source.wake();
    }
}

/// Which call an instance is in, for the watchdog: a sequence number that changes with every
/// call (0 between calls), and the delivery being processed.
#[derive(Debug, Default)]
pub(super) struct CallWatch {
    sequence: AtomicU64,
    next: AtomicU64,
    tag: AtomicU64,
    message_id: [AtomicU64; 3],
    redelivery_count: AtomicU32,
}

/// A call in progress, as the watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CallInProgress {
    pub sequence: u64,
    pub tag: DeliveryTag,
    pub message_id: MessageId,
    pub redelivery_count: u32,
}

impl CallWatch {
    pub fn enter(&self, delivery: &Delivery) {
        self.tag.store(delivery.tag, Ordering::Relaxed);
        for (word, value) in self.message_id.iter().zip(delivery.message_id.to_words()) {
            word.store(value, Ordering::Relaxed);
        }
        self.redelivery_count.store(delivery.redelivery_count, Ordering::Relaxed);
        let sequence = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.sequence.store(sequence, Ordering::Release);
    }

    pub fn leave(&self) {
        self.sequence.store(0, Ordering::Release);
    }

    /// The call in progress, if any.
    pub fn current(&self) -> Option<CallInProgress> {
        let sequence = self.sequence.load(Ordering::Acquire);
        (sequence != 0).then(|| CallInProgress {
            sequence,
            tag: self.tag.load(Ordering::Relaxed),
            message_id: MessageId::from_words(self.message_id.each_ref().map(|word| word.load(Ordering::Relaxed))),
            redelivery_count: self.redelivery_count.load(Ordering::Relaxed),
        })
    }

    /// Whether call `sequence` is still running.
    pub fn still_in(&self, sequence: u64) -> bool {
        self.sequence.load(Ordering::Acquire) == sequence
    }
}
