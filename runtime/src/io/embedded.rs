//! The embedded transport: in-process topics with named subscriptions.
//!
//! Semantics follow Pulsar's: a subscription keeps every message published after it was
//! created until one of its consumers acknowledges it; a topic with no subscription drops what
//! is published to it. Shared subscriptions give each message to one consumer, Key_Shared ones
//! give all messages of a key to the same consumer, Failover ones give everything to the first
//! consumer. A negative acknowledgement redelivers after a delay with a higher redelivery count;
//! a consumer that detaches hands its unacknowledged messages back.
//!
//! **Not durable**: everything lives in the worker's memory and is gone when it exits.
//! Durability is the Pulsar transport's.

mod subscription;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use self::subscription::Subscription;
pub use self::subscription::SubscriptionCounts;
use super::transport::{
    Delivery, DeliveryTag, Message, Sink, Source, SubscriptionRequest, SubscriptionType, Transport, TransportError,
};
use crate::{
    io::producer_config::ProducerSettings,
    sync::{Notify, lock},
    vocabulary::Failure,
};

/// Tags carry the index of the consumer's subscription in their top 16 bits.
const TAG_SHIFT: u32 = 48;

/// In-process topics, shared by everything in one worker.
#[derive(Debug, Default)]
pub struct EmbeddedBroker {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    next_consumer: AtomicU64,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Topic {
    name: Arc<str>,
    state: Mutex<TopicState>,
}

#[derive(Debug, Default)]
struct TopicState {
    next_id: u64,
    subscriptions: Vec<Arc<Subscription>>,
}

/// A topic's counts, for status and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicCounts {
    pub published: u64,
    pub subscriptions: Vec<(String, SubscriptionCounts)>,
}

impl EmbeddedBroker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = lock(&self.topics);
        Arc::clone(
            topics
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Topic { name: Arc::from(name), state: Mutex::new(TopicState::default()) })),
        )
    }

    /// Creates subscription `name` on `topic` if it does not exist, and returns it.
    fn subscription(
        &self,
        topic: &str,
        name: &str,
        kind: SubscriptionType,
    ) -> Result<Arc<Subscription>, TransportError> {
        let topic = self.topic(topic);
        let mut state = lock(&topic.state);
        if let Some(existing) = state.subscriptions.iter().find(|sub| sub.name == name) {
            if existing.kind != kind {
                return Err(TransportError::SubscriptionType {
                    topic: topic.name.to_string(),
                    subscription: name.to_owned(),
                    existing: existing.kind,
                    requested: kind,
                });
            }
            return Ok(Arc::clone(existing));
        }
        let subscription = Arc::new(Subscription::new(name.to_owned(), Arc::clone(&topic.name), kind));
        state.subscriptions.push(Arc::clone(&subscription));
        Ok(subscription)
    }

    /// Removes `subscription` from its topic: what it kept is gone.
    fn remove_subscription(&self, subscription: &Arc<Subscription>) {
        let topic = self.topic(&subscription.topic);
        lock(&topic.state).subscriptions.retain(|kept| !Arc::ptr_eq(kept, subscription));
    }

    /// Creates subscription `name` on `topic` so that it keeps what is published from now on.
    pub fn create_subscription(&self, topic: &str, name: &str, kind: SubscriptionType) -> Result<(), TransportError> {
        self.subscription(topic, name, kind).map(|_| ())
    }

    /// Publishes messages that the caller keeps a handle on, returning the first one's id.
    pub fn publish_shared(&self, topic: &str, messages: &[Arc<Message>]) -> Result<u64, TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let topic = self.topic(topic);
        let mut state = lock(&topic.state);
        let first_id = state.next_id;
        state.next_id += messages.len() as u64;
        for subscription in &state.subscriptions {
            subscription.enqueue(first_id, messages);
        }
        Ok(first_id)
    }

    /// The counts of `topic` and its subscriptions.
    pub fn counts(&self, topic: &str) -> TopicCounts {
        let topic = self.topic(topic);
        let state = lock(&topic.state);
        TopicCounts {
            published: state.next_id,
            subscriptions: state.subscriptions.iter().map(|sub| (sub.name.clone(), sub.counts())).collect(),
        }
    }

    /// Refuses further publishing and wakes every consumer so that it sees the end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let topics: Vec<Arc<Topic>> = lock(&self.topics).values().cloned().collect();
        for topic in topics {
            for subscription in &lock(&topic.state).subscriptions {
                subscription.wake_all_consumers();
            }
        }
    }
}

impl Sink for EmbeddedBroker {
    fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), TransportError> {
        let shared: Vec<Arc<Message>> = messages.into_iter().map(Arc::new).collect();
        self.publish_shared(topic, &shared).map(|_| ())
    }
}

impl Transport for Arc<EmbeddedBroker> {
    /// Embedded topics have no producers: every function publishes alike.
    fn sink(&self, _: ProducerSettings) -> Arc<dyn Sink> {
        Arc::new(Arc::clone(self))
    }

    /// Embedded topics are named exactly: a `topics_pattern` is refused.
    fn subscribe(&self, request: &SubscriptionRequest) -> Result<Arc<dyn Source>, TransportError> {
        if request.topics_pattern.is_some() {
            return Err(TransportError::Unsupported {
                transport: "embedded",
                feature: "topics_pattern",
                reason: "embedded topics are named exactly; list them in `inputs`",
            });
        }
        let subscriptions = request
            .topics
            .iter()
            .map(|topic| self.subscription(topic, &request.subscription, request.kind))
            .collect::<Result<Vec<_>, _>>()?;
        let consumer = EmbeddedConsumer {
            broker: Arc::clone(self),
            id: self.next_consumer.fetch_add(1, Ordering::Relaxed),
            subscriptions,
            notify: Arc::new(Notify::default()),
            woken: AtomicBool::new(false),
            next_start: AtomicU64::new(0),
        };
        consumer.attach();
        Ok(Arc::new(consumer))
    }
}

/// One consumer on one subscription of each of its topics.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    broker: Arc<EmbeddedBroker>,
    id: u64,
    subscriptions: Vec<Arc<Subscription>>,
    notify: Arc<Notify>,
    /// Set by [`Source::wake`]: the next (or current) wait returns at once.
    woken: AtomicBool,
    /// Which subscription is asked first, rotating so that no topic starves the others.
    next_start: AtomicU64,
}

impl EmbeddedConsumer {
    /// The index of the subscription a tag belongs to.
    fn split(tag: DeliveryTag) -> usize {
        (tag >> TAG_SHIFT) as usize
    }

    /// The tag as its subscription knows it.
    fn local(tag: DeliveryTag) -> DeliveryTag {
        tag & ((1 << TAG_SHIFT) - 1)
    }

    fn take(&self, max: usize, into: &mut Vec<Delivery>) -> usize {
        let count = self.subscriptions.len();
        let start = self.next_start.fetch_add(1, Ordering::Relaxed) as usize;
        let mut taken = 0;
        for offset in 0..count {
            let index = (start + offset) % count;
            taken += self.subscriptions[index].take(self.id, max - taken, (index as u64) << TAG_SHIFT, into);
            if taken == max {
                break;
            }
        }
        taken
    }
}

impl Source for EmbeddedConsumer {
    fn receive(&self, max: usize, wait: Duration, into: &mut Vec<Delivery>) -> Result<usize, TransportError> {
        let deadline = Instant::now() + wait;
        loop {
            let taken = self.take(max, into);
            if taken > 0 {
                return Ok(taken);
            }
            if self.broker.closed.load(Ordering::Acquire) {
                return Err(TransportError::Closed);
            }
            let now = Instant::now();
            if now >= deadline || self.woken.swap(false, Ordering::AcqRel) {
                return Ok(0);
            }
            let due = self.subscriptions.iter().filter_map(|sub| sub.next_due()).min();
            self.notify.wait_until(due.map_or(deadline, |due| due.min(deadline)));
        }
    }

    fn ack(&self, tags: &[DeliveryTag]) -> usize {
        if let [subscription] = self.subscriptions.as_slice() {
            return subscription.ack(self.id, tags.iter().map(|tag| Self::local(*tag)));
        }
        let mut acked = 0;
        for (index, subscription) in self.subscriptions.iter().enumerate() {
            let mine = tags.iter().filter(|tag| Self::split(**tag) == index);
            acked += subscription.ack(self.id, mine.map(|tag| Self::local(*tag)));
        }
        acked
    }

    fn nack(&self, tag: DeliveryTag, delay: Duration, failure: &Failure) {
        if let Some(subscription) = self.subscriptions.get(Self::split(tag)) {
            subscription.nack(self.id, Self::local(tag), delay, failure);
        }
    }

    fn detach(&self) {
        for subscription in &self.subscriptions {
            subscription.detach(self.id);
        }
    }

    fn attach(&self) {
        for subscription in &self.subscriptions {
            subscription.attach(self.id, Arc::clone(&self.notify));
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.notify.notify();
    }

    fn unsubscribe(&self) -> Result<(), TransportError> {
        self.detach();
        for subscription in &self.subscriptions {
            let attached = subscription.counts().consumers;
            if attached > 0 {
                return Err(TransportError::Unsubscribe {
                    subscription: subscription.name.clone(),
                    reason: format!("{attached} other consumer(s) attached on {}", subscription.topic),
                });
            }
        }
        for subscription in &self.subscriptions {
            self.broker.remove_subscription(subscription);
        }
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests;
