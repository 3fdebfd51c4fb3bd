//! Holding back the send receipts of one topic's producers, while every other frame passes:
//! a broker that is slow to persist one topic.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

/// Which producer writes which topic, and the receipts held back.
#[derive(Debug, Default)]
pub(super) struct ReceiptHold {
    state: Mutex<HoldState>,
}

#[derive(Debug, Default)]
struct HoldState {
    /// The topic whose receipts are held, if any.
    topic: Option<String>,
    /// Each producer's topic, by connection and producer id.
    producers: HashMap<(u64, u64), String>,
    /// Receipts held, with their connection, in the order they came.
    held: Vec<(u64, Vec<u8>)>,
}

/// Receipts let go, to be written to their connections in order before any later frame.
pub(super) struct Released<'a> {
    pub frames: Vec<(u64, Vec<u8>)>,
    /// Held until the frames are written, so that no later receipt overtakes them.
    _hold: MutexGuard<'a, HoldState>,
}

impl ReceiptHold {
    fn state(&self) -> MutexGuard<'_, HoldState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that producer `producer_id` of `connection` writes `topic`.
    pub fn note_producer(&self, connection: u64, producer_id: u64, topic: String) {
        self.state().producers.insert((connection, producer_id), topic);
    }

    /// Keeps `receipt` (from producer `producer_id` of `connection`) when its topic is held, or
    /// hands it back to be passed on.
    pub fn pass(&self, connection: u64, producer_id: u64, receipt: Vec<u8>) -> Option<Vec<u8>> {
        let mut state = self.state();
        let held_topic = state.topic.as_deref();
        if held_topic.is_some() && state.producers.get(&(connection, producer_id)).map(String::as_str) == held_topic {
            state.held.push((connection, receipt));
            return None;
        }
        Some(receipt)
    }

    /// Holds `topic`'s receipts from now on (none: holds nothing), and lets go of those held.
    pub fn set(&self, topic: Option<String>) -> Released<'_> {
        let mut state = self.state();
        state.topic = topic;
        let frames = std::mem::take(&mut state.held);
        Released { frames, _hold: state }
    }

    /// How many receipts are held now.
    pub fn held(&self) -> usize {
        self.state().held.len()
    }
}
