//! Durable state: how many counter increments per second a worker makes durable, for one
//! function with 1 and with 4 instances, and how long a get and an increment take.
//!
//! 1. **Durable increments.** A real [`Worker`] on embedded topics runs the `stateful` fixture
//!    over pre-loaded inputs `incr count-K 1`, on one counter (K = 0) or on [`KEYS`] counters. An input is acknowledged only once its increment is
//!    on disk (fsync'd by the store's group commit), so the rate of acknowledged inputs is the
//!    rate of durable increments. It is counted from the first acknowledgement to the last; at
//!    the end the counters must add up to exactly the number of inputs. The store's group commits
//!    (how many, and their latency with the fsync) are read from the worker's metrics.
//! 2. **Latency.** One thread on a [`StateSlot`] over a store of [`KEYS`] keys: a `get` of a
//!    random key, and an `incr_counter` followed by the end of its call, as a function's call
//!    waits for them (durability comes later, with the batch's commit, off the call's path).
//!
//! Needs `scripts/build-plugins.sh` to have built `target/fixtures/libstateful.so`. Run with
//! `cargo bench -p pfn --bench state`; without `--bench` it makes one short run of each.

mod support;

use std::{
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use pfn::{
    io::{embedded::EmbeddedBroker, transport::Message},
    state::{StateSlot, StateStore},
};
use support::{bench_options, install, require, start_worker, target_dir};

const INPUT: &str = "in";
const FQFN: &str = "public/default/count";
/// Keys in the store the latency part reads.
const KEYS: u64 = 10_000;
/// Calls whose writes are staged together in the latency part, as an instance's batch.
const BATCH: u64 = 512;

/// One durable-increments run.
struct Run {
    instances: u32,
    counters: u64,
    inputs: u64,
    rate: f64,
    elapsed: Duration,
    flushes: f64,
    flush_p50_ms: f64,
    flush_p99_ms: f64,
}

/// The value of the sample of `family` whose line starts so (`name{...quantile="0.5"}`), summed
/// over the lines that match.
fn sampled(scrape: &str, prefix: &str, quantile: Option<&str>) -> f64 {
    scrape
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter(|line| quantile.is_none_or(|q| line.contains(&format!("quantile=\"{q}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn durable_increments(root: &Path, stateful: &Path, instances: u32, counters: u64, inputs: u64) -> Run {
    if root.exists() {
        fs::remove_dir_all(root).unwrap_or_else(|e| panic!("cannot remove {}: {e}", root.display()));
    }
    let (plugins, functions, cache) = (root.join("plugins"), root.join("functions"), root.join("cache"));
    for dir in [&plugins, &functions] {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    install(stateful, &plugins, "libstateful.so", "stateful", "1.0.0");
    let spec_path = functions.join("count.toml");
    let spec = format!("name = \"count\"\nplugin = \"stateful\"\ninputs = [\"{INPUT}\"]\nparallelism = {instances}\n");
    fs::write(&spec_path, spec).unwrap_or_else(|e| panic!("cannot write {}: {e}", spec_path.display()));
    let spec = pfn::config::FunctionSpec::from_file(&spec_path).expect("the bench's spec is valid");

    let broker = EmbeddedBroker::new();
    broker.create_subscription(INPUT, &spec.subscription(), spec.subscription_type()).expect("subscription");
    let messages: Vec<Arc<Message>> =
        (0..counters).map(|key| Arc::new(Message::from_payload(format!("incr count-{key} 1").into_bytes()))).collect();
    let mut chunk = Vec::with_capacity(8192);
    for index in 0..inputs {
        chunk.push(Arc::clone(&messages[(index % counters) as usize]));
        if chunk.len() == chunk.capacity() || index + 1 == inputs {
            broker.publish_shared(INPUT, &chunk).expect("pre-load");
            chunk.clear();
        }
    }

    let options = bench_options(plugins, functions, root.join("state.redb"), Duration::from_millis(100), false);
    let (handle, thread) = start_worker(options, &cache, &broker);
    let acked = || broker.counts(INPUT).subscriptions.first().map_or(0, |(_, counts)| counts.acked);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    while acked() < inputs {
        assert!(Instant::now() < deadline, "only {} of {inputs} inputs acknowledged", acked());
        if first.is_none() && acked() > 0 {
            first = Some((Instant::now(), acked()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let last = Instant::now();
    let (first, first_count) = first.unwrap_or((last, 0));
    let sum: i64 = (0..counters)
        .map(|key| {
            handle.query_state(FQFN, &format!("count-{key}"), true).expect("a counter").number_value.unwrap_or(0)
        })
        .sum();
    assert_eq!(sum, inputs as i64, "every acknowledged increment is in the store");
    let scrape = handle.render_metrics();
    handle.shutdown();
    thread.join().expect("the worker thread does not panic");
    let elapsed = last.duration_since(first);
    Run {
        instances,
        counters,
        inputs,
        rate: (inputs - first_count) as f64 / elapsed.as_secs_f64(),
        elapsed,
        flushes: sampled(&scrape, "pfn_state_flushes_total", None),
        flush_p50_ms: sampled(&scrape, "pfn_state_flush_latency_ms{", Some("0.5")),
        flush_p99_ms: sampled(&scrape, "pfn_state_flush_latency_ms{", Some("0.99")),
    }
}

/// The `p`-th percentile of sorted durations, in microseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// Sorted latencies of `ops` calls of `op`.
fn timed(ops: u64, mut op: impl FnMut(u64)) -> Vec<Duration> {
    let mut took: Vec<Duration> = (0..ops)
        .map(|n| {
            let started = Instant::now();
            op(n);
            started.elapsed()
        })
        .collect();
    took.sort_unstable();
    took
}

fn latencies(root: &Path, ops: u64) -> (Vec<Duration>, Vec<Duration>) {
    if root.exists() {
        fs::remove_dir_all(root).unwrap_or_else(|e| panic!("cannot remove {}: {e}", root.display()));
    }
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let store = StateStore::open(&root.join("state.redb")).expect("the store opens");
    let slot = StateSlot::new(store.function(FQFN));
    for key in 0..KEYS {
        slot.put(&format!("key-{key:05}"), &[7; 64]).expect("put");
    }
    slot.end_call(true);
    slot.store().write_now(slot.take_batch()).expect("the keys are written");
    // A fixed pseudo-random walk over the keys, the same every run.
    let key_of = |n: u64| format!("key-{:05}", n.wrapping_mul(2_654_435_761) % KEYS);
    let gets = timed(ops, |n| {
        slot.get(&key_of(n)).expect("get").expect("the key exists");
        slot.end_call(true);
    });
    let incrs = timed(ops, |n| {
        slot.incr(&format!("counter-{}", n % 100), 1).expect("incr");
        slot.end_call(true);
        if n % BATCH == BATCH - 1 {
            slot.commit_batch(|| Box::new(|result| result.expect("the batch is durable")));
        }
    });
    (gets, incrs)
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let (inputs, ops, runs) = if benching { (200_000, 200_000, 3) } else { (20_000, 20_000, 1) };
    let target = target_dir();
    let stateful = require(&target.join("fixtures").join("libstateful.so"));
    let root = target.join("bench").join("state");

    let mut results: Vec<Run> = Vec::new();
    for run in 1..=runs {
        for (instances, counters) in [(1, 1), (4, 1), (1, KEYS), (4, KEYS)] {
            let dir = root.join(format!("worker-{instances}-{counters}"));
            let result = durable_increments(&dir, &stateful, instances, counters, inputs);
            eprintln!(
                "run {run}/{runs}, {instances} instance(s), {counters} counter(s): {:.0} durable increments/s ({} in \
                 {:.2} s), {} group commits, p50 {:.2} ms, p99 {:.2} ms",
                result.rate,
                result.inputs,
                result.elapsed.as_secs_f64(),
                result.flushes,
                result.flush_p50_ms,
                result.flush_p99_ms
            );
            results.push(result);
        }
    }
    let (gets, incrs) = latencies(&root.join("latency"), ops);

    println!();
    println!("Durable counter increments through the worker, {inputs} inputs `incr count-K 1`, {runs} run(s)");
    println!();
    println!("| instances | counters | best | median | worst | group commits (median run) | commit p50 / p99 |");
    println!("|---|---|---|---|---|---|---|");
    for (instances, counters) in [(1, 1), (4, 1), (1, KEYS), (4, KEYS)] {
        let mut runs: Vec<&Run> =
            results.iter().filter(|r| r.instances == instances && r.counters == counters).collect();
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let (worst, median, best) = (runs[0], runs[runs.len() / 2], runs[runs.len() - 1]);
        println!(
            "| {instances} | {counters} | {:.0}/s | {:.0}/s | {:.0}/s | {} | {:.2} ms / {:.2} ms |",
            best.rate, median.rate, worst.rate, median.flushes, median.flush_p50_ms, median.flush_p99_ms
        );
    }
    println!();
    println!("Latency on one thread, {ops} operations, a store of {KEYS} keys");
    println!();
    println!("| operation | p50 | p99 |");
    println!("|---|---|---|");
    for (name, took) in [("get", &gets), ("incr_counter", &incrs)] {
        println!("| {name} | {:.2} us | {:.2} us |", percentile(took, 0.5), percentile(took, 0.99));
    }
}
