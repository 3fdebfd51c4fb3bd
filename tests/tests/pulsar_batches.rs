//! Batched inputs on Pulsar: the crate acknowledges a whole entry when one of its messages is
//! acknowledged, so the worker acknowledges an entry only once every message in it is done. A
//! message that keeps failing is then redelivered with its whole entry until its retries run
//! out and it reaches the dead-letter topic; its batch mates are processed again (at least once).

use std::time::Duration;

use pfn_tests::{
    broker::TestBroker,
    fixtures::scratch,
    pulsar_client::{Outgoing, PulsarPeer, unique_topic},
    pulsar_functions::{IDLE, PANICKY, panicky_spec, start_panicky},
    relay::Relay,
};

#[test]
fn a_failing_message_in_a_batch_is_retried_and_dead_lettered_while_its_batch_mates_are_done() {
    const COUNT: usize = 100;
    const BATCH: u32 = 10;
    let fails = |i: usize| i % BATCH as usize == 4;
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let peer = PulsarPeer::connect(&relay.url());
    let mut reader = peer.subscribe(&output, "check");
    let mut dead_letters = peer.subscribe(&format!("{output}-DLQ"), "check");
    let inputs = (0..COUNT).map(|i| Outgoing::text(if fails(i) { format!("error {i}") } else { i.to_string() }));
    peer.produce_in_batches(&input, inputs, Some(BATCH));

    let dir = scratch();
    let worker = start_panicky(dir.path(), &relay, &panicky_spec(&input, &output, "max_message_retries = 1"));
    let mut letters: Vec<String> = Vec::new();
    for letter in dead_letters.receive(COUNT / BATCH as usize, IDLE) {
        assert_eq!(letter.properties.get("pfn.dead_letter.reason").map(String::as_str), Some("error"));
        letters.push(letter.text());
    }
    letters.extend(dead_letters.receive(1, Duration::from_secs(2)).iter().map(|letter| letter.text()));
    letters.sort_by_key(|text| text.trim_start_matches("error ").parse::<usize>().ok());
    let expected: Vec<String> = (0..COUNT).filter(|&i| fails(i)).map(|i| format!("error {i}")).collect();
    assert_eq!(letters, expected, "a failing message of a batch was acknowledged with its batch");

    // Each entry was redelivered once, whole: its batch mates came out twice.
    let succeeding = (0..COUNT).filter(|&i| !fails(i)).count();
    let mut outputs = reader.receive(2 * succeeding, IDLE);
    outputs.extend(reader.receive(1, Duration::from_secs(2)));
    let mut seen = vec![0_u32; COUNT];
    for output in &outputs {
        let i: usize = output.text().strip_prefix("ok:").and_then(|n| n.parse().ok()).expect("ok:<number>");
        seen[i] += 1;
    }
    assert!((0..COUNT).all(|i| fails(i) || seen[i] == 2), "outputs per input: {seen:?}");
    worker.wait_until("every entry settled", |worker| {
        worker.total(PANICKY, "acked_total") + worker.total(PANICKY, "dead_lettered_total") >= COUNT as u64
    });
    assert_eq!(worker.total(PANICKY, "received_total"), 2 * COUNT as u64, "not every entry came back exactly once");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}
