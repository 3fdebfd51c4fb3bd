//! Batches whose outputs are out for publishing and whose state writes are out for the disk. A
//! batch's inputs are settled only once every message it published is held by the transport and
//! its state writes are durable, while the instance goes on with the next batch; the transport
//! and the state flusher report from their own threads, so results come back through a queue
//! that the instance's own thread drains.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use thiserror::Error;

use super::outcomes::Outcome;
use crate::{
    io::transport::{DeliveryTag, Message, Published, Sink, TransportError},
    state::{StateError, StateSlot},
    sync::lock,
};

/// Why a commit's inputs do not count as done: something it waited for was not held.
#[derive(Debug, Clone, Error)]
pub(super) enum Unheld {
    #[error("publishing failed: {0}")]
    Publish(#[from] TransportError),
    #[error("state writes failed: {0}")]
    State(#[from] StateError),
}

/// Which of a commit's inputs a publish is for: all of them (the batch's outputs and dead
/// letters), or those whose calls published its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Covers {
    All,
    Inputs(Vec<DeliveryTag>),
}

/// One batch's settlement, waiting for its publishes and its state writes.
#[derive(Debug, Default)]
pub(super) struct Commit {
    id: u64,
    /// Publishes and state flushes not yet reported.
    pending: usize,
    /// The first of them that failed for every input, if any: then no input of the batch counts
    /// as done.
    pub failure: Option<Unheld>,
    /// Inputs that are not done because a publish made for them failed, with why.
    pub failed_inputs: Vec<(DeliveryTag, Unheld)>,
    /// The inputs to acknowledge once every publish is held.
    pub acks: Vec<DeliveryTag>,
    /// What to tell anyone waiting on an input's outcome.
    pub reports: Vec<(DeliveryTag, Arc<Message>, Outcome)>,
}

/// Names an open commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CommitId(u64);

/// One result reported for a commit: its id, the inputs the result is for, and the result.
type Report = (u64, Covers, Result<(), Unheld>);

/// Results reported by the transport and the state store.
#[derive(Debug, Default)]
struct Reported {
    results: Mutex<Vec<Report>>,
    arrived: Condvar,
}

/// The commits of one instance that are not settled yet, oldest first.
#[derive(Debug, Default)]
pub(super) struct Commits {
    next_id: u64,
    open: Vec<Commit>,
    /// The inputs of the open commits.
    inputs: usize,
    reported: Arc<Reported>,
}

impl Commits {
    /// Opens a commit for a batch's inputs; its publishes follow with [`Commits::publish`].
    pub fn open(&mut self, acks: Vec<DeliveryTag>, reports: Vec<(DeliveryTag, Arc<Message>, Outcome)>) -> CommitId {
        self.next_id += 1;
        self.inputs += acks.len();
        self.open.push(Commit { id: self.next_id, acks, reports, ..Commit::default() });
        CommitId(self.next_id)
    }

    /// Publishes `messages` to `topic` as part of commit `id`, which must be open, for the inputs
    /// it `covers`: if it fails, they are not done.
    pub fn publish(&mut self, id: CommitId, sink: &dyn Sink, topic: &str, messages: Vec<Message>, covers: Covers) {
        let report = self.expect(id, covers);
        sink.publish_then(topic, messages, Published::new(move |result| report(result.map_err(Unheld::from))));
    }

    /// Stages the state writes of `slot`'s batch, if any, as part of commit `id`, which must be
    /// open: its inputs are settled once the writes are on disk.
    pub fn stage_state(&mut self, id: CommitId, slot: &StateSlot) {
        slot.commit_batch(|| {
            let report = self.expect(id, Covers::All);
            Box::new(move |result| report(result.map_err(Unheld::from)))
        });
    }

    /// One more result that commit `id` waits for; the returned callback reports it.
    fn expect(&mut self, id: CommitId, covers: Covers) -> impl FnOnce(Result<(), Unheld>) + Send + 'static {
        let commit = self.open.iter_mut().find(|commit| commit.id == id.0);
        debug_assert!(commit.is_some(), "commit {} is not open", id.0);
        if let Some(commit) = commit {
            commit.pending += 1;
        }
        let reported = Arc::clone(&self.reported);
        move |result| {
            lock(&reported.results).push((id.0, covers, result));
            reported.arrived.notify_one();
        }
    }

    /// How many commits wait for their publishes.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no commit waits.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// How many inputs wait in them.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Takes the commits whose publishes are all reported, waiting up to `wait` for one when
    /// none is ready yet.
    pub fn take_finished(&mut self, wait: Duration, into: &mut Vec<Commit>) {
        let deadline = Instant::now() + wait;
        loop {
            self.apply_reports();
            let before = into.len();
            into.extend(self.open.extract_if(.., |commit| commit.pending == 0));
            self.inputs -= into[before..].iter().map(|commit| commit.acks.len()).sum::<usize>();
            if into.len() > before || self.open.is_empty() {
                return;
            }
            let results = lock(&self.reported.results);
            let timeout = deadline.saturating_duration_since(Instant::now());
            if results.is_empty() {
                if timeout.is_zero() {
                    return;
                }
                let (_results, _) = self
                    .reported
                    .arrived
                    .wait_timeout(results, timeout)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }

    fn apply_reports(&mut self) {
        let results = std::mem::take(&mut *lock(&self.reported.results));
        for (id, covers, result) in results {
            let Some(commit) = self.open.iter_mut().find(|commit| commit.id == id) else { continue };
            commit.pending -= 1;
            match (result, covers) {
                (Ok(()), _) => {}
                (Err(error), Covers::All) => {
                    commit.failure.get_or_insert(error);
                }
                (Err(error), Covers::Inputs(tags)) => {
                    commit.failed_inputs.extend(tags.into_iter().map(|tag| (tag, error.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, thread};

    use super::*;

    /// A sink that reports each publish when the test says so, from another thread.
    #[derive(Debug)]
    struct LaterSink {
        pending: Mutex<mpsc::Sender<Published>>,
    }

    impl Sink for LaterSink {
        fn publish(&self, _: &str, _: Vec<Message>) -> Result<(), TransportError> {
            Ok(())
        }

        fn publish_then(&self, _: &str, _: Vec<Message>, done: Published) {
            lock(&self.pending).send(done).expect("test receiver alive");
        }
    }

    fn later_sink() -> (LaterSink, mpsc::Receiver<Published>) {
        let (sender, receiver) = mpsc::channel();
        (LaterSink { pending: Mutex::new(sender) }, receiver)
    }

    fn settled(commits: &mut Commits, wait: Duration) -> Vec<Commit> {
        let mut into = Vec::new();
        commits.take_finished(wait, &mut into);
        into
    }

    #[test]
    fn a_commit_without_publishes_settles_at_once() {
        let mut commits = Commits::default();
        commits.open(vec![1, 2], Vec::new());
        let done = settled(&mut commits, Duration::ZERO);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].acks, vec![1, 2]);
        assert_eq!((commits.len(), commits.inputs()), (0, 0));
    }

    #[test]
    fn a_commit_settles_only_when_every_publish_is_reported() {
        let (sink, pending) = later_sink();
        let mut commits = Commits::default();
        let id = commits.open(vec![7], Vec::new());
        commits.publish(id, &sink, "out", vec![Message::from_payload(b"a".to_vec())], Covers::All);
        commits.publish(id, &sink, "dead", vec![Message::from_payload(b"b".to_vec())], Covers::All);
        let (first, second) = (pending.recv().expect("first"), pending.recv().expect("second"));
        first.report(Ok(()));
        assert!(settled(&mut commits, Duration::ZERO).is_empty(), "one publish still out");
        assert_eq!((commits.len(), commits.inputs()), (1, 1));
        thread::spawn(move || second.report(Ok(())));
        let done = settled(&mut commits, Duration::from_secs(10));
        assert_eq!(done.len(), 1);
        assert!(done[0].failure.is_none());
        assert_eq!(done[0].acks, vec![7]);
    }

    #[test]
    fn one_failed_publish_fails_its_commit_and_no_other() {
        let (sink, pending) = later_sink();
        let mut commits = Commits::default();
        let first = commits.open(vec![1], Vec::new());
        commits.publish(first, &sink, "out", vec![Message::default()], Covers::All);
        let second = commits.open(vec![2], Vec::new());
        commits.publish(second, &sink, "out", vec![Message::default()], Covers::All);
        let (first, second) = (pending.recv().expect("first"), pending.recv().expect("second"));
        second.report(Ok(()));
        first.report(Err(TransportError::Topic { topic: "out".into(), reason: "no receipt".into() }));
        let mut done = settled(&mut commits, Duration::from_secs(10));
        done.sort_by_key(|commit| commit.acks[0]);
        assert_eq!(done.len(), 2);
        let refused = TransportError::Topic { topic: "out".into(), reason: "no receipt".into() };
        assert!(matches!(&done[0].failure, Some(Unheld::Publish(error)) if *error == refused));
        assert!(done[1].failure.is_none());
    }

    #[test]
    fn a_failed_publish_for_some_inputs_fails_only_those() {
        let (sink, pending) = later_sink();
        let mut commits = Commits::default();
        let id = commits.open(vec![1, 2, 3], Vec::new());
        commits.publish(id, &sink, "out", vec![Message::default(); 3], Covers::All);
        commits.publish(id, &sink, "routed", vec![Message::default()], Covers::Inputs(vec![2]));
        let (output, routed) = (pending.recv().expect("output"), pending.recv().expect("routed"));
        output.report(Ok(()));
        routed.report(Err(TransportError::Topic { topic: "routed".into(), reason: "refused".into() }));
        let done = settled(&mut commits, Duration::from_secs(10));
        assert_eq!(done.len(), 1);
        assert!(done[0].failure.is_none());
        let failed: Vec<DeliveryTag> = done[0].failed_inputs.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(failed, vec![2]);
    }

    #[test]
    fn a_publish_dropped_unreported_fails_its_commit_as_closed() {
        let (sink, pending) = later_sink();
        let mut commits = Commits::default();
        let id = commits.open(vec![3], Vec::new());
        commits.publish(id, &sink, "out", vec![Message::default()], Covers::All);
        drop(pending.recv().expect("the publish"));
        let done = settled(&mut commits, Duration::from_secs(10));
        assert_eq!(done.len(), 1);
        assert!(matches!(done[0].failure, Some(Unheld::Publish(TransportError::Closed))));
    }

    #[test]
    fn waiting_gives_up_after_the_wait_when_nothing_is_reported() {
        let (sink, _pending) = later_sink();
        let mut commits = Commits::default();
        let id = commits.open(vec![1], Vec::new());
        commits.publish(id, &sink, "out", vec![Message::default()], Covers::All);
        assert!(settled(&mut commits, Duration::from_millis(20)).is_empty());
        assert_eq!(commits.len(), 1);
    }
}
