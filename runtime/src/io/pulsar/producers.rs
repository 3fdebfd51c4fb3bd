//! One producer per output topic, created when an instance starts or on first use, and rebuilt
//! after a failure.
//!
//! A send hands back the messages' [`Receipts`]; the worker acknowledges inputs only once the
//! broker has a receipt for each of their outputs (at-least-once). The crate's connection
//! queue is bounded (`block_queue_if_full`), so a burst waits instead of failing.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use pulsar::{Producer, ProducerOptions, TokioExecutor, producer::SendFuture};
use tokio::sync::Mutex;

use super::{PulsarClient, PulsarCounters, topic_name};
use crate::{
    io::transport::{Message, TransportError},
    sync::lock,
};

/// A topic's producer, with a number that changes each time it is rebuilt.
#[derive(Default)]
struct ProducerSlot {
    producer: Option<Producer<TokioExecutor>>,
    generation: u64,
}

type Slot = Arc<Mutex<ProducerSlot>>;

/// The producers of one transport, by topic.
#[derive(Default)]
pub(super) struct Producers {
    slots: std::sync::Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Producers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producers").field("topics", &lock(&self.slots).keys().collect::<Vec<_>>()).finish()
    }
}

impl Producers {
    fn slot(&self, topic: &str) -> Slot {
        Arc::clone(lock(&self.slots).entry(topic.to_owned()).or_default())
    }

    /// Drops every producer (the caller is inside the runtime).
    pub fn close_all(&self) {
        lock(&self.slots).clear();
    }

    /// Creates `topic`'s producer now if it has none, so that a topic that cannot be written
    /// is reported before the first message.
    pub async fn open(&self, client: &PulsarClient, topic: &str) -> Result<(), TransportError> {
        let topic = &*topic_name::full(topic);
        let slot = self.slot(topic);
        let mut open = slot.lock().await;
        open.producer(client, topic).await.map(drop)
    }

    /// Hands `messages` to `topic`'s producer in order (building it if needed) and returns
    /// their receipts to wait for. Sends to one topic are never interleaved.
    pub async fn send(
        &self,
        client: &PulsarClient,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<Receipts, TransportError> {
        let topic = &*topic_name::full(topic);
        let slot = self.slot(topic);
        let mut open = slot.lock().await;
        let generation = open.generation;
        let producer = open.producer(client, topic).await?;
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            match producer.send_non_blocking(to_pulsar(message)).await {
                Ok(receipt) => pending.push(receipt),
                Err(error) => {
                    open.drop_producer(generation, &client.counters);
                    return Err(failed(topic, format!("send failed: {error}")));
                }
            }
        }
        drop(open);
        Ok(Receipts { topic: topic.to_owned(), slot, generation, pending })
    }
}

/// The receipts of one [`Producers::send`].
pub(super) struct Receipts {
    topic: String,
    slot: Slot,
    generation: u64,
    pending: Vec<SendFuture>,
}

impl Receipts {
    /// Waits for every receipt; the first missing one fails them all and drops the producer
    /// that sent them, to be rebuilt.
    pub async fn wait(self, counters: &PulsarCounters) -> Result<(), TransportError> {
        for receipt in self.pending {
            if let Err(error) = receipt.await {
                self.slot.lock().await.drop_producer(self.generation, counters);
                return Err(failed(&self.topic, format!("no receipt: {error}")));
            }
        }
        Ok(())
    }
}

impl ProducerSlot {
    /// The producer, built first if it is missing.
    async fn producer(
        &mut self,
        client: &PulsarClient,
        topic: &str,
    ) -> Result<&mut Producer<TokioExecutor>, TransportError> {
        match &mut self.producer {
            Some(producer) => Ok(producer),
            empty => {
                let options = ProducerOptions { block_queue_if_full: true, ..ProducerOptions::default() };
                let built = client.pulsar.producer().with_topic(topic).with_options(options).build().await;
                Ok(empty.insert(built.map_err(|e| failed(topic, format!("cannot create a producer: {e}")))?))
            }
        }
    }

    /// Drops the producer if it is still the one of `generation`, and counts the failure.
    fn drop_producer(&mut self, generation: u64, counters: &PulsarCounters) {
        if self.generation == generation && self.producer.take().is_some() {
            self.generation += 1;
            counters.producer_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn failed(topic: &str, reason: String) -> TransportError {
    TransportError::Topic { topic: topic.to_owned(), reason }
}

fn to_pulsar(message: Message) -> pulsar::producer::Message {
    pulsar::producer::Message {
        payload: message.payload,
        properties: message.properties.into_iter().collect(),
        partition_key: message.key,
        event_time: message.event_time_ms.and_then(|time| u64::try_from(time).ok()),
        ..Default::default()
    }
}
