//! Function state through a real `pfn worker`: exact counters under parallelism with failing
//! calls mixed in, keys listed in pages and deleted by prefix, state kept across a restart, and
//! `pfn functions querystate` / `putstate`.

use std::{fmt::Write as _, process::Output};

use pfn_tests::{
    fixtures::{fixture, scratch},
    pfn_cli::texts,
    worker::RunningWorker,
};
use serde_json::Value;

const COUNT: &str = "public/default/count";
const COUNT_SPEC: &str = r#"
name = "count"
plugin = "stateful"
inputs = ["count-in"]
output = "count-out"
parallelism = 4
max_message_retries = 0
"#;

/// `spec` with its instances in the given runtime.
fn in_runtime(spec: &str, runtime: &str) -> String {
    format!("{spec}runtime = \"{runtime}\"\n")
}

const KEYS: &str = "public/default/keys";
const KEYS_SPEC: &str = r#"
name = "keys"
plugin = "stateful"
inputs = ["keys-in"]
output = "keys-out"
"#;

fn start(dir: &std::path::Path, spec: (&str, &str)) -> RunningWorker {
    RunningWorker::start(dir, &[spec], &[(&fixture("stateful"), "libstateful.so")], &[])
}

fn wait_running(worker: &RunningWorker, fqfn: &str) {
    worker.wait_until(&format!("{fqfn} runs"), |worker| worker.function(fqfn)["state"] == "running");
}

/// `pfn functions querystate FQFN --key KEY [--counter]`.
fn querystate(worker: &RunningWorker, fqfn: &str, key: &str, counter: bool) -> Output {
    let mut command = worker.pfn();
    command.args(["functions", "querystate", fqfn, "--key", key]);
    if counter {
        command.arg("--counter");
    }
    command.output().expect("pfn functions querystate")
}

/// The entry `querystate` printed, as JSON.
fn entry(worker: &RunningWorker, fqfn: &str, key: &str, counter: bool) -> Value {
    let output = querystate(worker, fqfn, key, counter);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "querystate {key} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("querystate printed {stdout:?}: {e}"))
}

/// `pfn functions putstate FQFN --key KEY` with `value` (`--value V` or `--counter N`).
fn putstate(worker: &RunningWorker, fqfn: &str, key: &str, value: [&str; 2]) -> Value {
    let output =
        worker.pfn().args(["functions", "putstate", fqfn, "--key", key]).args(value).output().expect("putstate");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "putstate {key} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("putstate printed {stdout:?}: {e}"))
}

#[test]
fn counters_stay_exact_with_four_instances_and_failing_calls_mixed_in() {
    counters_stay_exact("thread", 100_000);
}

#[test]
fn counters_stay_exact_when_the_instances_run_in_child_processes() {
    counters_stay_exact("process", 20_000);
}

fn counters_stay_exact(runtime: &str, increments: u64) {
    let dir = scratch();
    let worker = start(dir.path(), ("count.toml", &in_runtime(COUNT_SPEC, runtime)));
    wait_running(&worker, COUNT);
    let mut lines = String::new();
    let mut failing = 0;
    for n in 0..increments {
        lines.push_str("incr count 1\n");
        if n % 10 == 0 {
            // Adds 1,000 then fails: dead-lettered, and the increment must leave no trace.
            lines.push_str("incr-then-fail count 1000\n");
            failing += 1;
        }
        if n % 1000 == 0 {
            // Reads its own write back within the call, or fails (and would be dead-lettered).
            let _ = writeln!(lines, "put last/{n} {n}");
        }
    }
    let inputs = lines.lines().count() as u64;
    worker.produce("count-in", lines.as_bytes(), false);
    worker.wait_until("every input is acknowledged", |worker| worker.total(COUNT, "acked_total") >= inputs);

    assert_eq!(entry(&worker, COUNT, "count", true)["numberValue"], increments);
    assert_eq!(worker.total(COUNT, "dead_lettered_total"), failing, "only the failing calls are dead-lettered");
    let last = (increments - 1) / 1000 * 1000;
    assert_eq!(entry(&worker, COUNT, &format!("last/{last}"), false)["stringValue"], last.to_string());
    let per_instance: Vec<u64> = worker.function(COUNT)["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|instance| instance["received_total"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        per_instance.iter().filter(|received| **received > 0).count() > 1,
        "one instance did it all: {per_instance:?}"
    );
}

#[test]
fn keys_are_listed_in_pages_and_deleted_by_prefix() {
    let dir = scratch();
    let worker = start(dir.path(), ("keys.toml", KEYS_SPEC));
    wait_running(&worker, KEYS);
    worker.create_subscription("keys-out", "check");
    let mut lines = String::new();
    for n in 0..25 {
        let _ = writeln!(lines, "put user/{n:02} x");
    }
    lines.push_str("put other y\n");
    lines.push_str("list user/ 10\nlist user/ 10 user/09\nlist user/ 10 user/19\nlist user/ 10 user/24\n");
    lines.push_str("del-prefix user/1\nlist user/ 100\nlist  100\n");
    worker.produce("keys-in", lines.as_bytes(), false);
    let outputs = worker.consume("keys-out", "check", 33, false);
    let pages = &outputs[26..];
    let keys = |range: std::ops::Range<u32>| range.map(|n| format!("user/{n:02}")).collect::<Vec<_>>().join(",");
    assert_eq!(pages[0], keys(0..10));
    assert_eq!(pages[1], keys(10..20));
    assert_eq!(pages[2], keys(20..25));
    assert_eq!(pages[3], "", "the page after the last key is empty");
    assert_eq!(pages[4], "ok");
    let remaining = format!("{},{}", keys(0..10), keys(20..25));
    assert_eq!(pages[5], remaining);
    assert_eq!(pages[6], format!("other,{remaining}"), "an empty prefix lists every key");
}

#[test]
fn state_survives_a_restart_and_the_command_line_reads_and_writes_it() {
    let dir = scratch();
    let spec = ("keys.toml", KEYS_SPEC);
    let worker = start(dir.path(), spec);
    wait_running(&worker, KEYS);
    worker.produce("keys-in", b"put colour red\nincr visits 5\nput doomed x\ndel doomed\n", false);
    worker.wait_until("the inputs are acknowledged", |worker| worker.total(KEYS, "acked_total") >= 4);
    let (status, log) = worker.terminate();
    assert!(status.success(), "the worker stops cleanly: {log}");

    let worker = start(dir.path(), spec);
    wait_running(&worker, KEYS);
    assert_eq!(entry(&worker, KEYS, "colour", false)["stringValue"], "red");
    assert_eq!(entry(&worker, KEYS, "visits", true)["numberValue"], 5);
    let missing = querystate(&worker, KEYS, "doomed", false);
    assert!(!missing.status.success());
    assert!(texts(&missing).1.contains("no state key `doomed`"), "{}", texts(&missing).1);
    let not_a_counter = querystate(&worker, KEYS, "colour", true);
    assert!(texts(&not_a_counter).1.contains("not a counter"), "{}", texts(&not_a_counter).1);

    assert_eq!(putstate(&worker, KEYS, "visits", ["--counter", "40"])["numberValue"], 40);
    assert_eq!(putstate(&worker, KEYS, "greeting", ["--value", "hello"])["stringValue"], "hello");
    worker.create_subscription("keys-out", "check");
    worker.produce("keys-in", b"incr visits 2\nget greeting\ncount visits\n", false);
    assert_eq!(worker.consume("keys-out", "check", 3, false), ["42", "hello", "42"]);
    let unknown = querystate(&worker, "public/default/nothing", "k", false);
    assert!(texts(&unknown).1.contains("no function public/default/nothing"), "{}", texts(&unknown).1);
}
