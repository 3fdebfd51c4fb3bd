//! A function's own log level and log topic, on a real worker: its level lets its plugin's debug
//! events through while the worker logs at info (and another function's keeps its warnings
//! out), a changed spec changes it with no restart, and the log topic gets each event as JSON
//! with its fields, `log`-crate records included.

use std::time::Duration;

use pfn_tests::{
    fixtures::{fixture, scratch},
    worker::RunningWorker,
};
use serde_json::Value;

const LOUD: &str = "public/default/loud";
const QUIET: &str = "public/default/quiet";

fn spec(name: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nplugin = \"stateful\"\ninputs = [\"{name}-in\"]\noutput = \"{name}-out\"\n{extra}\n")
}

#[test]
fn each_function_logs_at_its_own_level_to_its_own_topic() {
    logs_at_own_level("thread");
}

#[test]
fn a_child_process_logs_at_its_functions_level_to_its_topic() {
    logs_at_own_level("process");
}

fn logs_at_own_level(runtime: &str) {
    let dir = scratch();
    let runtime = format!("runtime = \"{runtime}\"");
    let loud = spec("loud", &format!("log_level = \"debug\"\nlog_topic = \"loud-logs\"\n{runtime}"));
    let quiet = spec("quiet", &format!("log_level = \"error\"\n{runtime}"));
    let worker = RunningWorker::start(
        dir.path(),
        &[("loud.toml", &loud), ("quiet.toml", &quiet)],
        &[(&fixture("stateful"), "libstateful.so")],
        &["--log-level", "info"],
    );
    for fqfn in [LOUD, QUIET] {
        worker.wait_until("both run", |worker| worker.function(fqfn)["state"] == "running");
    }
    worker.create_subscription("loud-logs", "check");
    for name in ["loud", "quiet"] {
        worker.create_subscription(&format!("{name}-out"), "check");
    }
    worker.produce("loud-in", b"log debug d1\nlog trace t1\nlog-crate c1\n", false);
    worker.produce("quiet-in", b"log warn w1\nlog error e1\n", false);
    assert_eq!(worker.consume("loud-out", "check", 3, false).len(), 3);
    assert_eq!(worker.consume("quiet-out", "check", 2, false).len(), 2);

    let log = worker.log_text();
    assert!(log.contains("logged d1"), "the function's debug level lets its debug events through:\n{log}");
    assert!(!log.contains("logged t1"), "but not its trace events");
    assert!(log.contains("log crate c1"), "log-crate records arrive");
    assert!(log.contains("logged e1") && !log.contains("logged w1"), "the quiet function logs errors only");

    let events: Vec<Value> = worker
        .consume("loud-logs", "check", 3, false)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON log event"))
        .collect();
    assert_eq!(events.len(), 2, "two events passed the function's level: {events:?}");
    assert_eq!(events[0]["message"], "logged d1");
    assert_eq!(events[0]["level"], "DEBUG");
    assert_eq!(events[0]["fields"]["seq"], "\"d1\"");
    assert_eq!((events[0]["fqfn"].as_str(), events[0]["instance_id"].as_u64()), (Some(LOUD), Some(0)));
    assert!(events[0]["time"].as_str().is_some_and(|time| time.ends_with('Z')));
    assert_eq!((events[1]["message"].as_str(), events[1]["level"].as_str()), (Some("log crate c1"), Some("INFO")));

    // A changed spec changes the level at once, with no restart.
    std::thread::sleep(Duration::from_millis(1100)); // a modification time that differs
    let quieter = spec("quiet", &format!("log_level = \"warn\"\n{runtime}"));
    std::fs::write(worker.functions_dir.join("quiet.toml"), quieter).expect("spec");
    worker.wait_until("the new level is applied", |worker| worker.log_text().contains("log level applied"));
    worker.produce("quiet-in", b"log warn w2\n", false);
    assert_eq!(worker.consume("quiet-out", "check", 1, false).len(), 1);
    let log = worker.log_text();
    assert!(log.contains("logged w2"), "warnings pass now:\n{log}");
    assert_eq!(log.matches("function started fqfn=public/default/quiet").count(), 1, "no restart");
    let (exit, log) = worker.terminate();
    assert!(exit.success(), "{log}");
}
