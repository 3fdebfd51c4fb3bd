//! The per-instance loop: receive a batch, call the plugin on each message, then publish the
//! batch's outputs and dead letters. The inputs are acknowledged once the transport holds all
//! of them (see [`super::commits`]); meanwhile the loop goes on with the next batch, up to
//! [`BATCHES_IN_FLIGHT`] batches ahead.
//!
//! A pending hot swap is taken between two messages, so each message is processed by exactly
//! one version and the instance's order is kept. A call stuck past `timeout_ms` has its batch
//! taken back by the watchdog (see [`super::watchdog`]); its results are then discarded.

use std::{
    sync::{Arc, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};

use super::{
    WorkerEvent,
    commits::{Commit, Commits, Covers, Unheld},
    control::{InstanceControl, Swap},
    outcomes::{Outcome, Outcomes},
    retry_letter,
    routed::Routed,
};
use crate::{
    context::Publication,
    execute::{CallOutcome, Effects, Executed, Input, Policy, Settlement},
    hosted::Instance,
    io::transport::{
        Delivery, DeliveryTag, INPUT_ID_PROPERTY, INPUT_TOPIC_PROPERTY, Message, MessageIdText, Sink, TransportError,
    },
    sync::lock,
    telemetry::{Count, Counts},
    vocabulary::{Failure, FailureKind, ProcessingGuarantees},
};

/// Most deliveries taken per receive, in the thread runtime.
pub(super) const BATCH: usize = 512;
/// Most deliveries taken per receive, in the process runtime: a batch crosses to the child at
/// a fixed cost (two frames, two wake-ups), which a larger batch spreads thinner.
pub(super) const CHILD_BATCH: usize = 2048;
/// How long a receive waits before the loop looks at its stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Once this many batches' inputs wait for their publishes, the loop waits for some to settle
/// before it receives again (a batch may take it past this by up to a batch - 1).
const BATCHES_IN_FLIGHT: usize = 4;
/// How long a stopping instance waits for its publishes before it says so in the log.
const SLOW_DRAIN: Duration = Duration::from_secs(5);

/// The fixed settings every instance of a function shares.
#[derive(Debug)]
pub(super) struct LoopSettings {
    pub fqfn: String,
    pub output: Option<String>,
    /// Outputs keep their input's properties and event time.
    pub forward_properties: bool,
    /// Outputs carry their input's topic and id (on Pulsar, as Pulsar Functions' do).
    pub mark_outputs: bool,
    pub dead_letter_topic: String,
    /// Where inputs that killed the instance's process are tried again (process runtime).
    pub retry_topic: Option<String>,
    pub policy: Policy,
    pub timeouts: bool,
    pub nack_backoff: Backoff,
    /// Time one call in [`TIMED_EVERY`] for the latency metrics.
    pub timing: bool,
    /// Most deliveries taken per receive ([`BATCH`] or [`CHILD_BATCH`]).
    pub batch: usize,
}

/// One call in this many is timed for the latency metrics: reading the clock around every call
/// would cost a noticeable share of a call that takes tens of nanoseconds.
const TIMED_EVERY: u32 = 16;

/// Redelivery delay after the `n`th failure: `base * 2^n`, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn after(&self, failures: u32) -> Duration {
        self.base.saturating_mul(1 << failures.min(16)).min(self.max)
    }
}

/// The old version kept beside a new one until the new one proves itself.
#[derive(Debug)]
struct Probation {
    old: Instance,
    /// Roll back after this many messages that the new version failed and the old did not.
    threshold: u32,
    regressions: u32,
}

/// One instance's thread state.
#[derive(Debug)]
pub(super) struct InstanceLoop {
    pub control: Arc<InstanceControl>,
    pub instance: Instance,
    pub settings: Arc<LoopSettings>,
    pub sink: Arc<dyn Sink>,
    pub outcomes: Arc<Outcomes>,
    pub events: mpsc::Sender<WorkerEvent>,
    probation: Option<Probation>,
    batch: Vec<Delivery>,
    outputs: Vec<Message>,
    /// What the batch's calls published to topics of their choosing.
    routed: Routed,
    dead_letters: Vec<Message>,
    acks: Vec<DeliveryTag>,
    /// Inputs done with but not acknowledged by the function (`manual` guarantees).
    unacked: Vec<DeliveryTag>,
    nacks: Vec<(DeliveryTag, u32, Failure)>,
    reports: Vec<(DeliveryTag, Arc<Message>, Outcome)>,
    counts: Counts,
    /// Calls made, for picking the ones to time.
    calls: u32,
    commits: Commits,
    finished: Vec<Commit>,
}

/// What one message came to, with its output copied out of the instance.
type Called = (CallOutcome<Vec<u8>>, Effects);

impl InstanceLoop {
    pub fn new(
        control: Arc<InstanceControl>,
        instance: Instance,
        settings: Arc<LoopSettings>,
        sink: Arc<dyn Sink>,
        outcomes: Arc<Outcomes>,
        events: mpsc::Sender<WorkerEvent>,
    ) -> Self {
        Self {
            control,
            instance,
            settings,
            sink,
            outcomes,
            events,
            probation: None,
            batch: Vec::with_capacity(BATCH),
            outputs: Vec::with_capacity(BATCH),
            routed: Routed::default(),
            dead_letters: Vec::new(),
            acks: Vec::with_capacity(BATCH),
            unacked: Vec::new(),
            nacks: Vec::new(),
            reports: Vec::new(),
            counts: Counts::default(),
            calls: 0,
            commits: Commits::default(),
            finished: Vec::new(),
        }
    }

    /// Runs until asked to stop (finishing the batch in hand) or until the transport closes.
    pub fn run(mut self) {
        let span = tracing::error_span!("function", fqfn = %self.settings.fqfn, instance = self.control.id);
        let _entered = span.enter();
        self.open_output();
        while !self.control.stop.load(Ordering::Acquire) {
            self.finish_commits(Duration::ZERO);
            if self.control.swap_ready.load(Ordering::Acquire) {
                // Idle between batches: switch now rather than at the next message.
                self.take_swap();
            }
            self.batch.clear();
            // With publishes out, do not sit in a receive: their inputs wait to be settled.
            let wait = if self.commits.is_empty() { IDLE_WAIT } else { Duration::ZERO };
            match self.control.source.receive(self.settings.batch, wait, &mut self.batch) {
                Ok(0) => {
                    self.finish_commits(IDLE_WAIT);
                    continue;
                }
                Ok(_) => {}
                Err(TransportError::Closed) => break,
                Err(error) => {
                    tracing::error!(%error, "receive failed");
                    std::thread::sleep(IDLE_WAIT);
                    continue;
                }
            }
            self.process_batch();
            self.commit();
        }
        self.drain_commits();
        self.take_swap();
        if let Err(error) = self.instance.close() {
            tracing::warn!(%error, "plugin close failed");
        }
    }

    /// Gets the output topic ready before the first input (its failure is only logged: the
    /// first publish tries again, and its failure settles that batch).
    fn open_output(&self) {
        if let Some(output) = &self.settings.output
            && let Err(error) = self.sink.open(output)
        {
            tracing::warn!(%error, "cannot open the output topic yet");
        }
    }

    fn process_batch(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        if self.settings.retry_topic.is_some() {
            batch.iter_mut().for_each(retry_letter::apply_count);
        }
        if self.settings.policy.guarantees == ProcessingGuarantees::AtMostOnce {
            let tags: Vec<DeliveryTag> = batch.iter().map(|delivery| delivery.tag).collect();
            // Counted now: a batch taken back by the watchdog is still acknowledged.
            let mut acked = Counts::default();
            acked.add(Count::Acked, self.control.source.ack(&tags) as u64);
            self.control.stats.add(&acked);
        }
        if self.instance.wants_batches() {
            self.prepare_calls(&batch);
        }
        let mut ids = MessageIdText::default();
        for delivery in &batch {
            if self.control.swap_ready.load(Ordering::Acquire) {
                self.take_swap();
            }
            self.counts.add(Count::Received, 1);
            if self.settings.policy.exhausted(delivery.redelivery_count) {
                let exhausted = Policy::exhausted_failure();
                let failure = delivery.last_failure.as_deref().unwrap_or(&exhausted);
                self.dead_letter(delivery, failure);
                continue;
            }
            let called = self.call(delivery, ids.format(delivery.message_id));
            if self.control.revoked.load(Ordering::Acquire) {
                // The watchdog took this batch back while the call ran: stop here.
                break;
            }
            self.settle(delivery, called);
        }
        self.batch = batch;
    }

    /// Offers the instance the inputs of `batch` that will be called, ahead of their calls.
    fn prepare_calls(&mut self, batch: &[Delivery]) {
        let policy = self.settings.policy;
        let called: Vec<&Delivery> =
            batch.iter().filter(|delivery| !policy.exhausted(delivery.redelivery_count)).collect();
        let (mut text, mut ids) = (MessageIdText::default(), String::new());
        let ranges: Vec<std::ops::Range<usize>> = called
            .iter()
            .map(|delivery| {
                let start = ids.len();
                ids.push_str(text.format(delivery.message_id));
                start..ids.len()
            })
            .collect();
        let inputs: Vec<Input<'_>> =
            called.iter().zip(ranges).map(|(delivery, range)| Input::of_delivery(delivery, &ids[range])).collect();
        self.instance.prepare(&inputs);
    }

    /// Calls the running version (and, on probation, the old one when the new one fails):
    /// what the message came to, and what the call did.
    fn call(&mut self, delivery: &Delivery, message_id: &str) -> Called {
        let input = Input::of_delivery(delivery, message_id);
        if self.settings.timeouts {
            self.control.watch.enter(delivery);
        }
        self.calls = self.calls.wrapping_add(1);
        let started = (self.settings.timing && self.calls.is_multiple_of(TIMED_EVERY)).then(Instant::now);
        let called = call(&mut self.instance, &input);
        if let Some(started) = started {
            self.control.stats.metrics.observe_latency(started.elapsed());
        }
        let called = match (called, self.probation.as_mut()) {
            ((CallOutcome::Failed(error), effects), Some(probation)) => match call(&mut probation.old, &input) {
                (CallOutcome::Failed(_), old_effects) => (CallOutcome::Failed(error), effects.or(old_effects)),
                (old_outcome, old_effects) => {
                    probation.regressions += 1;
                    if probation.regressions >= probation.threshold {
                        self.roll_back(&error);
                    }
                    // What either version did through its context stands.
                    (old_outcome, effects.or(old_effects))
                }
            },
            (called, Some(_)) => {
                self.end_probation();
                called
            }
            (called, None) => called,
        };
        if self.settings.timeouts {
            self.control.watch.leave();
        }
        called
    }

    /// Queues what a message came to, as the function's policy settles it.
    fn settle(&mut self, delivery: &Delivery, (outcome, effects): Called) {
        let settlement = self.settings.policy.settle(&outcome, &effects, delivery.redelivery_count);
        self.routed.add(delivery.tag, effects.published);
        let report = self.outcomes.anyone_waiting();
        let failure = outcome.failure().cloned();
        match outcome {
            CallOutcome::Output(payload) => {
                self.counts.add(Count::ProcessedSuccessfully, 1);
                self.counts.add(Count::Outputs, 1);
                if report {
                    let outcome = Outcome::Output(payload.clone());
                    self.reports.push((delivery.tag, Arc::clone(&delivery.message), outcome));
                }
                if self.settings.output.is_some() {
                    let input = &delivery.message;
                    let mut output = Message { payload, key: input.key.clone(), ..Message::default() };
                    if self.settings.forward_properties {
                        output.properties.clone_from(&input.properties);
                        output.event_time_ms = input.event_time_ms;
                    }
                    if self.settings.mark_outputs {
                        output.properties.retain(|(key, _)| key != INPUT_TOPIC_PROPERTY && key != INPUT_ID_PROPERTY);
                        output.properties.push((INPUT_TOPIC_PROPERTY.to_owned(), delivery.topic.to_string()));
                        output.properties.push((INPUT_ID_PROPERTY.to_owned(), delivery.message_id.to_string()));
                    }
                    self.outputs.push(output);
                }
            }
            CallOutcome::Filtered => {
                self.counts.add(Count::ProcessedSuccessfully, 1);
                self.counts.add(Count::Filtered, 1);
                if report {
                    self.reports.push((delivery.tag, Arc::clone(&delivery.message), Outcome::Filtered));
                }
            }
            CallOutcome::Failed(error) => {
                self.counts.add_failure(error.kind);
                self.control.stats.metrics.note_exception(!error.kind.is_system(), &error.to_string());
                tracing::debug!(message_id = %delivery.message_id, %error, "call failed");
            }
        }
        match (settlement, failure) {
            (Settlement::Ack, _) => self.acks.push(delivery.tag),
            (Settlement::Keep, _) => self.unacked.push(delivery.tag),
            (Settlement::AckedAlready, _) => {}
            (Settlement::DeadLetter, Some(failure)) => self.dead_letter(delivery, &failure),
            (Settlement::Retry, Some(failure)) => match &self.settings.retry_topic {
                Some(topic) if retry_letter::goes_to_retry_topic(&failure) => {
                    let copy = retry_letter::copy_for_retry(delivery, &failure);
                    self.routed.add(delivery.tag, vec![Publication { topic: topic.clone(), message: copy }]);
                    self.acks.push(delivery.tag);
                }
                _ => self.nacks.push((delivery.tag, delivery.redelivery_count, failure)),
            },
            (Settlement::DeadLetter | Settlement::Retry, None) => {
                debug_assert!(false, "only a failed call is retried or dead-lettered");
                self.acks.push(delivery.tag);
            }
        }
    }

    /// Queues the input for the dead-letter topic, with why, and acknowledges it.
    fn dead_letter(&mut self, delivery: &Delivery, failure: &Failure) {
        let (reason, error) = (failure.kind.as_str(), failure.message.as_str());
        let input = &delivery.message;
        let mut properties = input.properties.clone();
        properties.extend([
            ("pfn.dead_letter.reason".to_owned(), reason.to_owned()),
            ("pfn.dead_letter.error".to_owned(), error.to_owned()),
        ]);
        // A copy from the retry topic names its original already.
        if !properties.iter().any(|(key, _)| key == retry_letter::REAL_TOPIC) {
            properties.push((retry_letter::REAL_TOPIC.to_owned(), delivery.topic.to_string()));
            properties.push((retry_letter::ORIGIN_MESSAGE_ID.to_owned(), delivery.message_id.to_string()));
        }
        if self.outcomes.anyone_waiting() {
            let outcome = Outcome::DeadLettered { reason: reason.to_owned(), error: error.to_owned() };
            self.reports.push((delivery.tag, Arc::clone(input), outcome));
        }
        self.dead_letters.push(Message {
            payload: input.payload.clone(),
            key: input.key.clone(),
            properties,
            event_time_ms: input.event_time_ms,
        });
        self.counts.add(Count::DeadLettered, 1);
        self.acks.push(delivery.tag);
    }

    /// Sends the batch's outputs and dead letters on their way and hands its inputs to a
    /// commit, unless the watchdog took the batch back. Waits while too many are out.
    fn commit(&mut self) {
        let control = Arc::clone(&self.control);
        let mut revoked = lock(&control.commit);
        if *revoked {
            *revoked = false;
            self.control.revoked.store(false, Ordering::Release);
            let discarded = self.outputs.len();
            self.discard();
            self.control.state.discard_batch();
            if !self.control.stop.load(Ordering::Acquire) {
                self.control.source.attach();
            }
            self.control.stats.healthy.store(true, Ordering::Release);
            tracing::warn!(discarded, "stuck call returned after its batch was taken back; instance healthy again");
            return;
        }
        // No call runs now, so the watchdog cannot take this batch back: let it go on watching
        // the other instances while this one publishes.
        drop(revoked);
        let acks = std::mem::replace(&mut self.acks, Vec::with_capacity(BATCH));
        let commit = self.commits.open(acks, std::mem::take(&mut self.reports));
        if let Some(topic) = self.settings.output.as_deref().filter(|_| !self.outputs.is_empty()) {
            let outputs = std::mem::replace(&mut self.outputs, Vec::with_capacity(BATCH));
            self.commits.publish(commit, self.sink.as_ref(), topic, outputs, Covers::All);
        }
        for group in self.routed.take_by_topic() {
            self.commits.publish(
                commit,
                self.sink.as_ref(),
                &group.topic,
                group.messages,
                Covers::Inputs(group.inputs),
            );
        }
        if !self.dead_letters.is_empty() {
            let letters = std::mem::take(&mut self.dead_letters);
            let topic = &self.settings.dead_letter_topic;
            self.commits.publish(commit, self.sink.as_ref(), topic, letters, Covers::All);
        }
        self.commits.stage_state(commit, &self.control.state);
        for (tag, failures, failure) in self.nacks.drain(..) {
            control.source.nack(tag, self.settings.nack_backoff.after(failures), &failure);
        }
        if !self.unacked.is_empty() {
            control.source.keep_unacked(&self.unacked);
        }
        // Acknowledged inputs are counted once their commit settles.
        self.control.stats.add(&self.counts);
        self.control.stats.metrics.invoked_now();
        self.discard();
        self.finish_commits(Duration::ZERO);
        while self.commits.inputs() >= BATCHES_IN_FLIGHT * self.settings.batch {
            self.finish_commits(IDLE_WAIT);
        }
    }

    /// Finishes the commits whose publishes are all reported, waiting up to `wait` for one.
    fn finish_commits(&mut self, wait: Duration) {
        let mut finished = std::mem::take(&mut self.finished);
        self.commits.take_finished(wait, &mut finished);
        for commit in finished.drain(..) {
            self.finish(commit);
        }
        self.finished = finished;
        self.control.stats.metrics.waiting_inputs.store(self.commits.inputs() as u64, Ordering::Relaxed);
    }

    /// Acknowledges and counts a commit's inputs, or, when a publish failed, has those it was
    /// for redelivered: every one of them when it was for the whole batch.
    fn finish(&self, commit: Commit) {
        let Commit { failure, mut failed_inputs, mut acks, mut reports, .. } = commit;
        let mut counts = Counts::default();
        if let Some(error) = failure {
            self.redeliver(&acks, &error, &mut counts);
            self.control.stats.add(&counts);
            return;
        }
        if !failed_inputs.is_empty() {
            failed_inputs.sort_unstable_by_key(|(tag, _)| *tag);
            failed_inputs.dedup_by_key(|(tag, _)| *tag);
            let failed = |tag: &DeliveryTag| failed_inputs.binary_search_by_key(tag, |(failed, _)| *failed).is_ok();
            acks.retain(|tag| !failed(tag));
            // A failed input's outcome is reported when it is done.
            reports.retain(|(tag, _, _)| !failed(tag));
            for (tag, error) in &failed_inputs {
                self.redeliver(std::slice::from_ref(tag), error, &mut counts);
            }
        }
        let acked = if self.settings.policy.guarantees == ProcessingGuarantees::AtMostOnce {
            0 // acknowledged and counted when received
        } else {
            self.control.source.ack(&acks)
        };
        counts.add(Count::Acked, acked as u64);
        for (_, message, outcome) in reports {
            self.outcomes.report(&message, outcome);
        }
        self.control.stats.add(&counts);
    }

    /// Has inputs redelivered because what their commit waited for was not held, counting them
    /// as system exceptions.
    fn redeliver(&self, tags: &[DeliveryTag], error: &Unheld, counts: &mut Counts) {
        tracing::error!(%error, inputs = tags.len(), "commit failed; inputs will be redelivered");
        self.control.stats.metrics.note_exception(false, &error.to_string());
        counts.add(Count::SystemExceptions, tags.len() as u64);
        let failure = Failure::new(FailureKind::System, error.to_string());
        for &tag in tags {
            self.control.source.nack(tag, self.settings.nack_backoff.base, &failure);
        }
    }

    /// Waits until every commit is settled.
    fn drain_commits(&mut self) {
        let since = std::time::Instant::now();
        let mut told = false;
        while !self.commits.is_empty() {
            self.finish_commits(IDLE_WAIT);
            if !told && since.elapsed() >= SLOW_DRAIN {
                tracing::warn!(
                    batches = self.commits.len(),
                    "still waiting for the transport to hold this instance's outputs"
                );
                told = true;
            }
        }
    }

    fn discard(&mut self) {
        self.outputs.clear();
        self.routed.clear();
        self.dead_letters.clear();
        self.acks.clear();
        self.unacked.clear();
        self.nacks.clear();
        self.reports.clear();
        self.counts = Counts::default();
    }

    /// Switches to the instance waiting in the swap slot, if any.
    fn take_swap(&mut self) {
        let Some(swap) = self.control.take_swap() else { return };
        let Swap { instance, probation } = swap;
        let old = std::mem::replace(&mut self.instance, instance);
        let (from, to) = (old.plugin().info.version.clone(), self.instance.plugin().info.version.clone());
        *lock(&self.control.stats.version) = to.clone();
        tracing::info!(%from, %to, "instance switched version");
        self.probation = match probation {
            Some(threshold) if threshold > 0 => Some(Probation { old, threshold, regressions: 0 }),
            _ => None,
        };
    }

    fn end_probation(&mut self) {
        if let Some(probation) = self.probation.take() {
            tracing::debug!(version = %probation.old.plugin().info.version, "new version passed probation");
        }
    }

    /// Goes back to the old version kept on probation and tells the worker.
    fn roll_back(&mut self, error: &Failure) {
        let Some(probation) = self.probation.take() else { return };
        let failed = std::mem::replace(&mut self.instance, probation.old);
        let (from, to) = (failed.plugin().info.version.clone(), self.instance.plugin().info.version.clone());
        *lock(&self.control.stats.version) = to.clone();
        tracing::warn!(%from, %to, failures = probation.threshold, %error, "new version failed where the old did not; rolled back");
        let event = WorkerEvent::RolledBack {
            fqfn: self.settings.fqfn.clone(),
            instance: self.control.id,
            from,
            to,
            reason: format!("failed {} messages the old version processed; last: {error}", probation.threshold),
        };
        // The worker is gone only when shutting down; the instance has rolled back either way.
        let _ = self.events.send(event);
    }
}

/// Calls `instance` on `input`, copying the output out of it.
fn call(instance: &mut Instance, input: &Input<'_>) -> Called {
    let Executed { outcome, effects } = instance.call(input);
    (outcome.to_owned_output(), effects)
}
