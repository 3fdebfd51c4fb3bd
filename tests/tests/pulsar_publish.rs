//! Publishing to topics of the function's choosing on Pulsar: an input is acknowledged only once
//! every message its call published has the broker's receipt, and a topic that cannot be
//! written fails only the inputs that published to it (redelivered, then dead-lettered with the
//! reason), never the worker.

use std::time::Duration;

use pfn_tests::{
    broker::TestBroker,
    fixtures::{fixture, scratch},
    pulsar_client::{Outgoing, PulsarPeer, unique_topic},
    pulsar_functions::IDLE,
    relay::Relay,
    worker::RunningWorker,
};

const ROUTER: &str = "public/default/router";

/// A worker on `relay` running the stateful fixture as `router` over `input`, reading it from
/// its start, with `extra` spec lines.
fn start_router(dir: &std::path::Path, relay: &Relay, input: &str, extra: &str) -> RunningWorker {
    let spec = format!(
        "name = \"router\"\nplugin = \"stateful\"\ninputs = [\"{input}\"]\nsubscription_position = \"earliest\"\n{extra}\n"
    );
    let args = ["--pulsar-url", &relay.url()];
    let worker =
        RunningWorker::start(dir, &[("router.toml", &spec)], &[(&fixture("stateful"), "libstateful.so")], &args);
    worker.wait_until("router runs", |worker| worker.function(ROUTER)["state"] == "running");
    worker
}

#[test]
fn an_input_is_acknowledged_only_once_the_messages_it_published_have_receipts() {
    const COUNT: usize = 400;
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let peer = PulsarPeer::connect(&relay.url());
    let (input, held, free) = (unique_topic("in"), unique_topic("held"), unique_topic("free"));
    let (mut held_reader, mut free_reader) = (peer.subscribe(&held, "check"), peer.subscribe(&free, "check"));
    // Inputs alternate between the two topics; the held topic's receipts are kept back.
    let inputs = (0..COUNT).map(|i| Outgoing::text(format!("publish {} {i}", if i % 2 == 0 { &held } else { &free })));
    peer.produce(&input, inputs);
    relay.hold_receipts(Some(&held));
    let dir = scratch();
    let worker = start_router(dir.path(), &relay, &input, "");

    // The free topic's messages all reach the broker (and the test), and the held topic's
    // first batch does (the `pulsar` crate sends a producer's next batch only once the last
    // one has its receipt).
    let on_free = free_reader.receive(COUNT / 2, IDLE);
    let mut on_held = held_reader.receive(1, IDLE);
    assert_eq!((on_free.len(), on_held.len()), (COUNT / 2, 1));
    worker.wait_until("every input processed", |worker| worker.total(ROUTER, "received_total") == COUNT as u64);
    std::thread::sleep(Duration::from_millis(500));
    let acked = worker.total(ROUTER, "acked_total");
    assert!(relay.held_receipts() > 0, "no receipt was held");
    assert!(
        acked <= (COUNT / 2) as u64,
        "{acked} inputs acknowledged, more than the {} whose publishes all have receipts",
        COUNT / 2
    );

    relay.hold_receipts(None);
    worker.wait_until("every input acknowledged", |worker| worker.total(ROUTER, "acked_total") == COUNT as u64);
    on_held.extend(held_reader.receive(COUNT / 2 - 1, IDLE));
    let more = (held_reader.receive(1, Duration::from_secs(2)), free_reader.receive(1, Duration::from_millis(100)));
    assert!(more.0.is_empty() && more.1.is_empty(), "a message was published twice: {more:?}");
    let mut numbers: Vec<usize> =
        on_held.iter().chain(&on_free).map(|message| message.text().parse().expect("a number")).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..COUNT).collect::<Vec<_>>(), "one message per input");
    eprintln!("held receipts: {acked} of {COUNT} inputs acknowledged while held");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn a_topic_that_cannot_be_written_dead_letters_only_the_inputs_that_published_to_it() {
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let peer = PulsarPeer::connect(&relay.url());
    let (input, routed) = (unique_topic("in"), unique_topic("routed"));
    let mut routed_reader = peer.subscribe(&routed, "check");
    let mut letters = peer.subscribe("persistent://public/default/router-DLQ", &unique_topic("dlq-check"));
    let bad = "persistent://public/default/not-writable";
    relay.refuse_producers_for(bad);
    let inputs = ["publish ROUTED 1", "publish BAD 2", "publish ROUTED 3"]
        .map(|text| Outgoing::text(text.replace("ROUTED", &routed).replace("BAD", bad)));
    peer.produce(&input, inputs);
    let dir = scratch();
    let worker = start_router(dir.path(), &relay, &input, "max_message_retries = 1");

    let dead = letters.receive(1, IDLE);
    assert_eq!(dead.len(), 1, "the input publishing to {bad} is dead-lettered:\n{}", worker.log_text());
    assert_eq!(dead[0].text(), format!("publish {bad} 2"));
    let error = dead[0].properties.get("pfn.dead_letter.error").cloned().unwrap_or_default();
    assert!(error.contains(bad), "the reason names the topic: {error}");
    let mut published: Vec<String> =
        routed_reader.receive(3, Duration::from_secs(3)).iter().map(|m| m.text()).collect();
    published.sort();
    assert_eq!(published, ["1", "3"], "the other inputs' messages, once each");
    worker.wait_until("every input settled", |worker| worker.total(ROUTER, "acked_total") >= 3);
    assert_eq!(worker.function(ROUTER)["state"], "running", "the worker and the function run on");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}
