//! The process runtime on a real `pfn worker` and in `pfn run`: a plugin that aborts, exits,
//! segfaults, overflows its stack, panics while panicking, never returns or allocates too much
//! costs a restart of its child process, never the worker, and every other input comes out
//! exactly once.

use std::{
    collections::{BTreeMap, HashSet},
    fmt::Write as _,
    fs,
    process::Command,
    time::{Duration, Instant},
};

use pfn_tests::{
    fixtures::{fixture, scratch, sha256_of},
    metrics::{free_addr, parse, scrape},
    pfn_cli::{pfn, texts},
    worker::RunningWorker,
};
use serde_json::Value;

const ZOO: &str = "public/default/zoo";

/// Each zoo input, and what its dead letter says: the reason and a piece of the error.
const ZOO_INPUTS: [(&str, &str, &str); 7] = [
    ("abort", "crash", "SIGABRT"),
    ("exit 3", "crash", "exited with code 3"),
    ("null", "crash", "SIGSEGV"),
    ("overflow", "crash", "stack overflow"),
    ("double-panic", "crash", "SIGABRT"),
    ("alloc 1024", "crash", "memory allocation"),
    ("loop", "timeout", "timeout_ms = 500"),
];

fn zoo_spec(parallelism: u32) -> String {
    format!(
        "name = \"zoo\"\nplugin = \"zoo\"\ninputs = [\"zoo-in\"]\noutput = \"zoo-out\"\nruntime = \"process\"\n\
         parallelism = {parallelism}\nmax_message_retries = 1\ntimeout_ms = 500\n\
         [resources]\nram = 268435456\n"
    )
}

/// The pids of the `pfn instance-host` processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // After the command name, in parentheses: state, then the parent's pid.
        let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        let ppid = after_name.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<u32>().ok());
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent) && cmdline.split(|byte| *byte == 0).any(|arg| arg == b"instance-host") {
            children.push(pid);
        }
    }
    children
}

/// Whether process `pid` is gone (or a zombie waiting for its new parent to reap it).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn every_way_a_plugin_can_die_costs_a_restart_and_one_dead_letter() {
    let dir = scratch();
    let spec = zoo_spec(2);
    let worker = RunningWorker::start(dir.path(), &[("zoo.toml", &spec)], &[(&fixture("zoo"), "libzoo.so")], &[]);
    worker.wait_until("zoo runs", |worker| worker.function(ZOO)["state"] == "running");
    worker.create_subscription("zoo-out", "check");
    worker.create_subscription("zoo-out-DLQ", "check");

    let fine: u64 = 300;
    let mut lines = String::new();
    for n in 0..fine {
        let _ = writeln!(lines, "msg {n}");
        if n % 40 == 20 {
            let (input, _, _) = ZOO_INPUTS[(n / 40) as usize % ZOO_INPUTS.len()];
            let _ = writeln!(lines, "{input}");
        }
    }
    let zoo_inputs: Vec<&str> = lines.lines().filter(|line| !line.starts_with("msg ")).collect();
    assert_eq!(zoo_inputs.len(), ZOO_INPUTS.len(), "every zoo input once");
    let total = fine + zoo_inputs.len() as u64;
    worker.produce("zoo-in", lines.as_bytes(), false);
    worker.wait_until("every input is acknowledged", |worker| worker.total(ZOO, "acked_total") >= total);

    let outputs = worker.consume("zoo-out", "check", fine, false);
    let mut seen = HashSet::new();
    for line in &outputs {
        let n: u64 = line.strip_prefix("ok:msg ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        assert!(n < fine && seen.insert(n), "an output not sent or twice: {line:?}");
    }
    assert_eq!(seen.len() as u64, fine, "every fine input has its output");

    let letters: Vec<Value> = worker
        .consume("zoo-out-DLQ", "check", zoo_inputs.len() as u64, true)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON dead letter"))
        .collect();
    let by_value: BTreeMap<&str, &Value> =
        letters.iter().map(|letter| (letter["value"].as_str().expect("a text value"), letter)).collect();
    assert_eq!(by_value.len(), ZOO_INPUTS.len(), "one dead letter per zoo input: {letters:?}");
    for (input, reason, cause) in ZOO_INPUTS {
        let letter = by_value.get(input).unwrap_or_else(|| panic!("no dead letter for {input}: {letters:?}"));
        let properties = &letter["properties"];
        assert_eq!(properties["pfn.dead_letter.reason"], reason, "{letter}");
        let error = properties["pfn.dead_letter.error"].as_str().unwrap_or_default();
        assert!(error.contains(cause), "the error of {input} should name {cause:?}: {letter}");
        // Its retry went through the retry topic, which counted it and kept where it came from.
        assert_eq!(
            (properties["RECONSUMETIMES"].as_str(), properties["REAL_TOPIC"].as_str()),
            (Some("1"), Some("zoo-in"))
        );
    }

    // Each zoo input killed its child twice (once, then once more on its retry).
    let deaths = 2 * ZOO_INPUTS.len() as u64;
    assert_eq!(worker.total(ZOO, "restarts_total"), deaths, "{}", worker.function(ZOO));
    assert_eq!(worker.total(ZOO, "crashes_total"), deaths - 2, "{}", worker.function(ZOO));
    assert_eq!(worker.total(ZOO, "timeouts_total"), 2, "{}", worker.function(ZOO));
    assert_eq!(worker.total(ZOO, "system_exceptions_total"), deaths - 2, "{}", worker.function(ZOO));
    assert_eq!(worker.total(ZOO, "outputs_total"), fine);
    assert_eq!(worker.total(ZOO, "dead_lettered_total"), zoo_inputs.len() as u64);

    // State writes of calls that died, and of calls run again after a death, count once: the
    // counter of calls holds exactly the fine inputs, and this trigger.
    assert_eq!(worker.trigger_ok(ZOO, "count"), (fine + 1).to_string());
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exited with {status}; log:\n{log}");
    assert!(log.contains("instance process died; restarting it"), "{log}");
}

#[test]
fn a_killed_worker_leaves_no_child_behind() {
    let dir = scratch();
    let spec = zoo_spec(3);
    let worker = RunningWorker::start(dir.path(), &[("zoo.toml", &spec)], &[(&fixture("zoo"), "libzoo.so")], &[]);
    worker.wait_until("zoo runs", |worker| worker.function(ZOO)["state"] == "running");
    let pid = worker.pid().expect("the worker runs");
    let children = children_of(pid);
    assert_eq!(children.len(), 3, "one child per instance: {children:?}");
    // One child is busy in an endless call when its worker dies.
    worker.produce("zoo-in", b"loop\n", false);
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !children.iter().all(|child| gone(*child)) {
        assert!(Instant::now() < deadline, "children outlived their worker: {children:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stopping_worker_closes_its_children() {
    let dir = scratch();
    let spec = zoo_spec(2);
    let worker = RunningWorker::start(dir.path(), &[("zoo.toml", &spec)], &[(&fixture("zoo"), "libzoo.so")], &[]);
    worker.wait_until("zoo runs", |worker| worker.function(ZOO)["state"] == "running");
    let children = children_of(worker.pid().expect("the worker runs"));
    assert_eq!(children.len(), 2, "{children:?}");
    assert_eq!(worker.trigger_ok(ZOO, "hello"), "ok:hello");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exited with {status}; log:\n{log}");
    assert!(children.iter().all(|child| gone(*child)), "children left after a clean stop: {children:?}");
}

#[test]
fn each_child_gets_the_specs_resources_as_limits() {
    let dir = scratch();
    let spec = "name = \"zoo\"\nplugin = \"zoo\"\ninputs = [\"zoo-in\"]\nruntime = \"process\"\nparallelism = 2\n\
                [resources]\ncpu = 1\nram = 268435456\ndisk = 1048576\n";
    let worker = RunningWorker::start(dir.path(), &[("zoo.toml", spec)], &[(&fixture("zoo"), "libzoo.so")], &[]);
    worker.wait_until("zoo runs", |worker| worker.function(ZOO)["state"] == "running");
    let children = children_of(worker.pid().expect("the worker runs"));
    assert_eq!(children.len(), 2, "{children:?}");
    let mut cores = HashSet::new();
    for child in &children {
        let limits = fs::read_to_string(format!("/proc/{child}/limits")).expect("the child's limits");
        let limit = |name: &str| {
            let line = limits.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{limits}"));
            line[name.len()..].split_whitespace().next().unwrap_or_default().to_owned()
        };
        assert_eq!(limit("Max data size"), "268435456", "ram");
        assert_eq!(limit("Max file size"), "1048576", "disk");
        let status = fs::read_to_string(format!("/proc/{child}/status")).expect("the child's status");
        let allowed = status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:")).expect("cpus");
        cores.insert(allowed.trim().to_owned());
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus >= 2 {
        // One core each (cpu = 1), and not the same one: instances spread over the cores.
        assert_eq!(cores.len(), 2, "{cores:?}");
        assert!(cores.iter().all(|core| core.parse::<usize>().is_ok()), "one core each: {cores:?}");
    }
    assert_eq!(worker.trigger_ok(ZOO, "hello"), "ok:hello");
}

#[test]
fn a_child_process_records_user_metrics_on_the_workers_endpoint() {
    let dir = scratch();
    let addr = free_addr();
    let addr_text = addr.to_string();
    let spec = "name = \"gauge\"\nplugin = \"stateful\"\ninputs = [\"gauge-in\"]\nruntime = \"process\"\n";
    let worker = RunningWorker::start(
        dir.path(),
        &[("gauge.toml", spec)],
        &[(&fixture("stateful"), "libstateful.so")],
        &["--metrics-addr", &addr_text],
    );
    worker.wait_until("gauge runs", |worker| worker.function("public/default/gauge")["state"] == "running");
    worker.produce("gauge-in", b"metric size 5\nmetric size 7\nmetric size 9\n", false);
    worker.wait_until("three inputs acked", |worker| worker.total("public/default/gauge", "acked_total") == 3);
    let families = parse(&scrape(addr));
    let user = families.iter().find(|family| family.name == "pulsar_function_user_metric_").expect("user metrics");
    let value = |suffix: &str| -> f64 {
        user.samples.iter().filter(|sample| sample.name.ends_with(suffix)).map(|sample| sample.value).sum()
    };
    assert_eq!((value("_count"), value("_sum")), (3.0, 21.0), "{user:?}");
    let restarts =
        families.iter().find(|family| family.name == "pfn_instance_restarts").map(|family| family.samples.len());
    assert!(
        restarts.is_some(),
        "the restarts counter is exported: {:?}",
        families.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
}

#[test]
fn pfn_run_keeps_every_line_around_an_abort() {
    let dir = scratch();
    let input = dir.path().join("in.txt");
    let mut lines = String::new();
    for n in 0..1000 {
        let _ = writeln!(lines, "{}", if n == 500 { "abort".to_owned() } else { format!("line {n}") });
    }
    fs::write(&input, &lines).expect("input");
    let (output, dead) = (dir.path().join("out.txt"), dir.path().join("dead.jsonl"));
    let zoo = fixture("zoo");
    let run = pfn(dir.path())
        .args(["run", "--runtime", "process", "--log-level", "error", "--sha256"])
        .arg(sha256_of(&zoo).to_string())
        .arg("--plugin")
        .arg(&zoo)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--dead-letter")
        .arg(&dead)
        .output()
        .expect("pfn run");
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "pfn run failed: {stderr}");
    let outputs = fs::read_to_string(&output).expect("outputs");
    let expected: Vec<String> = (0..1000).filter(|n| *n != 500).map(|n| format!("ok:line {n}")).collect();
    assert_eq!(outputs.lines().collect::<Vec<_>>(), expected);
    let letters = fs::read_to_string(&dead).expect("dead letters");
    let letter: Value = serde_json::from_str(letters.trim()).expect("one dead letter");
    assert_eq!((letter["value"].as_str(), letter["reason"].as_str()), (Some("abort"), Some("crash")), "{letter}");
    assert!(letter["error"].as_str().is_some_and(|error| error.contains("SIGABRT")), "{letter}");
    assert!(stderr.contains("999 outputs") && stderr.contains("1 crashes"), "{stderr}");
}
