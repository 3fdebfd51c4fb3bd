//! Batched inputs on Pulsar: the crate acknowledges a whole entry when one of its messages is
//! acknowledged, so the worker acknowledges an entry only once every message in it is done. A
//! message that keeps failing is then redelivered with its whole entry until its retries run
//! out and it reaches the dead-letter topic; its batch mates are processed again (at least once).
//! Under `manual` guarantees an entry with a message the function did not acknowledge stays
//! unacknowledged, and comes back whole to the subscription's next consumer.

use std::time::Duration;

use pfn_tests::{
    fixtures::scratch,
    pulsar_client::{Outgoing, Received},
    pulsar_functions::{
        ACKER, IDLE, PANICKY, PulsarRig, Tally, acker_spec, by_trailing_number, panicky_spec, start_acker,
        start_panicky, trailing_number,
    },
};

#[test]
fn a_failing_message_in_a_batch_is_retried_and_dead_lettered_while_its_batch_mates_are_done() {
    const COUNT: usize = 100;
    const BATCH: u32 = 10;
    let fails = |i: usize| i % BATCH as usize == 4;
    let rig = PulsarRig::start();
    let PulsarRig { relay, input, output, peer, .. } = &rig;
    let (mut reader, mut dead_letters) = (rig.reader(), rig.dead_letters());
    let inputs = (0..COUNT).map(|i| Outgoing::text(if fails(i) { format!("error {i}") } else { i.to_string() }));
    peer.produce_in_batches(input, inputs, Some(BATCH));

    let dir = scratch();
    let worker = start_panicky(dir.path(), relay, &panicky_spec(input, output, "max_message_retries = 1"));
    let mut letters: Vec<String> = Vec::new();
    for letter in dead_letters.receive(COUNT / BATCH as usize, IDLE) {
        assert_eq!(letter.properties.get("pfn.dead_letter.reason").map(String::as_str), Some("error"));
        letters.push(letter.text());
    }
    letters.extend(dead_letters.receive(1, Duration::from_secs(2)).iter().map(|letter| letter.text()));
    let expected: Vec<String> = (0..COUNT).filter(|&i| fails(i)).map(|i| format!("error {i}")).collect();
    assert_eq!(by_trailing_number(letters), expected, "a failing message of a batch was acknowledged with its batch");

    // Each entry was redelivered once, whole: its batch mates came out twice.
    let succeeding = (0..COUNT).filter(|&i| !fails(i)).count();
    let mut outputs = reader.receive(2 * succeeding, IDLE);
    outputs.extend(reader.receive(1, Duration::from_secs(2)));
    let mut tally = Tally::new(COUNT);
    for output in &outputs {
        tally.add(output.text().strip_prefix("ok:").and_then(|n| n.parse().ok()).expect("ok:<number>"));
    }
    assert!((0..COUNT).all(|i| fails(i) || tally.seen[i] == 2), "outputs per input: {:?}", tally.seen);
    worker.wait_until("every entry settled", |worker| {
        worker.total(PANICKY, "acked_total") + worker.total(PANICKY, "dead_lettered_total") >= COUNT as u64
    });
    assert_eq!(worker.total(PANICKY, "received_total"), 2 * COUNT as u64, "not every entry came back exactly once");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn under_manual_guarantees_a_batch_with_a_held_message_stays_unacknowledged_and_comes_back_whole() {
    const COUNT: usize = 100;
    const BATCH: usize = 10;
    // The first five entries each hold one message the function does not acknowledge, and one
    // it fails on without acknowledging (retried once, then dead-lettered).
    let is_held = |i: usize| i < COUNT / 2 && i % BATCH == 3;
    let is_failing = |i: usize| i < COUNT / 2 && i % BATCH == 6;
    let rig = PulsarRig::start();
    let PulsarRig { relay, input, output, peer, .. } = &rig;
    let (mut reader, mut dead_letters) = (rig.reader(), rig.dead_letters());
    let inputs = (0..COUNT).map(|i| match (is_held(i), is_failing(i)) {
        (true, _) => Outgoing::text(format!("hold {i}")),
        (_, true) => Outgoing::text(format!("fail {i}")),
        _ => Outgoing::text(format!("take {i}")),
    });
    peer.produce_in_batches(input, inputs, Some(BATCH as u32));
    let spec = format!("{}max_message_retries = 1\n", acker_spec(input, output));

    let first_dir = scratch();
    let first = start_acker(first_dir.path(), relay, &spec);
    // The failing message is retried, so its entry must have been given back despite the held one.
    let mut letters: Vec<usize> =
        dead_letters.receive(COUNT / BATCH / 2, IDLE).iter().map(|letter| number_in(&letter.text())).collect();
    letters.sort_unstable();
    assert_eq!(letters, (0..COUNT).filter(|&i| is_failing(i)).collect::<Vec<_>>(), "a failure was never retried");
    let taken = (0..COUNT).filter(|&i| !is_held(i) && !is_failing(i)).count() as u64;
    first.wait_until("the taken inputs acknowledged", |worker| worker.total(ACKER, "acked_total") >= taken);
    let (status, log) = first.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
    // What the first worker published, entries given back included.
    let published = reader.receive(usize::MAX, Duration::from_secs(2));
    assert!(published.len() >= COUNT - COUNT / BATCH / 2, "{} outputs from the first worker", published.len());

    // Only the entries with a held message were left unacknowledged.
    let second_dir = scratch();
    let second = start_acker(second_dir.path(), relay, &spec);
    let expected: Vec<usize> = (0..COUNT / 2).filter(|&i| !is_failing(i)).collect();
    let distinct = |outputs: &[Received]| {
        let mut numbers: Vec<usize> = outputs.iter().map(|output| number_in(&output.text())).collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    };
    let mut outputs = reader.receive_until(IDLE, |outputs| distinct(outputs).len() >= expected.len());
    outputs.extend(reader.receive(usize::MAX, Duration::from_secs(2)));
    assert_eq!(distinct(&outputs), expected, "not exactly the entries with a held message came back");
    let (status, log) = second.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

/// The number at the end of an output such as `held:hold 3`.
fn number_in(text: &str) -> usize {
    trailing_number(text).unwrap_or_else(|| panic!("no number in {text:?}"))
}
