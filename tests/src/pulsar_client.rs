//! A blocking Pulsar producer and consumer for tests, with the stock `pulsar` crate through the
//! test relay: what an external application on the cluster would do.

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use pulsar::{
    Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor,
    consumer::InitialPosition,
    producer::{self, ProducerOptions, SendFuture},
};

/// Sends awaited at most this far behind the newest one.
const RECEIPT_WINDOW: usize = 1000;

/// One message as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub payload: Vec<u8>,
    pub key: Option<String>,
    pub properties: HashMap<String, String>,
    pub event_time: Option<u64>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A message to publish.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub payload: Vec<u8>,
    pub key: Option<String>,
    pub properties: HashMap<String, String>,
    pub event_time: Option<u64>,
}

impl Outgoing {
    pub fn text(payload: impl Into<String>) -> Self {
        Self { payload: payload.into().into_bytes(), ..Self::default() }
    }
}

/// A topic name no other test uses.
pub fn unique_topic(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("persistent://public/default/{name}-{nanos}")
}

/// A Pulsar client with its own runtime.
#[allow(missing_debug_implementations, reason = "the crate's client is not Debug")]
pub struct PulsarPeer {
    runtime: tokio::runtime::Runtime,
    client: Pulsar<TokioExecutor>,
}

impl PulsarPeer {
    /// Connects to `url` (the relay's).
    pub fn connect(url: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test client runtime");
        let client =
            runtime.block_on(Pulsar::builder(url.to_owned(), TokioExecutor).build()).expect("test client connects");
        Self { runtime, client }
    }

    /// Publishes `messages` to `topic` in order and waits for every receipt.
    pub fn produce(&self, topic: &str, messages: impl IntoIterator<Item = Outgoing>) {
        self.produce_in_batches(topic, messages, None);
    }

    /// Publishes `messages` to `topic` in order, `batch` to an entry when given, and waits for
    /// every receipt.
    pub fn produce_in_batches(&self, topic: &str, messages: impl IntoIterator<Item = Outgoing>, batch: Option<u32>) {
        self.runtime.block_on(async {
            let options = ProducerOptions { block_queue_if_full: true, batch_size: batch, ..Default::default() };
            let mut producer =
                self.client.producer().with_topic(topic).with_options(options).build().await.expect("producer");
            let mut receipts: VecDeque<SendFuture> = VecDeque::with_capacity(RECEIPT_WINDOW);
            for message in messages {
                // A batch's receipts come once it is full: wait only for whole ones.
                if receipts.len() == RECEIPT_WINDOW && batch.is_none() {
                    receipts.pop_front().expect("a receipt").await.expect("send receipt");
                }
                let message = producer::Message {
                    payload: message.payload,
                    partition_key: message.key,
                    properties: message.properties,
                    event_time: message.event_time,
                    ..Default::default()
                };
                receipts.push_back(producer.send_non_blocking(message).await.expect("send"));
            }
            if batch.is_some() {
                producer.send_batch().await.expect("the last batch sent");
            }
            for receipt in receipts {
                receipt.await.expect("send receipt");
            }
        });
    }

    /// Subscribes to `topic` (from its earliest message) as a new consumer of `subscription`.
    pub fn subscribe(&self, topic: &str, subscription: &str) -> TestConsumer<'_> {
        let consumer = self.runtime.block_on(async {
            self.client
                .consumer()
                .with_topic(topic)
                .with_subscription(subscription)
                .with_subscription_type(SubType::Shared)
                .with_consumer_id(unique_consumer_id())
                .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
                .build()
                .await
                .expect("test consumer subscribes")
        });
        TestConsumer { peer: self, consumer }
    }
}

/// pulsar-lite keys consumers by the client-chosen id within a subscription: each test
/// consumer gets one no worker uses (workers start theirs at a per-process seed).
pub fn unique_consumer_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A consumer that acknowledges what it receives.
#[allow(missing_debug_implementations, reason = "the crate's consumer is not Debug")]
pub struct TestConsumer<'a> {
    peer: &'a PulsarPeer,
    consumer: Consumer<Vec<u8>, TokioExecutor>,
}

impl TestConsumer<'_> {
    /// Receives until `done` says so or nothing arrives for `idle`; returns what came.
    pub fn receive_until(&mut self, idle: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let consumer = &mut self.consumer;
        self.peer.runtime.block_on(async {
            let mut received = Vec::new();
            let mut last = Instant::now();
            while !done(&received) && last.elapsed() < idle {
                match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                    Err(_) => continue,
                    Ok(None) => panic!("the test consumer's stream ended"),
                    Ok(Some(Err(error))) => panic!("the test consumer failed: {error}"),
                    Ok(Some(Ok(message))) => {
                        consumer.ack(&message).await.expect("test consumer ack");
                        let metadata = &message.payload.metadata;
                        received.push(Received {
                            payload: message.payload.data.clone(),
                            key: metadata.partition_key.clone(),
                            properties: metadata.properties.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
                            event_time: metadata.event_time,
                        });
                        last = Instant::now();
                    }
                }
            }
            received
        })
    }

    /// Receives until `count` messages came or nothing arrives for `idle`.
    pub fn receive(&mut self, count: usize, idle: Duration) -> Vec<Received> {
        self.receive_until(idle, |received| received.len() >= count)
    }
}
