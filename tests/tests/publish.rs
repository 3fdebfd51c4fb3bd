//! Publishing to topics of the function's choosing: through `pfn run` to the published file and
//! through the worker to embedded topics. A failed call's publishes are never sent, and its
//! input is retried, then dead-lettered.

use pfn_tests::{
    fixtures::{fixture, scratch, sha256_of},
    pfn_cli::{pfn, run_with_stdin, texts},
    worker::RunningWorker,
};
use serde_json::{Value, json};

const INPUTS: &[u8] = b"publish routed-a x\npublish routed-b y\npublish-then-fail routed-a z\npublish routed-a w\n";

#[test]
fn pfn_run_writes_published_messages_beside_the_output() {
    let dir = scratch();
    let output = dir.path().join("out.txt");
    let mut command = pfn(dir.path());
    let plugin = fixture("stateful");
    command.args(["run", "--sha256", &sha256_of(&plugin).to_string(), "--plugin"]).arg(&plugin);
    command.arg("--output").arg(&output);
    let run = run_with_stdin(command, INPUTS);
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("4 messages: 0 outputs, 3 filtered, 1 dead-lettered"), "{stderr}");
    assert!(stderr.contains(", 3 published"), "{stderr}");
    let published = std::fs::read_to_string(dir.path().join("out.published.jsonl")).expect("published file");
    let lines: Vec<Value> = published.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    let expected = |topic: &str, text: &str| json!({"topic": topic, "value": text, "key": text, "properties": {"from": "stateful"}, "event_time": 1000});
    assert_eq!(lines, vec![expected("routed-a", "x"), expected("routed-b", "y"), expected("routed-a", "w")]);
    let letters = std::fs::read_to_string(dir.path().join("out.dead-letter.jsonl")).expect("dead letters");
    assert!(letters.contains("failing after the publish"), "{letters}");
}

#[test]
fn the_worker_publishes_what_successful_calls_published_and_nothing_of_failed_ones() {
    publishes_of_successful_calls_only("thread");
}

#[test]
fn a_child_process_publishes_as_a_thread_does() {
    publishes_of_successful_calls_only("process");
}

fn publishes_of_successful_calls_only(runtime: &str) {
    let dir = scratch();
    let spec = format!(
        "name = \"router\"\nplugin = \"stateful\"\ninputs = [\"router-in\"]\nmax_message_retries = 2\nruntime = \"{runtime}\"\n"
    );
    let worker =
        RunningWorker::start(dir.path(), &[("router.toml", &spec)], &[(&fixture("stateful"), "libstateful.so")], &[]);
    worker.wait_until("router runs", |worker| worker.function("public/default/router")["state"] == "running");
    for topic in ["routed-a", "routed-b", "router-DLQ"] {
        worker.create_subscription(topic, "check");
    }
    worker.produce("router-in", INPUTS, false);
    let letters = worker.consume("router-DLQ", "check", 1, true);
    assert_eq!(letters.len(), 1, "the failing input is dead-lettered after its retries");
    let letter: Value = serde_json::from_str(&letters[0]).expect("a JSON dead letter");
    assert_eq!(letter["value"], "publish-then-fail routed-a z");
    let routed_a = worker.consume("routed-a", "check", 3, true);
    let routed_a: Vec<Value> = routed_a.iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert_eq!(routed_a.len(), 2, "z, published by a failed call three times, was never sent: {routed_a:?}");
    assert_eq!((routed_a[0]["value"].as_str(), routed_a[1]["value"].as_str()), (Some("x"), Some("w")));
    assert_eq!(routed_a[0]["key"], "x");
    assert_eq!(routed_a[0]["properties"]["from"], "stateful");
    assert_eq!(routed_a[0]["event_time"], 1000);
    assert_eq!(worker.consume("routed-b", "check", 2, false), ["y"]);
    let (exit, log) = worker.terminate();
    assert!(exit.success(), "{log}");
}
