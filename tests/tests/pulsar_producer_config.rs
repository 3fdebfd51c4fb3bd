//! Producers as Pulsar Functions builds them: outputs leave in batched entries (each output
//! still one message, one per input), and a spec's `producer_config` turns batching off or
//! changes the compression; the consumer reads them back the same either way.

use std::collections::{BTreeMap, BTreeSet};

use pfn_tests::{
    broker::TestBroker,
    fixtures::scratch,
    pulsar_client::{Outgoing, PulsarPeer, unique_topic},
    pulsar_functions::{IDLE, SHOUT, numbered, shout_spec, start_shout, tally},
    relay::Relay,
};

const COUNT: usize = 2_000;

/// The entries outputs came in: how many, their compressions, and how many of them held
/// messages of more than one key.
#[derive(Debug)]
struct Entries {
    count: usize,
    compressions: BTreeSet<i32>,
    mixing_keys: usize,
}

/// Runs exclamation over [`COUNT`] inputs (keys cycling through 10, in runs of `run` inputs)
/// with `extra` spec lines; returns the entries the outputs came in, after checking that each
/// input has exactly one output.
fn output_entries(extra: &str, run: usize) -> Entries {
    let broker = TestBroker::start();
    let (to_worker, to_test) =
        (Relay::start(broker.addr()).expect("relay"), Relay::start(broker.addr()).expect("relay"));
    let peer = PulsarPeer::connect(&to_test.url());
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let mut reader = peer.subscribe(&output, "check");
    peer.produce(
        &input,
        (0..COUNT).map(|i| Outgoing { key: Some(format!("key-{}", i / run % 10)), ..numbered(i, 10) }),
    );
    to_test.record_deliveries();
    let dir = scratch();
    let worker = start_shout(dir.path(), &to_worker, &shout_spec(&input, &output, extra));
    let mut outputs = reader.receive(COUNT, IDLE);
    let mut keys_per_entry: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    outputs.extend(reader.receive(1, std::time::Duration::from_secs(2)));
    assert!(tally(&outputs, COUNT).iter().all(|&n| n == 1), "not one output per input");
    assert!(outputs.iter().all(|output| output.properties.contains_key("seq")), "properties kept");
    worker.wait_until("every input acknowledged", |worker| worker.total(SHOUT, "acked_total") == COUNT as u64);
    let deliveries = to_test.deliveries();
    // Delivery order is output order: pair each output with its entry to see its key.
    let mut entries_in_order = deliveries
        .iter()
        .flat_map(|delivery| std::iter::repeat_n((delivery.ledger, delivery.entry), delivery.messages.max(1) as usize));
    for output in &outputs {
        let entry = entries_in_order.next().expect("an entry for every output");
        keys_per_entry.entry(entry).or_default().insert(output.key.clone().unwrap_or_default());
    }
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
    Entries {
        count: keys_per_entry.len(),
        compressions: deliveries.iter().map(|delivery| delivery.compression).collect(),
        mixing_keys: keys_per_entry.values().filter(|keys| keys.len() > 1).count(),
    }
}

/// Pulsar's numbers for the compressions.
const NONE: i32 = 0;
const LZ4: i32 = 1;
const ZSTD: i32 = 3;

#[test]
fn outputs_are_batched_and_uncompressed_by_default() {
    let entries = output_entries("", 1);
    eprintln!("default producer: {COUNT} outputs in {} entries", entries.count);
    assert!(entries.count < COUNT / 10, "{COUNT} outputs came in {} entries: not batched", entries.count);
    assert_eq!(entries.compressions, BTreeSet::from([NONE]));
}

#[test]
fn producer_config_turns_batching_off() {
    let entries = output_entries("[producer_config]\nbatching = false", 1);
    assert_eq!(entries.count, COUNT, "one entry per output without batching");
}

#[test]
fn a_producer_config_brings_lz4_and_can_ask_for_zstd_and_bound_pending_messages() {
    let lz4 = output_entries("[producer_config]\nbatching_max_publish_delay_ms = 5", 1);
    assert_eq!(lz4.compressions, BTreeSet::from([LZ4]), "LZ4 once a producer_config is given");
    // With at most 10 messages waiting for receipts, sends wait for room and every output still
    // comes out once.
    let zstd = output_entries("[producer_config]\ncompression_type = \"ZSTD\"\nmax_pending_messages = 10", 1);
    assert_eq!(zstd.compressions, BTreeSet::from([ZSTD]));
}

#[test]
fn key_based_batches_hold_one_key_each() {
    let default = output_entries("", 50);
    let key_based = output_entries("[producer_config]\nbatch_builder = \"KEY_BASED\"", 50);
    eprintln!("runs of 50 per key: default {default:?}, key-based {key_based:?}");
    assert!(default.mixing_keys > 0, "the default builder mixes keys in a batch");
    assert_eq!(key_based.mixing_keys, 0, "a key-based batch holds one key");
    assert!(key_based.count < COUNT / 10, "key-based batches are still batches: {}", key_based.count);
}
