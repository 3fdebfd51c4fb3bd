//! The stock `pulsar` crate against pulsar-lite through the relay: every message arrives
//! exactly once with its payload, key and property, and unacked messages survive a broker crash.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use futures::TryStreamExt;
use pfn_tests::{
    broker::TestBroker,
    pulsar_client::{unique_consumer_id, unique_topic},
    relay::Relay,
};
use pulsar::{
    Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor,
    consumer::InitialPosition,
    producer::{self, ProducerOptions, SendFuture},
};

/// Payload size of every message.
const PAYLOAD: usize = 100;

/// Sends awaited at most this far behind the newest one.
const RECEIPT_WINDOW: usize = 1000;

async fn client(relay: &Relay) -> Pulsar<TokioExecutor> {
    Pulsar::builder(relay.url(), TokioExecutor).build().await.expect("pulsar client through the relay")
}

async fn consumer(client: &Pulsar<TokioExecutor>, topic: &str) -> Consumer<Vec<u8>, TokioExecutor> {
    client
        .consumer()
        .with_topic(topic)
        .with_subscription("relay-test")
        .with_subscription_type(SubType::Shared)
        .with_consumer_id(unique_consumer_id())
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .expect("consumer")
}

/// Message `i`: 100 bytes starting with its number, key `key-i`, property `seq = i`.
fn message(i: usize) -> producer::Message {
    let mut payload = format!("message-{i:08}-").into_bytes();
    payload.resize(PAYLOAD, b'.');
    producer::Message {
        payload,
        partition_key: Some(format!("key-{i}")),
        properties: HashMap::from([("seq".to_owned(), i.to_string())]),
        ..Default::default()
    }
}

/// Publishes messages `0..count`, keeping at most [`RECEIPT_WINDOW`] receipts outstanding.
async fn produce(client: &Pulsar<TokioExecutor>, topic: &str, count: usize) {
    let options = ProducerOptions { block_queue_if_full: true, ..Default::default() };
    let mut producer = client.producer().with_topic(topic).with_options(options).build().await.expect("producer");
    let mut receipts: VecDeque<SendFuture> = VecDeque::with_capacity(RECEIPT_WINDOW);
    for i in 0..count {
        if receipts.len() == RECEIPT_WINDOW {
            let receipt = receipts.pop_front().expect("a receipt");
            receipt.await.expect("send receipt");
        }
        receipts.push_back(producer.send_non_blocking(message(i)).await.expect("send"));
    }
    for receipt in receipts {
        receipt.await.expect("send receipt");
    }
}

/// Receives `count` distinct messages, checking each against [`message`]; acks them if `ack`.
/// Returns how many times each number came (a redelivery counts twice).
async fn consume(consumer: &mut Consumer<Vec<u8>, TokioExecutor>, count: usize, ack: bool) -> Vec<u32> {
    let mut seen = vec![0_u32; count];
    let mut distinct = 0;
    while distinct < count {
        let received = consumer.try_next().await.expect("receive").expect("consumer stream ended");
        let key = received.key().expect("message key");
        let i: usize = key.strip_prefix("key-").and_then(|n| n.parse().ok()).expect("key-N");
        assert!(i < count, "unexpected message {i}");
        let expected = message(i);
        assert_eq!(received.payload.data, expected.payload, "payload of message {i}");
        let properties = &received.payload.metadata.properties;
        assert!(
            properties.iter().any(|p| p.key == "seq" && p.value == i.to_string()),
            "property seq of message {i}: {properties:?}"
        );
        if seen[i] == 0 {
            distinct += 1;
        }
        seen[i] += 1;
        if ack {
            consumer.ack(&received).await.expect("ack");
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_once_through_the_relay() {
    const COUNT: usize = 20_000;
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let topic = unique_topic("relay");
    let body = async {
        let client = client(&relay).await;
        let mut consumer = consumer(&client, &topic).await;
        let receiving = tokio::spawn(async move {
            let seen = consume(&mut consumer, COUNT, true).await;
            (seen, consumer)
        });
        produce(&client, &topic, COUNT).await;
        let (seen, mut consumer) = receiving.await.expect("consumer task");
        let duplicates: Vec<usize> = (0..COUNT).filter(|&i| seen[i] != 1).collect();
        assert!(duplicates.is_empty(), "delivered more than once: {duplicates:?}");
        let late = tokio::time::timeout(Duration::from_millis(500), consumer.try_next()).await;
        assert!(late.is_err(), "nothing more arrives after all {COUNT} messages");
        let stats = relay.stats();
        assert!(stats.checksums_inserted >= COUNT as u64, "the relay was in the path: {stats:?}");
        assert!(stats.lookups_redirected >= 1, "lookups answered with the relay: {stats:?}");
    };
    tokio::time::timeout(Duration::from_secs(120), body).await.expect("20,000 messages within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_survive_a_broker_restart() {
    const COUNT: usize = 100;
    let mut broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let topic = unique_topic("restart");
    let body = async {
        let first = client(&relay).await;
        let mut unacked = consumer(&first, &topic).await;
        produce(&first, &topic, COUNT).await;
        let seen = consume(&mut unacked, COUNT, false).await;
        assert!(seen.iter().all(|&n| n >= 1));

        // A crash: the broker never hears that the consumer went away.
        broker.kill();
        drop(unacked);
        drop(first);
        broker.restart();

        let second = client(&relay).await;
        let mut again = consumer(&second, &topic).await;
        let seen = consume(&mut again, COUNT, true).await;
        assert!(seen.iter().all(|&n| n >= 1), "every unacked message came back");
    };
    tokio::time::timeout(Duration::from_secs(120), body).await.expect("restart test within 120 s");
}
