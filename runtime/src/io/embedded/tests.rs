use std::{collections::HashMap, time::Duration};

use super::*;
use crate::vocabulary::FailureKind;

fn publish(broker: &EmbeddedBroker, topic: &str, payloads: impl IntoIterator<Item = (Option<&'static str>, String)>) {
    let messages = payloads
        .into_iter()
        .map(|(key, payload)| Message { key: key.map(str::to_owned), ..Message::from_payload(payload.into_bytes()) })
        .collect();
    broker.publish(topic, messages).expect("publish");
}

fn drain(source: &dyn Source, max: usize) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    while source.receive(max, Duration::ZERO, &mut deliveries).expect("receive") > 0 {}
    deliveries
}

fn text(delivery: &Delivery) -> String {
    String::from_utf8(delivery.message.payload.clone()).expect("utf-8 payload")
}

#[test]
fn a_topic_without_subscriptions_keeps_nothing() {
    let broker = EmbeddedBroker::new();
    publish(&broker, "t", [(None, "early".to_owned())]);
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "t", [(None, "late".to_owned())]);
    let got: Vec<String> = drain(source.as_ref(), 10).iter().map(text).collect();
    assert_eq!(got, ["late"]);
    assert_eq!(broker.counts("t").published, 2);
}

#[test]
fn shared_gives_each_message_to_one_consumer() {
    let broker = EmbeddedBroker::new();
    let a = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    let b = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "t", (0..100).map(|n| (None, n.to_string())));
    let mut seen = Vec::new();
    let mut per_consumer = [0, 0];
    loop {
        let mut batch = Vec::new();
        let from_a = a.receive(8, Duration::ZERO, &mut batch).expect("receive");
        let from_b = b.receive(8, Duration::ZERO, &mut batch).expect("receive");
        if from_a + from_b == 0 {
            break;
        }
        per_consumer[0] += from_a;
        per_consumer[1] += from_b;
        seen.extend(batch.iter().map(text));
    }
    seen.sort_by_key(|text| text.parse::<u32>().expect("number"));
    assert_eq!(seen, (0..100).map(|n| n.to_string()).collect::<Vec<_>>());
    assert!(per_consumer[0] > 0 && per_consumer[1] > 0, "{per_consumer:?}");
}

#[test]
fn key_shared_keeps_a_key_on_one_consumer_in_order() {
    let broker = EmbeddedBroker::new();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            broker
                .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::KeyShared))
                .expect("subscribe")
        })
        .collect();
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    publish(&broker, "t", (0..400).map(|n| (Some(keys[n % keys.len()]), n.to_string())));
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut last: HashMap<String, u32> = HashMap::new();
    for (index, consumer) in consumers.iter().enumerate() {
        for delivery in drain(consumer.as_ref(), 7) {
            let key = delivery.message.key.clone().expect("keyed");
            assert_eq!(*owner.entry(key.clone()).or_insert(index), index, "key {key} moved");
            let number: u32 = text(&delivery).parse().expect("number");
            assert!(last.insert(key, number).is_none_or(|before| before < number), "order broken");
        }
    }
    assert_eq!(owner.len(), keys.len());
}

#[test]
fn a_nack_redelivers_with_a_count_and_a_reason() {
    let broker = EmbeddedBroker::new();
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "t", [(None, "x".to_owned())]);
    let first = drain(source.as_ref(), 10);
    source.nack(first[0].tag, Duration::ZERO, &Failure::new(FailureKind::Panic, "boom"));
    let again = drain(source.as_ref(), 10);
    assert_eq!(
        (again[0].redelivery_count, again[0].last_failure.as_deref()),
        (1, Some(&Failure::new(FailureKind::Panic, "boom")))
    );
    assert_eq!(again[0].message_id, first[0].message_id);
    source.ack(&[again[0].tag]);
    let counts = broker.counts("t").subscriptions[0].1;
    assert_eq!((counts.backlog, counts.unacked, counts.acked), (0, 0, 1));
}

#[test]
fn a_delayed_nack_waits_out_its_delay() {
    let broker = EmbeddedBroker::new();
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "t", [(None, "x".to_owned())]);
    let first = drain(source.as_ref(), 10);
    source.nack(first[0].tag, Duration::from_secs(3600), &Failure::new(FailureKind::Error, "later"));
    assert!(drain(source.as_ref(), 10).is_empty());
    assert_eq!(broker.counts("t").subscriptions[0].1.backlog, 1);
}

#[test]
fn a_detached_consumer_hands_back_what_it_held() {
    let broker = EmbeddedBroker::new();
    let stuck = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "t", (0..4).map(|n| (None, n.to_string())));
    let held = drain(stuck.as_ref(), 10);
    assert!(!held.is_empty());
    let other = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    stuck.detach();
    stuck.ack(&[held[0].tag]);
    let mut got: Vec<String> = drain(other.as_ref(), 10).iter().map(text).collect();
    got.sort();
    assert_eq!(got, ["0", "1", "2", "3"]);
}

#[test]
fn one_consumer_reads_several_topics() {
    let broker = EmbeddedBroker::new();
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["a".into(), "b".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "a", [(None, "from a".to_owned())]);
    publish(&broker, "b", [(None, "from b".to_owned())]);
    let deliveries = drain(source.as_ref(), 10);
    let tags: Vec<DeliveryTag> = deliveries.iter().map(|delivery| delivery.tag).collect();
    source.ack(&tags);
    for topic in ["a", "b"] {
        assert_eq!(broker.counts(topic).subscriptions[0].1.acked, 1, "{topic}");
    }
}

#[test]
fn a_subscription_keeps_its_type() {
    let broker = EmbeddedBroker::new();
    broker.create_subscription("t", "s", SubscriptionType::Shared).expect("create");
    let error = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::KeyShared))
        .expect_err("type clash");
    assert_eq!(error.to_string(), "subscription s on t is Shared, not Key_Shared");
}

#[test]
fn closing_ends_every_receive() {
    let broker = EmbeddedBroker::new();
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    broker.close();
    let mut into = Vec::new();
    assert_eq!(source.receive(1, Duration::from_secs(60), &mut into), Err(TransportError::Closed));
    assert_eq!(broker.publish("t", vec![Message::default()]), Err(TransportError::Closed));
}

#[test]
fn a_wake_ends_a_waiting_receive() {
    let broker = EmbeddedBroker::new();
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    let waker = Arc::clone(&source);
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        waker.wake();
    });
    let mut into = Vec::new();
    assert_eq!(source.receive(1, Duration::from_secs(3600), &mut into), Ok(0));
    thread.join().expect("waker thread");
}

#[test]
fn a_topics_pattern_is_refused_with_what_to_use_instead() {
    let broker = EmbeddedBroker::new();
    let request = SubscriptionRequest {
        topics_pattern: Some("in-.*".into()),
        ..SubscriptionRequest::new(Vec::new(), "s", SubscriptionType::Shared)
    };
    let error = broker.subscribe(&request).expect_err("a pattern is refused");
    assert_eq!(
        error.to_string(),
        "topics_pattern is not available on the embedded transport: embedded topics are named exactly; list them \
         in `inputs`"
    );
}

#[test]
fn ack_counts_only_the_deliveries_the_consumer_still_holds() {
    let broker = EmbeddedBroker::new();
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec!["t".into()], "s", SubscriptionType::Shared))
        .expect("subscribe");
    publish(&broker, "t", [(None, "one".to_owned()), (None, "two".to_owned())]);
    let deliveries = drain(source.as_ref(), 10);
    assert_eq!(source.ack(&[deliveries[0].tag]), 1);
    assert_eq!(source.ack(&[deliveries[0].tag]), 0, "acknowledged twice");
    source.detach();
    assert_eq!(source.ack(&[deliveries[1].tag]), 0, "handed back by detach");
}

#[test]
fn unsubscribe_deletes_the_subscription_on_every_topic_once_no_other_consumer_is_attached() {
    let broker = EmbeddedBroker::new();
    let request = SubscriptionRequest::new(vec!["a".into(), "b".into()], "s", SubscriptionType::Shared);
    let other = broker.subscribe(&request).expect("subscribe");
    let source = broker.subscribe(&request).expect("subscribe");
    publish(&broker, "a", [(None, "kept".to_owned())]);
    let error = source.unsubscribe().expect_err("refused while another consumer is attached");
    assert_eq!(error.to_string(), "cannot delete subscription s: 1 other consumer(s) attached on a");
    assert_eq!(broker.counts("a").subscriptions.len(), 1, "a refused unsubscribe deleted the subscription");

    other.detach();
    source.unsubscribe().expect("unsubscribe");
    assert!(broker.counts("a").subscriptions.is_empty() && broker.counts("b").subscriptions.is_empty());
    publish(&broker, "a", [(None, "dropped".to_owned())]);
    let again = broker.subscribe(&request).expect("subscribe");
    assert!(drain(again.as_ref(), 10).is_empty(), "the deleted subscription's messages came back");
}
