//! Who is waiting for what became of a message: `pfn functions trigger` publishes a message and
//! waits here for its output, its filtering, or its dead letter.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use crate::{io::transport::Message, sync::lock};

/// What became of a message, finally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Output(Vec<u8>),
    Filtered,
    DeadLettered { reason: String, error: String },
}

/// A waiter: the message it published (kept alive) and where its outcome goes.
type Waiter = (Arc<Message>, mpsc::Sender<Outcome>);

/// Waiters keyed by the identity of the message they published (the `Arc`'s address; the
/// registry holds a clone, so the address cannot be reused while the waiter waits).
#[derive(Debug, Default)]
pub struct Outcomes {
    waiting: AtomicUsize,
    waiters: Mutex<HashMap<usize, Waiter>>,
}

fn key(message: &Arc<Message>) -> usize {
    Arc::as_ptr(message) as usize
}

impl Outcomes {
    /// Registers interest in `message`, before it is published.
    pub fn watch(&self, message: &Arc<Message>) -> mpsc::Receiver<Outcome> {
        let (sender, receiver) = mpsc::channel();
        lock(&self.waiters).insert(key(message), (Arc::clone(message), sender));
        self.waiting.fetch_add(1, Ordering::Release);
        receiver
    }

    /// Stops waiting for `message`.
    pub fn forget(&self, message: &Arc<Message>) {
        if lock(&self.waiters).remove(&key(message)).is_some() {
            self.waiting.fetch_sub(1, Ordering::Release);
        }
    }

    /// Whether anyone waits at all (checked per batch, so the common case costs one load).
    #[inline]
    pub fn anyone_waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Tells the waiter of `message`, if any, what became of it.
    pub fn report(&self, message: &Arc<Message>, outcome: Outcome) {
        let waiter = lock(&self.waiters).remove(&key(message));
        if let Some((_, sender)) = waiter {
            self.waiting.fetch_sub(1, Ordering::Release);
            // The waiter may have given up already; nothing is lost then.
            let _ = sender.send(outcome);
        }
    }
}
