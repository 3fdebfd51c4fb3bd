//! Hot reload in a real `pfn worker`: higher versions are swapped in under load with no lost or
//! doubled message, refused files leave the running version serving, and a new version that
//! fails where the old one did not is rolled back.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::Write,
    process::{Child, Stdio},
};

use pfn_tests::{
    fixtures::{hand_built, scratch, sha256_of, versioned},
    worker::RunningWorker,
};

const FQFN: &str = "public/default/versioned";

fn spec(extra: &str) -> String {
    format!(
        "name = \"versioned\"\nplugin = \"versioned\"\ninputs = [\"in\"]\noutput = \"out\"\nparallelism = 2\n{extra}"
    )
}

/// A `pfn topics produce in` child fed in chunks, so the stream runs while the test acts.
struct Stream {
    child: Child,
    next: u64,
}

impl Stream {
    fn start(worker: &RunningWorker) -> Self {
        let child = worker
            .pfn()
            .args(["topics", "produce", "in"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pfn topics produce starts");
        Self { child, next: 0 }
    }

    /// Sends the next `count` messages, `m<n>`.
    fn send(&mut self, count: u64) {
        let mut chunk = String::new();
        for n in self.next..self.next + count {
            chunk.push_str(&format!("m{n}\n"));
        }
        self.next += count;
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(chunk.as_bytes()).expect("producer accepts input");
        stdin.flush().expect("flush");
    }

    /// Sends chunks of `count` until `done` holds (at most `limit` messages in all).
    fn send_until(&mut self, worker: &RunningWorker, count: u64, limit: u64, done: impl Fn(&RunningWorker) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !done(worker) {
            assert!(std::time::Instant::now() < deadline, "condition never held; log:\n{}", worker.log_text());
            if self.next < limit {
                self.send(count);
            } else {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().expect("producer exits").success());
    }
}

/// Whether every instance of the function runs `version`.
fn all_on(worker: &RunningWorker, version: &str) -> bool {
    let function = worker.function(FQFN);
    let instances = function["instances"].as_array().expect("instances");
    !instances.is_empty() && instances.iter().all(|instance| instance["version"] == version)
}

/// One output line: `m<n> from v<version> on <instance>`.
fn parse(line: &str) -> (u64, String, u32) {
    let (input, rest) = line.split_once(" from v").unwrap_or_else(|| panic!("unexpected output {line:?}"));
    let (version, instance) = rest.split_once(" on ").unwrap_or_else(|| panic!("unexpected output {line:?}"));
    let number = input.strip_prefix('m').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("input {input:?}"));
    (number, version.to_owned(), instance.parse().unwrap_or_else(|_| panic!("instance {instance:?}")))
}

/// Checks that every input `m0..m<total>` has exactly one output and returns the versions
/// each instance went through, in order.
fn check_outputs(outputs: &[String], total: u64) -> BTreeMap<u32, Vec<String>> {
    assert_eq!(outputs.len() as u64, total, "one output per input");
    let mut seen = HashSet::new();
    let mut last_input: BTreeMap<u32, u64> = BTreeMap::new();
    let mut versions: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for line in outputs {
        let (number, version, instance) = parse(line);
        assert!(number < total && seen.insert(number), "input m{number} answered twice or unknown");
        if let Some(previous) = last_input.insert(instance, number) {
            assert!(previous < number, "instance {instance} answered m{number} after m{previous}");
        }
        let order = versions.entry(instance).or_default();
        if order.last() != Some(&version) {
            assert!(!order.contains(&version), "instance {instance} went back to v{version}: {order:?}");
            order.push(version);
        }
    }
    versions
}

#[test]
fn higher_versions_are_swapped_in_under_load_without_losing_a_message() {
    swapped_in_under_load("");
}

#[test]
fn child_processes_are_swapped_to_higher_versions_without_losing_a_message() {
    swapped_in_under_load("runtime = \"process\"\n");
}

fn swapped_in_under_load(runtime: &str) {
    let scratch = scratch();
    let spec = spec(runtime);
    let v1 = versioned("1.0.0");
    let worker =
        RunningWorker::start(scratch.path(), &[("versioned.toml", &spec)], &[(&v1, "libversioned-1.0.0.so")], &[]);
    worker.create_subscription("out", "check");
    let total = 100_000;
    let mut stream = Stream::start(&worker);
    stream.send(30_000);
    worker.wait_until("some messages are processed", |w| w.total(FQFN, "acked_total") > 10_000);
    worker.install_plugin(&versioned("1.1.0"), "libversioned-1.1.0.so");
    // Leave at least 10,000 messages for each version after its switch.
    stream.send_until(&worker, 1_000, 50_000, |w| all_on(w, "1.1.0"));
    stream.send(60_000u64.saturating_sub(stream.next));
    worker.install_plugin(&versioned("1.2.0"), "libversioned-1.2.0.so");
    stream.send_until(&worker, 1_000, total - 10_000, |w| all_on(w, "1.2.0"));
    stream.send(total - stream.next);
    stream.finish();

    let outputs = worker.consume("out", "check", total, false);
    let versions = check_outputs(&outputs, total);
    assert_eq!(versions.len(), 2, "both instances answered: {versions:?}");
    for (instance, order) in &versions {
        assert_eq!(order.first().map(String::as_str), Some("1.0.0"), "instance {instance}: {order:?}");
        assert_eq!(order.last().map(String::as_str), Some("1.2.0"), "instance {instance}: {order:?}");
    }
    let function = worker.function(FQFN);
    let reloads: Vec<(&str, &str)> = function["reloads"]
        .as_array()
        .expect("reloads")
        .iter()
        .map(|r| (r["from"].as_str().expect("from"), r["to"].as_str().expect("to")))
        .collect();
    assert_eq!(reloads, [("1.0.0", "1.1.0"), ("1.1.0", "1.2.0")]);
    assert!(function["reloads"][0]["memory_cost_kib"].is_u64(), "memory cost reported: {function}");
    assert_eq!(worker.total(FQFN, "user_exceptions_total"), 0);
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("plugin reloaded"), "{log}");
}

#[test]
fn refused_files_leave_the_running_version_serving() {
    let scratch = scratch();
    let spec = spec("user_config = { panic_in_init_of = \"1.1.0\" }\n");
    let v1 = versioned("1.0.0");
    let worker =
        RunningWorker::start(scratch.path(), &[("versioned.toml", &spec)], &[(&v1, "libversioned-1.0.0.so")], &[]);
    worker.create_subscription("out", "check");
    let refusals = |w: &RunningWorker| w.function(FQFN)["refusals"].as_array().map_or(0, Vec::len);
    let mut stream = Stream::start(&worker);
    stream.send(5_000);

    // A tampered file: the manifest pins other bytes.
    let staged = worker.stage(&versioned("1.1.0"), "libversioned-tampered.so");
    let mut bytes = fs::read(&staged).expect("staged plugin");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::copy(
        staged.with_file_name("libversioned-tampered.pfn.toml"),
        worker.plugins_dir.join("libversioned-tampered.pfn.toml"),
    )
    .expect("manifest");
    fs::write(worker.plugins_dir.join("libversioned-tampered.so"), &bytes).expect("tampered plugin");
    stream.send_until(&worker, 500, 200_000, |w| refusals(w) >= 1);

    // An older (here: equal) version under another name.
    worker.install_plugin(&v1, "libversioned-copy.so");
    stream.send_until(&worker, 500, 200_000, |w| refusals(w) >= 2);

    // An incompatible ABI, pinned as a higher version of this plugin.
    let future = hand_built("future-abi");
    fs::write(
        worker.plugins_dir.join("libversioned-future.pfn.toml"),
        format!("name = \"versioned\"\nversion = \"1.5.0\"\nsha256 = \"{}\"\n", sha256_of(&future)),
    )
    .expect("manifest");
    fs::copy(&future, worker.plugins_dir.join("libversioned-future.so")).expect("future-abi plugin");
    stream.send_until(&worker, 500, 200_000, |w| refusals(w) >= 3);

    // A version whose init panics.
    worker.install_plugin(&versioned("1.1.0"), "libversioned-1.1.0.so");
    stream.send_until(&worker, 500, 200_000, |w| refusals(w) >= 4);

    // A half-copied file: refused while it sits half-written, taken once the copy completes.
    let staged = worker.stage(&versioned("1.2.0"), "libversioned-1.2.0.so");
    let bytes = fs::read(&staged).expect("staged plugin");
    fs::copy(
        staged.with_file_name("libversioned-1.2.0.pfn.toml"),
        worker.plugins_dir.join("libversioned-1.2.0.pfn.toml"),
    )
    .expect("manifest");
    let target = worker.plugins_dir.join("libversioned-1.2.0.so");
    fs::write(&target, &bytes[..bytes.len() / 2]).expect("first half");
    stream.send_until(&worker, 500, 200_000, |w| refusals(w) >= 5);
    assert!(all_on(&worker, "1.0.0"), "still serving with the old version");
    fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .expect("reopen")
        .write_all(&bytes[bytes.len() / 2..])
        .expect("rest");
    stream.send_until(&worker, 500, 200_000, |w| all_on(w, "1.2.0"));
    stream.send(1_000);
    let total = stream.next;
    stream.finish();

    let outputs = worker.consume("out", "check", total, false);
    if outputs.len() as u64 != total {
        for topic in ["in", "out"] {
            eprintln!("{}", worker.topic_stats(topic));
        }
        eprintln!("{}", worker.function(FQFN));
    }
    let versions = check_outputs(&outputs, total);
    // Each instance went from 1.0.0 to 1.2.0 (one that got no message after the switch shows
    // only 1.0.0); no refused version ever answered.
    for order in versions.values() {
        let order: Vec<&str> = order.iter().map(String::as_str).collect();
        assert!(order == ["1.0.0", "1.2.0"] || order == ["1.0.0"], "{order:?}");
    }
    assert!(versions.values().any(|order| order.len() == 2), "{versions:?}");
    let function = worker.function(FQFN);
    let reasons: Vec<&str> = function["refusals"]
        .as_array()
        .expect("refusals")
        .iter()
        .map(|r| r["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:#?}");
    assert!(reasons[0].contains("sha256 mismatch") || reasons[0].contains("expected"), "tampered: {}", reasons[0]);
    assert!(reasons[1].contains("not higher than the running 1.0.0"), "older: {}", reasons[1]);
    assert!(reasons[2].contains("2.0.0"), "ABI: {}", reasons[2]);
    assert!(reasons[3].contains("init of v1.1.0 was told to panic"), "init: {}", reasons[3]);
    assert!(reasons[4].contains("libversioned-1.2.0.so"), "half-copied: {}", reasons[4]);
    let log = worker.log_text();
    assert_eq!(log.matches("plugin refused").count(), 5, "{log}");
    assert_eq!(worker.total(FQFN, "user_exceptions_total"), 0);
}

#[test]
fn a_new_version_that_fails_where_the_old_did_not_is_rolled_back() {
    rolled_back_when_failing("");
}

#[test]
fn a_new_version_in_child_processes_that_fails_is_rolled_back() {
    rolled_back_when_failing("runtime = \"process\"\n");
}

fn rolled_back_when_failing(runtime: &str) {
    let scratch = scratch();
    let spec = spec(&format!("user_config = {{ fail_in = \"1.1.0\" }}\n{runtime}"));
    let v1 = versioned("1.0.0");
    let worker = RunningWorker::start(
        scratch.path(),
        &[("versioned.toml", &spec)],
        &[(&v1, "libversioned-1.0.0.so")],
        &["--rollback-after", "3"],
    );
    worker.create_subscription("out", "check");
    worker.create_subscription("versioned-DLQ", "check");
    let mut stream = Stream::start(&worker);
    stream.send(2_000);
    worker.install_plugin(&versioned("1.1.0"), "libversioned-1.1.0.so");
    let rolled_back = |w: &RunningWorker| w.function(FQFN)["reloads"][0]["rolled_back"].is_string();
    stream.send_until(&worker, 200, 200_000, |w| rolled_back(w) && all_on(w, "1.0.0"));
    stream.send(2_000);
    worker.install_plugin(&versioned("1.2.0"), "libversioned-1.2.0.so");
    stream.send_until(&worker, 200, 200_000, |w| all_on(w, "1.2.0"));
    stream.send(1_000);
    let total = stream.next;
    stream.finish();

    let outputs = worker.consume("out", "check", total, false);
    let versions = check_outputs(&outputs, total);
    for order in versions.values() {
        assert!(!order.contains(&"1.1.0".to_owned()), "no output from the failing version: {order:?}");
    }
    assert!(worker.consume("versioned-DLQ", "check", 1, false).is_empty(), "nothing dead-lettered");
    let function = worker.function(FQFN);
    let reason = function["reloads"][0]["rolled_back"].as_str().expect("rollback reason");
    assert!(reason.contains("v1.1.0 was told to fail"), "{reason}");
    assert_eq!(function["version"], "1.2.0");
    assert!(worker.log_text().contains("rolled back"));
}
