//! One producer per output topic, created on first use and rebuilt after a failure.
//!
//! `publish` returns only when the broker has a receipt for every message: that is what lets
//! the worker acknowledge inputs after their outputs (at-least-once). The crate's connection
//! queue is bounded (`block_queue_if_full`), so a burst waits instead of failing.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use pulsar::{Producer, ProducerOptions, TokioExecutor};
use tokio::sync::Mutex;

use super::PulsarClient;
use crate::{
    io::transport::{Message, TransportError},
    sync::lock,
};

type Slot = Arc<Mutex<Option<Producer<TokioExecutor>>>>;

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

    /// Publishes `messages` to `topic` in order and waits for every receipt.
    pub async fn publish(
        &self,
        client: &PulsarClient,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<(), TransportError> {
        let failed = |reason: String| TransportError::Topic { topic: topic.to_owned(), reason };
        let slot = self.slot(topic);
        let mut receipts = Vec::with_capacity(messages.len());
        {
            let mut producer = slot.lock().await;
            let open = match &mut *producer {
                Some(open) => open,
                empty => {
                    let options = ProducerOptions { block_queue_if_full: true, ..ProducerOptions::default() };
                    let built = client.pulsar.producer().with_topic(topic).with_options(options).build().await;
                    empty.insert(built.map_err(|e| failed(format!("cannot create a producer: {e}")))?)
                }
            };
            for message in messages {
                match open.send_non_blocking(to_pulsar(message)).await {
                    Ok(receipt) => receipts.push(receipt),
                    Err(error) => {
                        *producer = None;
                        client.counters.producer_failures.fetch_add(1, Ordering::Relaxed);
                        return Err(failed(format!("send failed: {error}")));
                    }
                }
            }
        }
        for receipt in receipts {
            if let Err(error) = receipt.await {
                *slot.lock().await = None;
                client.counters.producer_failures.fetch_add(1, Ordering::Relaxed);
                return Err(failed(format!("no receipt: {error}")));
            }
        }
        Ok(())
    }
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
