//! Function state on Pulsar across a `kill -9`: every input the killed worker acknowledged has
//! its state writes on disk when the next worker opens the same state directory, because an
//! input is acknowledged only once its writes are durable. An acknowledged input is never
//! delivered again, so a write lost with the kill would stay missing.

use std::collections::HashSet;

use pfn::state::StateStore;
use pfn_tests::{
    broker::TestBroker,
    fixtures::{fixture, scratch},
    pulsar_client::{Outgoing, PulsarPeer, TestConsumer, unique_topic},
    pulsar_functions::{IDLE, kill_9, wait_subscribed},
    relay::Relay,
    worker::RunningWorker,
};

const MARKS: &str = "public/default/marks";
const COUNT: usize = 4_000;
/// Inputs published at once; the next chunk goes once this one's outputs are read, so that
/// pulsar-lite never holds a large backlog (docs/TESTING.md, deviation 10).
const CHUNK: usize = 200;
/// The chunk during which the worker is killed.
const KILLED_IN: usize = 8;

fn start(dir: &std::path::Path, relay: &Relay, input: &str, output: &str) -> RunningWorker {
    let spec = format!(
        "name = \"marks\"\nplugin = \"stateful\"\ninputs = [\"{input}\"]\noutput = \"{output}\"\n\
         subscription_position = \"earliest\"\nparallelism = 2\n"
    );
    let worker = RunningWorker::start(
        dir,
        &[("marks.toml", spec.as_str())],
        &[(&fixture("stateful"), "libstateful.so")],
        &["--pulsar-url", &relay.url()],
    );
    worker.wait_until("marks runs", |worker| worker.function(MARKS)["state"] == "running");
    wait_subscribed(&worker, 2);
    worker
}

/// Reads outputs (each an input's number) until `distinct` of them were seen.
fn read_until(reader: &mut TestConsumer<'_>, seen: &mut HashSet<usize>, distinct: usize) {
    while seen.len() < distinct {
        let received = reader.receive(distinct - seen.len(), IDLE);
        assert!(!received.is_empty(), "no output for {IDLE:?}; {} of {distinct} seen", seen.len());
        for output in received {
            let text = String::from_utf8(output.payload).expect("text output");
            seen.insert(text.parse().unwrap_or_else(|_| panic!("output {text:?} is not an input's number")));
        }
    }
}

#[test]
fn writes_of_every_input_acknowledged_before_a_kill_9_are_in_the_store_afterwards() {
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output) = (unique_topic("marks-in"), unique_topic("marks-out"));
    let dir = scratch();
    let mut worker = start(dir.path(), &relay, &input, &output);
    let peer = PulsarPeer::connect(&relay.url());
    let mut reader = peer.subscribe(&output, "check");
    let mut seen = HashSet::new();
    let mut acked_before_kill = 0;
    for chunk in 0..COUNT / CHUNK {
        let numbers = chunk * CHUNK..(chunk + 1) * CHUNK;
        peer.produce(&input, numbers.clone().map(|n| Outgoing::text(format!("mark {n}"))));
        if chunk == KILLED_IN {
            // Mid-chunk: some of it acknowledged, the rest in flight.
            let before = (chunk * CHUNK) as u64;
            worker.wait_until("the chunk is being acknowledged", |worker| {
                worker.total(MARKS, "acked_total") >= before + 20
            });
            acked_before_kill = worker.total(MARKS, "acked_total");
            kill_9(&worker);
            drop(worker);
            worker = start(dir.path(), &relay, &input, &output);
        }
        read_until(&mut reader, &mut seen, numbers.end);
    }
    let (status, log) = worker.terminate();
    assert!(status.success(), "the second worker stops cleanly: {log}");
    assert!(acked_before_kill > (KILLED_IN * CHUNK) as u64, "the kill came after acknowledgements");

    let store = StateStore::open(&dir.path().join("state").join("state.redb")).expect("the store reopens");
    let marks = store.function(MARKS);
    let mut keys = Vec::new();
    loop {
        let page = marks.list(&[], "seen/", keys.last().map(String::as_str), 1000).expect("list");
        if page.is_empty() {
            break;
        }
        keys.extend(page);
    }
    let marked: HashSet<usize> = keys.iter().filter_map(|key| key.strip_prefix("seen/")?.parse().ok()).collect();
    let missing: Vec<usize> = (0..COUNT).filter(|n| !marked.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{} inputs without their write, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let count = marks.get_counter(&[], "marks").expect("counter");
    // At least once: what was in flight at the kill ran twice.
    assert!(count >= COUNT as i64, "marks counted {count} of {COUNT}");
}
