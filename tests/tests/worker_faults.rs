//! A real `pfn worker` under faults: panics on a third of 100,000 messages, a call stuck past
//! its timeout, SIGTERM in the middle of a stream, an invalid spec beside a good one, and key
//! ordering across instances.

use std::{
    collections::{BTreeMap, HashSet},
    fmt::Write as _,
    io::Write as _,
    process::Stdio,
    time::Duration,
};

use pfn_tests::{
    fixtures::{fixture, plugin, scratch},
    pfn_cli::texts,
    worker::RunningWorker,
};
use serde_json::Value;

/// Waits until function `fqfn` runs: its subscription exists only from then on, and a topic
/// drops what is published before any subscription.
fn wait_running(worker: &RunningWorker, fqfn: &str) {
    worker.wait_until(&format!("{fqfn} runs"), |worker| worker.function(fqfn)["state"] == "running");
}

/// Asserts that `topic` got exactly `published` messages and that subscription `subscription`
/// holds none of them any more.
fn assert_published_and_drained(worker: &RunningWorker, topic: &str, subscription: &str, published: u64) {
    let stats = worker.topic_stats(topic);
    assert_eq!(stats["published"], published, "messages published to {topic}: {stats}");
    let subscriptions = stats["subscriptions"].as_array().expect("subscriptions list");
    let sub = subscriptions.iter().find(|s| s["name"] == subscription).unwrap_or_else(|| panic!("{stats}"));
    assert_eq!((sub["backlog"].as_u64(), sub["unacked"].as_u64()), (Some(0), Some(0)), "{stats}");
}

/// The counter `name` of each instance of `fqfn`, by instance id.
fn per_instance(worker: &RunningWorker, fqfn: &str, name: &str) -> Vec<u64> {
    let function = worker.function(fqfn);
    let instances = function["instances"].as_array().expect("instances");
    instances.iter().map(|instance| instance[name].as_u64().expect("a counter")).collect()
}

/// Whether every instance of `fqfn` reports itself healthy.
fn all_healthy(worker: &RunningWorker, fqfn: &str) -> bool {
    let function = worker.function(fqfn);
    function["instances"].as_array().expect("instances").iter().all(|instance| instance["healthy"] == true)
}

/// The counts of the worker's exit summary line for `fqfn`, by name ("received", "acked", ...).
fn exit_summary(log: &str, fqfn: &str) -> BTreeMap<String, u64> {
    let prefix = format!("pfn worker: {fqfn}: ");
    let line = log
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no summary line for {fqfn} in the log:\n{log}"));
    line.split(", ")
        .map(|part| {
            let (count, name) = part.split_once(' ').unwrap_or_else(|| panic!("summary part {part:?}"));
            (name.to_owned(), count.parse().unwrap_or_else(|_| panic!("summary count {part:?}")))
        })
        .collect()
}

fn parse_json_lines(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|line| serde_json::from_str(line).expect("consumed JSON line")).collect()
}

const SHAKY: &str = "public/default/shaky";
const SHAKY_SPEC: &str = r#"
name = "shaky"
plugin = "panicky"
inputs = ["shaky-in"]
output = "shaky-out"
parallelism = 2
max_message_retries = 2
"#;

#[test]
fn panics_every_third_message_reach_the_dead_letter_topic_after_retries() {
    let dir = scratch();
    let worker =
        RunningWorker::start(dir.path(), &[("shaky.toml", SHAKY_SPEC)], &[(&fixture("panicky"), "libpanicky.so")], &[]);
    wait_running(&worker, SHAKY);
    worker.create_subscription("shaky-out", "check");
    worker.create_subscription("shaky-out-DLQ", "check");

    let messages: u64 = 100_000;
    let panics_at = |n: u64| n % 3 == 2;
    let mut lines = String::new();
    for n in 0..messages {
        let _ = writeln!(lines, "{} {n}", if panics_at(n) { "panic" } else { "msg" });
    }
    worker.produce("shaky-in", lines.as_bytes(), false);
    let panics = (0..messages).filter(|n| panics_at(*n)).count() as u64;
    let fine = messages - panics;
    let retries = 2;

    // Every input ends acknowledged: as an output or as a dead letter.
    worker.wait_until("every input is acknowledged", |worker| worker.total(SHAKY, "acked_total") >= messages);

    let outputs = worker.consume("shaky-out", "check", fine, false);
    assert_eq!(outputs.len() as u64, fine);
    let mut seen = HashSet::new();
    for line in &outputs {
        let n: u64 = line
            .strip_prefix("ok:msg ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output {line:?}"));
        assert!(n < messages && !panics_at(n), "output for an input that panics or was never sent: {line:?}");
        assert!(seen.insert(n), "output twice: {line:?}");
    }
    assert_published_and_drained(&worker, "shaky-out", "check", fine);

    let letters = parse_json_lines(&worker.consume("shaky-out-DLQ", "check", panics, true));
    assert_eq!(letters.len() as u64, panics);
    let mut dead = HashSet::new();
    for letter in &letters {
        let value = letter["value"].as_str().unwrap_or_else(|| panic!("dead letter without a text value: {letter}"));
        let n: u64 = value
            .strip_prefix("panic ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("dead letter for an input that does not panic: {letter}"));
        assert!(n < messages && panics_at(n), "{letter}");
        assert!(dead.insert(n), "dead-lettered twice: {letter}");
        let properties = &letter["properties"];
        assert_eq!(properties["pfn.dead_letter.reason"], "panic", "{letter}");
        let error = properties["pfn.dead_letter.error"].as_str().unwrap_or_else(|| panic!("no error: {letter}"));
        assert!(error.starts_with(&format!("asked to panic on {n}")), "panic message missing: {letter}");
        assert_eq!(properties["REAL_TOPIC"], "shaky-in", "{letter}");
        assert_eq!(properties["ORIGIN_MESSAGE_ID"], n.to_string(), "{letter}");
    }
    assert_published_and_drained(&worker, "shaky-out-DLQ", "check", panics);

    // Each panicking input was called once and then once per retry; each fine input once.
    assert_eq!(worker.total(SHAKY, "user_exceptions_total"), panics * (retries + 1));
    assert_eq!(worker.total(SHAKY, "received_total"), fine + panics * (retries + 1));
    assert_eq!(worker.total(SHAKY, "processed_successfully_total"), fine);
    assert_eq!(worker.total(SHAKY, "outputs_total"), fine);
    assert_eq!(worker.total(SHAKY, "dead_lettered_total"), panics);
    assert_eq!(worker.total(SHAKY, "acked_total"), messages);
    assert_eq!(worker.total(SHAKY, "timeouts_total"), 0);
    assert!(all_healthy(&worker, SHAKY), "{}", worker.function(SHAKY));
    assert!(
        per_instance(&worker, SHAKY, "user_exceptions_total").iter().all(|&n| n > 0),
        "both instances should have met panics: {}",
        worker.function(SHAKY)
    );

    // The same process did all of it: it still answers, it started the function once, and its
    // in-memory counts at exit are the counts above.
    assert_eq!(worker.trigger_ok(SHAKY, "still here"), "ok:still here");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exited with {status}; log:\n{log}");
    let started = log.lines().filter(|line| line.contains("function started") && line.contains(SHAKY)).count();
    assert_eq!(started, 1, "the function was started more than once:\n{log}");
    let summary = exit_summary(&log, SHAKY);
    assert_eq!(summary["acked"], messages + 1, "{summary:?}");
    assert_eq!(summary["user exceptions"], panics * (retries + 1), "{summary:?}");
    assert_eq!(summary["dead-lettered"], panics, "{summary:?}");
}

const SLOW: &str = "public/default/slow";
const SHOUT: &str = "public/default/shout";

#[test]
fn a_call_past_timeout_is_failed_and_does_not_block_others() {
    let slow_spec = r#"
name = "slow"
plugin = "panicky"
inputs = ["slow-in"]
output = "slow-out"
parallelism = 2
max_message_retries = 0
timeout_ms = 200
"#;
    let shout_spec = r#"
name = "shout"
plugin = "exclamation"
inputs = ["shout-in"]
output = "shout-out"
"#;
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("slow.toml", slow_spec), ("shout.toml", shout_spec)],
        &[(&fixture("panicky"), "libpanicky.so"), (&plugin("exclamation"), "libexclamation.so")],
        &[],
    );
    wait_running(&worker, SLOW);
    wait_running(&worker, SHOUT);
    for topic in ["slow-out", "slow-out-DLQ", "shout-out"] {
        worker.create_subscription(topic, "check");
    }

    let normal = 1000;
    let mut slow_lines = String::from("sleep 3000\n");
    for n in 0..normal {
        let _ = writeln!(slow_lines, "m {n}");
    }
    worker.produce("slow-in", slow_lines.as_bytes(), false);
    let shouted = 100;
    let shout_lines: String = (0..shouted).map(|n| format!("s {n}\n")).collect();
    worker.produce("shout-in", shout_lines.as_bytes(), false);

    // The watchdog fails the call; the instance stays unhealthy while the call still runs.
    worker.wait_until("the sleeping call times out", |worker| worker.total(SLOW, "timeouts_total") >= 1);
    assert!(!all_healthy(&worker, SLOW), "an instance in a timed-out call is unhealthy: {}", worker.function(SLOW));

    // Meanwhile the other function and the other instance answer.
    assert_eq!(worker.trigger_ok(SHOUT, "during"), "during!");
    assert_eq!(worker.trigger_ok(SLOW, "alive"), "ok:alive");
    assert!(
        !all_healthy(&worker, SLOW),
        "the sleeping call had returned before the triggers were answered, so this proves nothing: {}",
        worker.function(SLOW)
    );

    // The call returns; its instance is healthy again and takes messages again.
    worker.wait_until("the sleeping call returns", |worker| all_healthy(worker, SLOW));
    assert!(
        worker.log_text().contains("stuck call returned after its batch was taken back; instance healthy again"),
        "{}",
        worker.log_text()
    );
    assert_eq!(worker.trigger_ok(SLOW, "after"), "ok:after");

    // Every normal message, both triggers, and the dead letter of the sleeping one.
    let slow_outputs = normal + 2;
    let slow_acked = slow_outputs + 1;
    worker.wait_until("every slow input is acknowledged", |worker| worker.total(SLOW, "acked_total") >= slow_acked);
    let outputs = worker.consume("slow-out", "check", slow_outputs, false);
    let expected: HashSet<String> =
        (0..normal).map(|n| format!("ok:m {n}")).chain(["ok:alive".into(), "ok:after".into()]).collect();
    let received: HashSet<String> = outputs.iter().cloned().collect();
    assert_eq!(received.len(), outputs.len(), "an output came twice");
    assert_eq!(received, expected);
    assert_published_and_drained(&worker, "slow-out", "check", slow_outputs);

    let letters = parse_json_lines(&worker.consume("slow-out-DLQ", "check", 1, true));
    let [letter] = letters.as_slice() else { panic!("one dead letter expected: {letters:?}") };
    assert_eq!(letter["value"], "sleep 3000", "{letter}");
    let properties = &letter["properties"];
    assert_eq!(properties["pfn.dead_letter.reason"], "timeout", "{letter}");
    let error = properties["pfn.dead_letter.error"].as_str().unwrap_or_else(|| panic!("no error: {letter}"));
    assert!(error.contains("200 ms"), "{letter}");
    assert_eq!(properties["REAL_TOPIC"], "slow-in", "{letter}");
    assert_published_and_drained(&worker, "slow-out-DLQ", "check", 1);

    // With no retries, the timed-out message was called once and never again.
    assert_eq!(worker.total(SLOW, "timeouts_total"), 1, "{}", worker.function(SLOW));
    assert_eq!(worker.total(SLOW, "dead_lettered_total"), 1);
    assert_eq!(worker.total(SLOW, "outputs_total"), slow_outputs);
    assert!(all_healthy(&worker, SLOW));

    let message_id = properties["ORIGIN_MESSAGE_ID"].as_str().expect("origin message id");
    let log = worker.log_text();
    assert!(
        log.lines().any(|line| line.contains("timed out")
            && line.contains(SLOW)
            && line.contains(&format!("message_id={message_id}"))),
        "no timeout warning for message {message_id} of {SLOW}:\n{log}"
    );

    let shouts = worker.consume("shout-out", "check", shouted + 1, false);
    let expected: HashSet<String> = (0..shouted).map(|n| format!("s {n}!")).chain(["during!".into()]).collect();
    let received: HashSet<String> = shouts.iter().cloned().collect();
    assert_eq!(received.len(), shouts.len(), "a shout came twice");
    assert_eq!(received, expected);
    assert_published_and_drained(&worker, "shout-out", "check", shouted + 1);
}

#[test]
fn graceful_shutdown_mid_stream_drains_and_exits_zero() {
    let spec = r#"
name = "shout"
plugin = "exclamation"
inputs = ["in"]
output = "out"
parallelism = 2
"#;
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("shout.toml", spec)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &[],
    );
    wait_running(&worker, SHOUT);
    worker.create_subscription("out", "sink");

    // A consumer with no count and no idle timeout: it ends only when the worker stops.
    let consumer = worker
        .pfn()
        .args(["topics", "consume", "out", "-s", "sink"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pfn topics consume starts");
    let consumer = std::thread::spawn(move || consumer.wait_with_output().expect("consumer finishes"));

    // A producer that paces itself, so that the stream is still flowing when SIGTERM comes; it
    // stops at the first refusal once the worker is stopping.
    let messages: u64 = 200_000;
    let mut producer = worker.pfn();
    producer.args(["topics", "produce", "in"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let producer = std::thread::spawn(move || {
        let mut child = producer.spawn().expect("pfn topics produce starts");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut chunk = String::new();
        for start in (0..messages).step_by(1000) {
            chunk.clear();
            for n in start..(start + 1000).min(messages) {
                let _ = writeln!(chunk, "msg {n}");
            }
            if stdin.write_all(chunk.as_bytes()).and_then(|()| stdin.flush()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(stdin);
        child.wait_with_output().expect("producer finishes")
    });

    worker.wait_until("10,000 outputs are acknowledged", |worker| worker.total(SHOUT, "acked_total") > 10_000);
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exited with {status}; log:\n{log}");
    let consumed = consumer.join().expect("consumer thread");
    let produced = producer.join().expect("producer thread");
    let (_, consumer_stderr) = texts(&consumed);
    assert!(consumed.status.success(), "consumer failed: {consumer_stderr}");

    let summary = exit_summary(&log, SHOUT);
    let lines: Vec<&str> = std::str::from_utf8(&consumed.stdout).expect("UTF-8 outputs").lines().collect();
    eprintln!("stopped after {} of {messages} messages; producer: {}", lines.len(), texts(&produced).1.trim_end());
    assert_eq!(summary["acked"], lines.len() as u64, "acked inputs vs outputs the consumer got; log:\n{log}");
    assert_eq!(summary["outputs"], summary["acked"], "{summary:?}");
    assert!(lines.len() > 10_000, "SIGTERM came after 10,000 acks, yet only {} outputs arrived", lines.len());
    let mut seen = vec![false; messages as usize];
    for line in &lines {
        let n: usize = line
            .strip_prefix("msg ")
            .and_then(|rest| rest.strip_suffix('!'))
            .and_then(|n| n.parse().ok())
            .filter(|&n| n < messages as usize)
            .unwrap_or_else(|| panic!("output for no produced input: {line:?}"));
        assert!(!std::mem::replace(&mut seen[n], true), "output twice: {line:?}");
    }
    assert!(!log.contains("endpoint sessions still open at exit"), "{log}");
}

#[test]
fn an_invalid_spec_is_refused_and_the_others_run() {
    let bad = r#"
name = "bad"
plugin = "exclamation"
inputs = ["bad-in"]
output = "bad-out"
parallelism = 0
"#;
    let good = r#"
name = "good"
plugin = "exclamation"
inputs = ["good-in"]
output = "good-out"
"#;
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("bad.toml", bad), ("good.toml", good)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &[],
    );
    wait_running(&worker, "public/default/good");
    assert_eq!(worker.trigger_ok("public/default/good", "hello"), "hello!");

    let status = worker.status();
    let functions: Vec<&str> = status["functions"]
        .as_array()
        .expect("functions list")
        .iter()
        .map(|f| f["fqfn"].as_str().expect("fqfn"))
        .collect();
    assert_eq!(functions, ["public/default/good"], "{status}");
    let errors = status["spec_errors"].as_array().expect("spec_errors list");
    let [error] = errors.as_slice() else { panic!("one refused spec expected: {status}") };
    let error = error.as_str().expect("spec error text");
    assert!(error.contains("public/default/bad"), "the refused function is not named: {error}");
    assert!(error.contains("parallelism: must be at least 1"), "the bad field and reason are not named: {error}");

    let refused = worker.trigger("public/default/bad", "hello");
    assert!(!refused.status.success(), "a refused spec answered a trigger: {:?}", texts(&refused));
    assert!(texts(&refused).1.contains("no function public/default/bad"), "{:?}", texts(&refused));
}

#[test]
fn key_shared_keeps_each_keys_order_across_instances() {
    let spec = r#"
name = "keyed"
plugin = "exclamation"
inputs = ["keyed-in"]
output = "keyed-out"
parallelism = 3
retain_key_ordering = true
"#;
    let fqfn = "public/default/keyed";
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("keyed.toml", spec)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &[],
    );
    wait_running(&worker, fqfn);
    worker.create_subscription("keyed-out", "check");

    let (keys, per_key) = (10, 3000);
    let mut lines = String::new();
    for seq in 0..per_key {
        for key in 0..keys {
            let _ = writeln!(lines, r#"{{"value":"k{key}-{seq}","key":"k{key}"}}"#);
        }
    }
    worker.produce("keyed-in", lines.as_bytes(), true);
    let messages = (keys * per_key) as u64;
    worker.wait_until("every input is acknowledged", |worker| worker.total(fqfn, "acked_total") >= messages);

    let outputs = parse_json_lines(&worker.consume("keyed-out", "check", messages, true));
    assert_eq!(outputs.len() as u64, messages);
    let mut sequences: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for output in &outputs {
        let key = output["key"].as_str().unwrap_or_else(|| panic!("output lost its key: {output}"));
        let value = output["value"].as_str().unwrap_or_else(|| panic!("output without a text value: {output}"));
        let (value_key, seq) = value
            .strip_suffix('!')
            .and_then(|value| value.split_once('-'))
            .unwrap_or_else(|| panic!("unexpected output {output}"));
        assert_eq!(value_key, key, "{output}");
        sequences.entry(key.to_owned()).or_default().push(seq.parse().unwrap_or_else(|_| panic!("{output}")));
    }
    assert_eq!(sequences.len(), keys);
    let expected: Vec<u32> = (0..per_key as u32).collect();
    for (key, seqs) in &sequences {
        if let Some(pair) = seqs.windows(2).find(|pair| pair[0] >= pair[1]) {
            panic!("key {key}: {} came after {}", pair[1], pair[0]);
        }
        assert_eq!(seqs, &expected, "key {key}: outputs missing");
    }
    assert_published_and_drained(&worker, "keyed-out", "check", messages);

    let received = per_instance(&worker, fqfn, "received_total");
    assert_eq!(received.iter().sum::<u64>(), messages, "{received:?}");
    assert!(
        received.iter().filter(|&&n| n > 0).count() >= 2,
        "the keys all went to one instance, so the order across instances was not tested: {received:?}"
    );
}
