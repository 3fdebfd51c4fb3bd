//! One Pulsar consumer behind the blocking [`Source`] trait.
//!
//! The consumer is built on first use and rebuilt, with a fresh consumer id and back-off, when
//! its stream ends or fails; what it had delivered and not acknowledged is then the broker's
//! to redeliver. Negative acknowledgements are held here until their back-off has passed (the
//! crate's own nack has no delay); failures are counted per message in [`super::failures`],
//! since the crate does not expose the broker's redelivery count.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt};
use pulsar::{Consumer, TokioExecutor, consumer::InitialPosition, proto::MessageIdData};
use tokio::sync::{Mutex, Notify};

use super::{
    PulsarClient,
    entries::{Entries, EntryKey, Settle},
    failures::FailureKey,
    pattern::TopicsPattern,
};
use crate::io::transport::{
    Delivery, DeliveryTag, Message, MessageId, Source, SubscriptionPosition, SubscriptionRequest, SubscriptionType,
    TransportError,
};
use crate::vocabulary::Failure;

/// The first wait before rebuilding a failed consumer; it doubles up to [`MAX_REBUILD_BACKOFF`].
const MIN_REBUILD_BACKOFF: Duration = Duration::from_millis(200);
const MAX_REBUILD_BACKOFF: Duration = Duration::from_secs(10);
/// The consumer's receiver queue: the broker's flow permits. Below ~1000 the broker's
/// dispatch, not the function, sets the pace.
const RECEIVER_QUEUE: u32 = 1000;

/// How often a `topics_pattern` consumer looks for new matching topics (Pulsar's default is a
/// minute).
const TOPICS_REFRESH: Duration = Duration::from_secs(60);

type PulsarConsumer = Consumer<Vec<u8>, TokioExecutor>;

#[derive(Debug)]
struct Received {
    topic: Arc<str>,
    id: MessageIdData,
    entry: EntryKey,
    message_id: MessageId,
}

/// What the consumer has delivered and owes the broker.
#[derive(Debug, Default)]
struct Book {
    next_tag: DeliveryTag,
    in_flight: HashMap<DeliveryTag, Received>,
    entries: Entries,
    /// Negative acknowledgements waiting for their back-off.
    due: Vec<(Instant, Arc<str>, MessageIdData)>,
}

struct State {
    consumer: Option<PulsarConsumer>,
    book: Book,
    rebuild_at: Instant,
    backoff: Duration,
}

/// A consumer on one subscription of one or more Pulsar topics.
pub struct PulsarSource {
    client: Arc<PulsarClient>,
    request: SubscriptionRequest,
    state: Mutex<State>,
    wake: Notify,
    detached: AtomicBool,
}

impl std::fmt::Debug for PulsarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarSource").field("request", &self.request).finish_non_exhaustive()
    }
}

impl Drop for PulsarSource {
    fn drop(&mut self) {
        // A consumer spawns tasks as it closes.
        let _inside = self.client.runtime.enter();
        drop(self.state.get_mut().consumer.take());
    }
}

impl PulsarSource {
    pub(super) fn new(client: Arc<PulsarClient>, request: SubscriptionRequest) -> Self {
        let state =
            State { consumer: None, book: Book::default(), rebuild_at: Instant::now(), backoff: MIN_REBUILD_BACKOFF };
        Self { client, request, state: Mutex::new(state), wake: Notify::new(), detached: AtomicBool::new(false) }
    }

    async fn build_consumer(&self) -> Result<PulsarConsumer, pulsar::Error> {
        let kind = match self.request.kind {
            SubscriptionType::Shared => pulsar::SubType::Shared,
            SubscriptionType::KeyShared => pulsar::SubType::KeyShared,
            SubscriptionType::Failover => pulsar::SubType::Failover,
        };
        let position = match self.request.position {
            SubscriptionPosition::Latest => InitialPosition::Latest,
            SubscriptionPosition::Earliest => InitialPosition::Earliest,
        };
        let options = pulsar::ConsumerOptions::default().with_initial_position(position);
        let mut builder = self
            .client
            .pulsar
            .consumer()
            .with_subscription(&self.request.subscription)
            .with_subscription_type(kind)
            .with_batch_size(RECEIVER_QUEUE)
            .with_options(options);
        // The crate takes an id only for a single topic; it numbers the others itself.
        if self.request.topics.len() == 1 && self.request.topics_pattern.is_none() {
            builder = builder.with_consumer_id(self.client.next_consumer_id());
        }
        if !self.request.topics.is_empty() {
            builder = builder.with_topics(&self.request.topics);
        }
        if let Some(pattern) = &self.request.topics_pattern {
            let pattern = TopicsPattern::parse(pattern)
                .map_err(|e| pulsar::Error::Custom(format!("topics_pattern {pattern:?}: {e}")))?;
            builder = builder
                .with_lookup_namespace(pattern.namespace)
                .with_topic_regex(pattern.regex)
                .with_topic_refresh(TOPICS_REFRESH);
        }
        builder.build().await
    }

    /// The consumer, built if it is missing and its back-off has passed.
    async fn consumer<'a>(&self, state: &'a mut State) -> Option<&'a mut PulsarConsumer> {
        if state.consumer.is_none() {
            if Instant::now() < state.rebuild_at {
                return None;
            }
            match self.build_consumer().await {
                Ok(consumer) => {
                    tracing::info!(subscription = %self.request.subscription, topics = ?self.request.topics, "consumer subscribed");
                    state.consumer = Some(consumer);
                    state.backoff = MIN_REBUILD_BACKOFF;
                }
                Err(error) => {
                    self.client.counters.consumer_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        subscription = %self.request.subscription,
                        topics = ?self.request.topics,
                        %error,
                        retry_in = ?state.backoff,
                        "cannot subscribe"
                    );
                    state.rebuild_at = Instant::now() + state.backoff;
                    state.backoff = (state.backoff * 2).min(MAX_REBUILD_BACKOFF);
                    return None;
                }
            }
        }
        state.consumer.as_mut()
    }

    fn failure_key(&self, topic: &Arc<str>, id: MessageId) -> FailureKey {
        FailureKey { subscription: self.request.subscription.clone(), topic: Arc::clone(topic), id }
    }

    /// Drops a consumer whose stream ended or failed; the broker redelivers what it held.
    fn lose_consumer(&self, state: &mut State, why: &str) {
        if state.consumer.take().is_some() {
            let outages = self.client.counters.consumer_failures.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(subscription = %self.request.subscription, why, outages, "consumer lost; rebuilding it");
        }
        state.book.forget_deliveries();
        state.rebuild_at = Instant::now() + state.backoff;
    }

    /// Sends the negative acknowledgements whose back-off has passed.
    async fn send_due_nacks(&self, state: &mut State) {
        let now = Instant::now();
        if !state.book.due.iter().any(|(at, ..)| *at <= now) {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut state.book.due).into_iter().partition(|(at, ..)| *at <= now);
        state.book.due = waiting;
        let Some(consumer) = state.consumer.as_mut() else { return };
        for (_, topic, id) in ready {
            if let Err(error) = consumer.nack_with_id(&topic, id).await {
                self.lose_consumer(state, &format!("nack failed: {error}"));
                return;
            }
        }
    }

    async fn receive_async(&self, max: usize, wait: Duration, into: &mut Vec<Delivery>) -> usize {
        let mut state = self.state.lock().await;
        self.send_due_nacks(&mut state).await;
        let next_due = state.book.due.iter().map(|(at, ..)| *at).min();
        let wait = next_due.map_or(wait, |at| wait.min(at.saturating_duration_since(Instant::now())));
        if self.detached.load(Ordering::Acquire) {
            drop(state);
            self.idle(wait).await;
            return 0;
        }
        let Some(consumer) = self.consumer(&mut state).await else {
            drop(state);
            self.idle(wait).await;
            return 0;
        };
        let first = tokio::select! {
            item = tokio::time::timeout(wait, consumer.next()) => match item {
                Ok(item) => item,
                Err(_) => return 0,
            },
            () = self.wake.notified() => return 0,
        };
        let mut items = vec![first];
        while items.len() < max {
            match consumer.next().now_or_never() {
                Some(item) => items.push(item),
                None => break,
            }
        }
        let mut taken = 0;
        for item in items {
            match item {
                Some(Ok(message)) => {
                    into.push(
                        state
                            .book
                            .deliver(message, |topic, id| self.client.failures.get(|| self.failure_key(topic, id))),
                    );
                    taken += 1;
                }
                Some(Err(error)) => {
                    self.lose_consumer(&mut state, &error.to_string());
                    break;
                }
                None => {
                    self.lose_consumer(&mut state, "the stream ended");
                    break;
                }
            }
        }
        taken
    }

    /// Waits `wait`, or less when woken.
    async fn idle(&self, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.wake.notified() => {}
        }
    }

    /// Closes `consumer`: the broker hands what it held to the subscription's other consumers.
    async fn close(&self, mut consumer: PulsarConsumer) {
        if let Err(error) = consumer.close().await {
            tracing::warn!(subscription = %self.request.subscription, %error, "closing the consumer failed");
        }
    }

    /// Settles deliveries and returns how many of them this consumer still held; 0 when the
    /// consumer was lost on the way (the broker redelivers them all).
    async fn settle(&self, settled: impl Iterator<Item = (DeliveryTag, Settle, Option<&Failure>)>) -> usize {
        let mut state = self.state.lock().await;
        let (mut acks, mut held) = (Vec::new(), 0);
        for (tag, settle, failure) in settled {
            let Some(received) = state.book.in_flight.remove(&tag) else { continue };
            held += 1;
            let key = || self.failure_key(&received.topic, received.message_id);
            match settle {
                Settle::Ack => self.client.failures.forget(key),
                Settle::Nack(_) => self.client.failures.record(key(), failure),
                Settle::Hold => {}
            }
            match state.book.entries.settle(&received.entry, settle) {
                Some(Settle::Ack) => acks.push((received.topic, received.id)),
                Some(Settle::Nack(delay)) => state.book.due.push((Instant::now() + delay, received.topic, received.id)),
                Some(Settle::Hold) | None => {}
            }
        }
        let Some(consumer) = state.consumer.as_mut() else { return 0 };
        for (topic, id) in acks {
            if let Err(error) = consumer.ack_with_id(&topic, id).await {
                self.lose_consumer(&mut state, &format!("ack failed: {error}"));
                return 0;
            }
        }
        held
    }
}

impl Book {
    /// Forgets every delivery of a consumer that is gone: the broker redelivers them.
    fn forget_deliveries(&mut self) {
        self.in_flight.clear();
        self.entries.clear();
        self.due.clear();
    }

    /// Records `message` as in flight and makes its delivery; `failures` gives the message's
    /// failures so far and the last reason.
    fn deliver(
        &mut self,
        message: pulsar::consumer::Message<Vec<u8>>,
        failures: impl Fn(&Arc<str>, MessageId) -> Option<(u32, Option<Arc<Failure>>)>,
    ) -> Delivery {
        let pulsar::consumer::Message { topic, payload, message_id, .. } = message;
        let id = message_id.id;
        let topic: Arc<str> = Arc::from(topic);
        let partition = id.partition.unwrap_or(-1);
        let message_id_value = MessageId::Ledger {
            ledger: id.ledger_id,
            entry: id.entry_id,
            partition,
            batch_index: id.batch_index.unwrap_or(-1),
        };
        let entry = EntryKey { topic: Arc::clone(&topic), ledger: id.ledger_id, entry: id.entry_id, partition };
        let in_batch = u32::try_from(message_id.batch_size.unwrap_or(1)).unwrap_or(1);
        self.entries.received(&entry, in_batch);
        let (redelivery_count, last_failure) = failures(&topic, message_id_value).unwrap_or((0, None));
        let metadata = payload.metadata;
        let message = Message {
            payload: payload.data,
            key: metadata.partition_key,
            properties: metadata.properties.into_iter().map(|pair| (pair.key, pair.value)).collect(),
            event_time_ms: metadata.event_time.filter(|time| *time != 0).and_then(|time| i64::try_from(time).ok()),
        };
        self.next_tag += 1;
        let tag = self.next_tag;
        self.in_flight.insert(tag, Received { topic: Arc::clone(&topic), id, entry, message_id: message_id_value });
        Delivery {
            tag,
            message_id: message_id_value,
            topic,
            message: Arc::new(message),
            redelivery_count,
            last_failure,
        }
    }
}

impl Source for PulsarSource {
    fn receive(&self, max: usize, wait: Duration, into: &mut Vec<Delivery>) -> Result<usize, TransportError> {
        if self.client.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        Ok(self.client.runtime.block_on(self.receive_async(max, wait, into)))
    }

    fn ack(&self, tags: &[DeliveryTag]) -> usize {
        self.client.runtime.block_on(self.settle(tags.iter().map(|tag| (*tag, Settle::Ack, None))))
    }

    fn nack(&self, tag: DeliveryTag, delay: Duration, failure: &Failure) {
        self.client.runtime.block_on(self.settle(std::iter::once((tag, Settle::Nack(delay), Some(failure)))));
    }

    /// Forgets the deliveries, which the broker keeps as unacknowledged; an entry with one of
    /// them is not acknowledged, though it is still redelivered if another of its messages failed.
    fn keep_unacked(&self, tags: &[DeliveryTag]) {
        self.client.runtime.block_on(self.settle(tags.iter().map(|tag| (*tag, Settle::Hold, None))));
    }

    /// Builds the consumer now (the subscription is created with it), unless it is backing off
    /// after a failure to subscribe.
    fn subscribe_now(&self) -> Result<(), TransportError> {
        self.client.runtime.block_on(async {
            let mut state = self.state.lock().await;
            self.consumer(&mut state).await.map(drop).ok_or_else(|| TransportError::Topic {
                topic: self.request.topics.join(", "),
                reason: format!("cannot subscribe {} (the log says why)", self.request.subscription),
            })
        })
    }

    /// Closes the consumer: the broker hands what it held to the subscription's other consumers.
    fn detach(&self) {
        self.detached.store(true, Ordering::Release);
        self.wake.notify_one();
        self.client.runtime.block_on(async {
            let mut state = self.state.lock().await;
            if let Some(consumer) = state.consumer.take() {
                self.close(consumer).await;
            }
            state.book.forget_deliveries();
        });
    }

    fn attach(&self) {
        self.detached.store(false, Ordering::Release);
    }

    fn wake(&self) {
        self.wake.notify_one();
    }

    /// Deletes the subscription through this source's consumer, subscribing first if needed.
    /// The broker refuses while other consumers are attached.
    fn unsubscribe(&self) -> Result<(), TransportError> {
        self.detached.store(true, Ordering::Release);
        self.wake.notify_one();
        let refused =
            |reason: String| TransportError::Unsubscribe { subscription: self.request.subscription.clone(), reason };
        self.client.runtime.block_on(async {
            let mut state = self.state.lock().await;
            state.book.forget_deliveries();
            let mut consumer = match state.consumer.take() {
                Some(consumer) => consumer,
                None => self.build_consumer().await.map_err(|error| refused(format!("cannot subscribe: {error}")))?,
            };
            let deleted = consumer.unsubscribe().await.map_err(|error| refused(error.to_string()));
            if deleted.is_err() {
                self.close(consumer).await;
            }
            deleted
        })
    }
}
