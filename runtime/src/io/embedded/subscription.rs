//! One named subscription of an embedded topic: its backlog, its consumers, and what each of
//! them holds unacknowledged.

use std::{
    collections::VecDeque,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    io::transport::{Delivery, DeliveryTag, Message, MessageId, SubscriptionType},
    sync::{Notify, lock},
    vocabulary::Failure,
};

/// A message waiting in a subscription.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub message_id: u64,
    pub message: Arc<Message>,
    pub redelivery_count: u32,
    pub last_failure: Option<Arc<Failure>>,
}

/// A subscription: messages are kept from the moment it exists until a consumer acks them.
#[derive(Debug)]
pub(super) struct Subscription {
    pub name: String,
    pub topic: Arc<str>,
    pub kind: SubscriptionType,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_tag: DeliveryTag,
    /// Shared: the one queue. Key_Shared and Failover: messages waiting for a first consumer.
    backlog: VecDeque<Pending>,
    consumers: Vec<Consumer>,
    /// Negatively acknowledged, waiting out their back-off.
    delayed: Vec<(Instant, Pending)>,
    acked: u64,
}

#[derive(Debug)]
struct Consumer {
    id: u64,
    notify: Arc<Notify>,
    /// Key_Shared and Failover: the messages routed to this consumer.
    queue: VecDeque<Pending>,
    /// Delivered and not yet acknowledged, in tag order (acked entries become `None`).
    in_flight: VecDeque<(DeliveryTag, Option<Pending>)>,
}

impl Consumer {
    fn take_in_flight(&mut self, tag: DeliveryTag) -> Option<Pending> {
        let index = self.in_flight.binary_search_by_key(&tag, |(tag, _)| *tag).ok()?;
        let taken = self.in_flight[index].1.take();
        while matches!(self.in_flight.front(), Some((_, None))) {
            self.in_flight.pop_front();
        }
        taken
    }
}

/// How many of a subscription's messages are where, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// Waiting to be delivered (including those backing off after a nack).
    pub backlog: u64,
    /// Delivered and not acknowledged.
    pub unacked: u64,
    pub acked: u64,
    pub consumers: usize,
}

/// The position of `key` on Key_Shared's hash ring of 65,536 slots.
fn key_slot(key: Option<&str>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.unwrap_or("").hash(&mut hasher);
    hasher.finish() & 0xffff
}

impl Subscription {
    pub fn new(name: String, topic: Arc<str>, kind: SubscriptionType) -> Self {
        Self { name, topic, kind, state: Mutex::new(State::default()) }
    }

    /// Appends newly published messages (ids `first_id..`) and wakes the consumers they went to.
    pub fn enqueue(&self, first_id: u64, messages: &[Arc<Message>]) {
        let mut state = lock(&self.state);
        for (message_id, message) in (first_id..).zip(messages) {
            let pending = Pending { message_id, message: Arc::clone(message), redelivery_count: 0, last_failure: None };
            self.route(&mut state, pending, false);
        }
        Self::wake_all(&state);
    }

    /// Where a pending message goes: the shared backlog or one consumer's queue.
    fn route(&self, state: &mut State, pending: Pending, front: bool) {
        let queue = match self.kind {
            _ if state.consumers.is_empty() => &mut state.backlog,
            SubscriptionType::Shared => &mut state.backlog,
            SubscriptionType::Failover => &mut state.consumers[0].queue,
            SubscriptionType::KeyShared => {
                let count = state.consumers.len() as u64;
                let index = key_slot(pending.message.key.as_deref()) * count / 0x1_0000;
                &mut state.consumers[index as usize].queue
            }
        };
        if front { queue.push_front(pending) } else { queue.push_back(pending) }
    }

    fn wake_all(state: &State) {
        for consumer in &state.consumers {
            consumer.notify.notify();
        }
    }

    /// Adds a consumer that is woken through `notify`.
    pub fn attach(&self, id: u64, notify: Arc<Notify>) {
        let mut state = lock(&self.state);
        if state.consumers.iter().any(|consumer| consumer.id == id) {
            return;
        }
        state.consumers.push(Consumer { id, notify, queue: VecDeque::new(), in_flight: VecDeque::new() });
        state.consumers.sort_by_key(|consumer| consumer.id);
        self.rebalance(&mut state, Vec::new());
    }

    /// Removes a consumer; what it held unacknowledged is delivered again to the others.
    pub fn detach(&self, id: u64) {
        let mut state = lock(&self.state);
        let Some(index) = state.consumers.iter().position(|consumer| consumer.id == id) else { return };
        let consumer = state.consumers.remove(index);
        let mut returned: Vec<Pending> = consumer.queue.into_iter().collect();
        returned.extend(consumer.in_flight.into_iter().filter_map(|(_, pending)| pending));
        self.rebalance(&mut state, returned);
    }

    /// Routes every queued message again (after the consumers changed), in message order.
    /// A Shared subscription has one queue for all consumers: only what a consumer handed back
    /// goes in, at the front.
    fn rebalance(&self, state: &mut State, mut returned: Vec<Pending>) {
        if self.kind == SubscriptionType::Shared {
            returned.sort_by_key(|pending| pending.message_id);
            for pending in returned.into_iter().rev() {
                state.backlog.push_front(pending);
            }
            Self::wake_all(state);
            return;
        }
        returned.extend(state.backlog.drain(..));
        for consumer in &mut state.consumers {
            returned.extend(consumer.queue.drain(..));
        }
        returned.sort_by_key(|pending| pending.message_id);
        for pending in returned {
            self.route(state, pending, false);
        }
        Self::wake_all(state);
    }

    /// Delivers up to `max` messages to consumer `id`, tagging each as `tag_base | tag`.
    pub fn take(&self, id: u64, max: usize, tag_base: u64, into: &mut Vec<Delivery>) -> usize {
        let mut state = lock(&self.state);
        if !state.delayed.is_empty() {
            self.release_due(&mut state);
        }
        let consumers = state.consumers.len();
        let State { next_tag, backlog, consumers: attached, .. } = &mut *state;
        let Some(consumer) = attached.iter_mut().find(|consumer| consumer.id == id) else { return 0 };
        let queue = match self.kind {
            // Share out a short backlog instead of one consumer taking all of it.
            SubscriptionType::Shared => backlog,
            SubscriptionType::KeyShared | SubscriptionType::Failover => &mut consumer.queue,
        };
        let fair = if self.kind == SubscriptionType::Shared { queue.len().div_ceil(consumers.max(1)) } else { max };
        let count = max.min(fair.max(1)).min(queue.len());
        for pending in queue.drain(..count) {
            *next_tag += 1;
            into.push(Delivery {
                tag: tag_base | *next_tag,
                message_id: MessageId::Sequence(pending.message_id),
                topic: Arc::clone(&self.topic),
                message: Arc::clone(&pending.message),
                redelivery_count: pending.redelivery_count,
                last_failure: pending.last_failure.clone(),
            });
            consumer.in_flight.push_back((*next_tag, Some(pending)));
        }
        count
    }

    /// When the earliest backed-off message is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        lock(&self.state).delayed.iter().map(|(due, _)| *due).min()
    }

    fn release_due(&self, state: &mut State) {
        let now = Instant::now();
        let mut index = 0;
        while index < state.delayed.len() {
            if state.delayed[index].0 <= now {
                let (_, pending) = state.delayed.swap_remove(index);
                self.route(state, pending, true);
            } else {
                index += 1;
            }
        }
    }

    /// Acknowledges deliveries of consumer `id` and returns how many; tags it no longer holds
    /// are ignored.
    pub fn ack(&self, id: u64, tags: impl Iterator<Item = DeliveryTag>) -> usize {
        let mut state = lock(&self.state);
        let State { consumers, acked, .. } = &mut *state;
        let Some(consumer) = consumers.iter_mut().find(|consumer| consumer.id == id) else { return 0 };
        let mut taken = 0;
        for tag in tags {
            if consumer.take_in_flight(tag).is_some() {
                taken += 1;
            }
        }
        *acked += taken as u64;
        taken
    }

    /// Puts a delivery back for redelivery after `delay`, counting the failure.
    pub fn nack(&self, id: u64, tag: DeliveryTag, delay: Duration, failure: &Failure) {
        let mut state = lock(&self.state);
        let Some(consumer) = state.consumers.iter_mut().find(|consumer| consumer.id == id) else { return };
        let Some(mut pending) = consumer.take_in_flight(tag) else { return };
        pending.redelivery_count += 1;
        pending.last_failure = Some(Arc::new(failure.clone()));
        if delay.is_zero() {
            self.route(&mut state, pending, true);
            Self::wake_all(&state);
        } else {
            state.delayed.push((Instant::now() + delay, pending));
        }
    }

    /// Wakes every consumer, so that each notices a change such as the broker closing.
    pub fn wake_all_consumers(&self) {
        Self::wake_all(&lock(&self.state));
    }

    pub fn counts(&self) -> SubscriptionCounts {
        let state = lock(&self.state);
        let queued: usize = state.consumers.iter().map(|consumer| consumer.queue.len()).sum();
        let unacked: usize = state
            .consumers
            .iter()
            .map(|consumer| consumer.in_flight.iter().filter(|(_, pending)| pending.is_some()).count())
            .sum();
        SubscriptionCounts {
            backlog: (state.backlog.len() + queued + state.delayed.len()) as u64,
            unacked: unacked as u64,
            acked: state.acked,
            consumers: state.consumers.len(),
        }
    }
}
