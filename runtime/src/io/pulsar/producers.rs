//! The transport's producers, one per topic and [`ProducerSettings`], made on first use, rebuilt
//! after a failure, and closed when idle (see [`super::producer_cache`]).
//!
//! A send hands back the messages' [`Receipts`]; the worker acknowledges inputs only once the
//! broker has a receipt for each of their messages (at-least-once), batched or not. The crate's
//! connection queue is bounded (`block_queue_if_full`), so a burst waits instead of failing;
//! `max_pending_messages` bounds what one producer has waiting for receipts.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use pulsar::{
    Producer, ProducerOptions, TokioExecutor,
    compression::{Compression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd},
    producer::SendFuture,
};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::{
    PulsarClient, PulsarCounters,
    producer_cache::{self, CacheEntry},
    topic_name,
};
use crate::{
    io::{
        producer_config::{BATCH_MAX_BYTES, BATCH_MAX_MESSAGES, BatchBuilder, CompressionType, ProducerSettings},
        transport::{Message, MessageId, TransportError},
    },
    sync::lock,
};

/// A producer, with a number that changes each time it is rebuilt.
#[derive(Default)]
struct ProducerSlot {
    producer: Option<Producer<TokioExecutor>>,
    generation: u64,
    /// Room for messages waiting for receipts (`max_pending_messages`).
    pending_room: Option<Arc<Semaphore>>,
    /// The key of the last message sent (key-based batching flushes when it changes).
    last_key: Option<Option<String>>,
}

type Slot = Arc<Mutex<ProducerSlot>>;
type Key = (String, ProducerSettings);

/// A cached producer and when it was last used.
struct Cached {
    slot: Slot,
    last_used: Instant,
}

/// The producers of one transport.
pub(super) struct Producers {
    cache: std::sync::Mutex<ProducerCache>,
}

struct ProducerCache {
    slots: HashMap<Key, Cached>,
    last_sweep: Instant,
}

impl Default for Producers {
    fn default() -> Self {
        Self { cache: std::sync::Mutex::new(ProducerCache { slots: HashMap::new(), last_sweep: Instant::now() }) }
    }
}

impl std::fmt::Debug for Producers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cache = lock(&self.cache);
        f.debug_struct("Producers")
            .field("topics", &cache.slots.keys().map(|(topic, _)| topic).collect::<Vec<_>>())
            .finish()
    }
}

impl Producers {
    /// The slot of `topic`'s producer with `settings`, made if needed; closes idle producers
    /// now and then (the caller is inside the runtime: closing spawns tasks).
    fn slot(&self, topic: &str, settings: ProducerSettings) -> Slot {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        if now.duration_since(cache.last_sweep) >= producer_cache::SWEEP_EVERY
            || cache.slots.len() > producer_cache::MAX_PRODUCERS
        {
            cache.last_sweep = now;
            cache.sweep(now, producer_cache::IDLE_CLOSE, producer_cache::MAX_PRODUCERS);
        }
        let cached = cache
            .slots
            .entry((topic.to_owned(), settings))
            .or_insert_with(|| Cached { slot: Slot::default(), last_used: now });
        cached.last_used = now;
        Arc::clone(&cached.slot)
    }

    /// Drops every producer (the caller is inside the runtime).
    pub fn close_all(&self) {
        lock(&self.cache).slots.clear();
    }

    /// Creates `topic`'s producer now if it has none, so that a topic that cannot be written
    /// is reported before the first message.
    pub async fn open(
        &self,
        client: &PulsarClient,
        topic: &str,
        settings: ProducerSettings,
    ) -> Result<(), TransportError> {
        let topic = &*topic_name::full(topic);
        let slot = self.slot(topic, settings);
        let mut open = slot.lock().await;
        open.producer(client, topic, settings).await.map(drop)
    }

    /// Hands `messages` to `topic`'s producer in order (building it if needed) and returns
    /// their receipts to wait for. Sends to one topic are never interleaved.
    pub async fn send(
        &self,
        client: &PulsarClient,
        topic: &str,
        settings: ProducerSettings,
        messages: Vec<Message>,
    ) -> Result<Receipts, TransportError> {
        let topic = &*topic_name::full(topic);
        let slot = self.slot(topic, settings);
        let mut open = slot.lock().await;
        let generation = open.generation;
        open.producer(client, topic, settings).await?;
        let key_based = settings.batch_delay_ms.is_some() && settings.batch_builder == BatchBuilder::KeyBased;
        let mut pending = VecDeque::with_capacity(messages.len());
        for message in messages {
            let room = match open.pending_room.clone() {
                Some(room) => match take_room(&room, &mut pending).await {
                    Ok(permit) => Some(permit),
                    Err(reason) => {
                        open.drop_producer(generation, &client.counters);
                        return Err(failed(topic, reason));
                    }
                },
                None => None,
            };
            let new_key = key_based && open.last_key.as_ref().is_some_and(|last| *last != message.key);
            if key_based {
                open.last_key = Some(message.key.clone());
            }
            let Some(producer) = open.producer.as_mut() else {
                return Err(failed(topic, "producer closed".into()));
            };
            // A key-based batch holds one key's messages: the next key starts a new batch.
            let flushed = if new_key { producer.send_batch().await } else { Ok(()) };
            let sent = match flushed {
                Ok(()) => producer.send_non_blocking(to_pulsar(message)).await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(receipt) => pending.push_back((receipt, room)),
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

/// Room for one more message waiting for its receipt. When there is none, waits for the
/// oldest receipt of this send (which nothing else waits for yet), else for another send's.
async fn take_room(
    room: &Arc<Semaphore>,
    pending: &mut VecDeque<(SendFuture, Option<OwnedSemaphorePermit>)>,
) -> Result<OwnedSemaphorePermit, String> {
    loop {
        match Arc::clone(room).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err("producer closed".into()),
            Err(TryAcquireError::NoPermits) => {}
        }
        let Some((receipt, permit)) = pending.pop_front() else {
            return Arc::clone(room).acquire_owned().await.map_err(|_| "producer closed".into());
        };
        let received = receipt.await;
        drop(permit);
        received.map_err(|error| format!("no receipt: {error}"))?;
    }
}

impl ProducerCache {
    /// Closes the producers [`producer_cache::to_close`] picks.
    fn sweep(&mut self, now: Instant, idle: Duration, max: usize) {
        let entries = self
            .slots
            .iter()
            .map(|(key, cached)| CacheEntry {
                key: key.clone(),
                last_used: cached.last_used,
                // Someone besides the cache holds it: a send or its receipts.
                in_use: Arc::strong_count(&cached.slot) > 1,
            })
            .collect();
        for key in producer_cache::to_close(entries, now, idle, max) {
            tracing::debug!(topic = %key.0, "closing an idle producer");
            self.slots.remove(&key);
        }
    }
}

/// The receipts of one [`Producers::send`], each with the room its message takes.
pub(super) struct Receipts {
    topic: String,
    slot: Slot,
    generation: u64,
    pending: VecDeque<(SendFuture, Option<OwnedSemaphorePermit>)>,
}

impl Receipts {
    /// Waits for every receipt; the first missing one fails them all and drops the producer
    /// that sent them, to be rebuilt.
    pub async fn wait(self, counters: &PulsarCounters) -> Result<(), TransportError> {
        self.wait_for_ids(counters).await.map(drop)
    }

    /// Waits for every receipt as [`Receipts::wait`] does, and returns the messages' ids.
    pub async fn wait_for_ids(self, counters: &PulsarCounters) -> Result<Vec<MessageId>, TransportError> {
        let Self { topic, slot, generation, pending } = self;
        let mut ids = Vec::with_capacity(pending.len());
        let mut pending = pending.into_iter();
        for (receipt, room) in pending.by_ref() {
            let received = receipt.await;
            drop(room);
            match received {
                Ok(receipt) => ids.extend(receipt.message_id.map(|id| MessageId::Ledger {
                    ledger: id.ledger_id,
                    entry: id.entry_id,
                    partition: id.partition.unwrap_or(-1),
                    batch_index: id.batch_index.unwrap_or(-1),
                })),
                Err(error) => {
                    // Give back the others' room first: a send may hold the slot waiting for it.
                    drop(pending);
                    slot.lock().await.drop_producer(generation, counters);
                    return Err(failed(&topic, format!("no receipt: {error}")));
                }
            }
        }
        Ok(ids)
    }
}

impl ProducerSlot {
    /// The producer, built first if it is missing.
    async fn producer(
        &mut self,
        client: &PulsarClient,
        topic: &str,
        settings: ProducerSettings,
    ) -> Result<&mut Producer<TokioExecutor>, TransportError> {
        if self.producer.is_none() {
            let built = client.pulsar.producer().with_topic(topic).with_options(options(settings)).build().await;
            self.producer = Some(built.map_err(|e| failed(topic, format!("cannot create a producer: {e}")))?);
            self.pending_room = settings.max_pending_messages.map(|room| Arc::new(Semaphore::new(room as usize)));
            self.last_key = None;
        }
        self.producer.as_mut().ok_or_else(|| failed(topic, "producer closed".into()))
    }

    /// Drops the producer if it is still the one of `generation`, and counts the failure.
    fn drop_producer(&mut self, generation: u64, counters: &PulsarCounters) {
        if self.generation == generation && self.producer.take().is_some() {
            self.generation += 1;
            counters.producer_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The crate's options for `settings`.
fn options(settings: ProducerSettings) -> ProducerOptions {
    let batching = settings.batch_delay_ms.map(Duration::from_millis);
    ProducerOptions {
        block_queue_if_full: true,
        batch_size: batching.map(|_| BATCH_MAX_MESSAGES),
        batch_byte_size: batching.map(|_| BATCH_MAX_BYTES),
        batch_timeout: batching,
        compression: Some(match settings.compression {
            CompressionType::None => Compression::None,
            CompressionType::Lz4 => Compression::Lz4(CompressionLz4::default()),
            CompressionType::Zlib => Compression::Zlib(CompressionZlib::default()),
            CompressionType::Zstd => Compression::Zstd(CompressionZstd::default()),
            CompressionType::Snappy => Compression::Snappy(CompressionSnappy::default()),
        }),
        ..ProducerOptions::default()
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
