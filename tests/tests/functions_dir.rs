//! The functions directory is the source of truth: a spec file dropped, edited or removed by
//! hand creates, updates or deletes its function on a running worker. An update disturbs only
//! what it must: a log level, user config or parallelism applies with no input lost or
//! processed twice, a new input restarts only that function, and a spec that does not validate
//! is refused with every bad field while the function runs on as it was.

use std::{collections::BTreeMap, fs, path::Path, thread, time::Duration};

use pfn_tests::{
    fixtures::{fixture, plugin, scratch},
    worker::RunningWorker,
};

const SHOUT: &str = "public/default/shout";
const TYPED: &str = "public/default/typed";

fn shout_spec(parallelism: u32, extra: &str) -> String {
    format!(
        "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"shout-in\"]\noutput = \"shout-out\"\n\
         parallelism = {parallelism}\n{extra}\n"
    )
}

fn typed_spec(inputs: &str, label: &str) -> String {
    format!(
        "name = \"typed\"\nplugin = \"stateful\"\ninputs = [{inputs}]\noutput = \"typed-out\"\n[user_config]\nlabel = \"{label}\"\n"
    )
}

/// Replaces a spec file as an editor or a deployment tool does: a new file renamed over it.
fn replace(dir: &Path, file: &str, text: &str) {
    let partial = dir.join(format!(".{file}.partial"));
    fs::write(&partial, text).expect("write spec");
    fs::rename(&partial, dir.join(file)).expect("rename spec");
}

/// How many times the worker logged `needle` so far.
fn logged(worker: &RunningWorker, needle: &str) -> usize {
    worker.log_text().matches(needle).count()
}

/// Waits until the worker logged one more update of `fqfn` than `before`.
fn wait_for_update(worker: &RunningWorker, fqfn: &str, before: usize) {
    let needle = format!("fqfn={fqfn} how=");
    worker.wait_until(&format!("{fqfn} is updated"), |worker| logged(worker, &needle) > before);
}

fn instances(worker: &RunningWorker, fqfn: &str) -> usize {
    worker.function(fqfn)["instances"].as_array().map_or(0, Vec::len)
}

/// Produces `count` numbered lines (`{prefix}{n}`) to `topic` in chunks, pausing between them.
fn produce_numbered(worker: &RunningWorker, topic: &str, prefix: &str, count: usize) -> Vec<String> {
    let lines: Vec<String> = (0..count).map(|n| format!("{prefix}{n}")).collect();
    for chunk in lines.chunks(50) {
        worker.produce(topic, format!("{}\n", chunk.join("\n")).as_bytes(), false);
        thread::sleep(Duration::from_millis(20));
    }
    lines
}

fn counted(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    counts
}

#[test]
fn a_spec_file_dropped_edited_and_removed_creates_updates_and_deletes_its_function() {
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[],
        &[(&plugin("exclamation"), "libexclamation.so"), (&fixture("stateful"), "libstateful.so")],
        &[],
    );
    let functions = worker.functions_dir.clone();

    // Dropped: the function is created and runs, on the worker that was already running.
    replace(&functions, "shout.toml", &shout_spec(1, ""));
    worker.wait_until("shout runs", |worker| {
        worker.status()["functions"].as_array().is_some_and(|list| !list.is_empty())
            && worker.function(SHOUT)["state"] == "running"
    });
    worker.create_subscription("shout-out", "check");

    // Edited under load: parallelism up, then down, then the log level; nothing lost or doubled.
    let sent = thread::scope(|scope| {
        let producing = scope.spawn(|| produce_numbered(&worker, "shout-in", "m", 1500));
        for (parallelism, extra) in [(3, ""), (1, ""), (1, "log_level = \"debug\"")] {
            let before = logged(&worker, &format!("fqfn={SHOUT} how="));
            replace(&functions, "shout.toml", &shout_spec(parallelism, extra));
            wait_for_update(&worker, SHOUT, before);
            assert_eq!(instances(&worker, SHOUT), parallelism as usize);
            thread::sleep(Duration::from_millis(150));
        }
        producing.join().expect("producer")
    });
    let outputs = worker.consume("shout-out", "check", sent.len() as u64, false);
    let expected: Vec<String> = sent.iter().map(|line| format!("{line}!")).collect();
    let (got, wanted) = (counted(&outputs), counted(&expected));
    assert_eq!(got, wanted, "outputs differ from one per input");
    let log = worker.log_text();
    for how in ["parallelism 1 -> 3 applied live", "parallelism 3 -> 1 applied live", "log level applied live"] {
        assert!(log.contains(how), "no update said {how:?}");
    }
    assert!(!log.contains(&format!("fqfn={SHOUT} how=restarted")), "a live update restarted the function");

    // A spec that does not validate is refused with every bad field; the function runs as it was.
    let broken = "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"shout-in\"]\noutput = \"shout-in\"\n\
                  parallelism = 0\nlog_level = \"loud\"\nprocessing_guarantees = \"ATLEAST_ONCE\"\n";
    replace(&functions, "shout.toml", broken);
    worker.wait_until("the broken spec is refused", |worker| {
        worker.status()["spec_errors"].as_array().is_some_and(|errors| !errors.is_empty())
    });
    let errors = worker.status()["spec_errors"].to_string();
    assert!(errors.contains("shout.toml"), "{errors}");
    for field in ["output:", "parallelism:", "log_level:"] {
        assert!(errors.contains(field), "{field} is not named: {errors}");
    }
    worker.produce("shout-in", b"still here\n", false);
    assert_eq!(worker.consume("shout-out", "check", 1, false), ["still here!"]);
    assert_eq!(worker.function(SHOUT)["state"], "running");

    // Removed: the function is deleted with its subscription.
    fs::remove_file(functions.join("shout.toml")).expect("remove spec");
    worker.wait_until("shout is deleted", |worker| {
        worker.status()["functions"].as_array().is_some_and(|list| list.iter().all(|f| f["fqfn"] != SHOUT))
    });
    assert!(worker.status()["spec_errors"].as_array().is_some_and(Vec::is_empty), "the refusal outlived its file");
    let stats = worker.topic_stats("shout-in");
    assert!(stats["subscriptions"].as_array().is_some_and(Vec::is_empty), "subscription left: {stats}");
}

#[test]
fn user_config_applies_between_two_messages_and_a_new_input_restarts_only_its_function() {
    let dir = scratch();
    let mut worker = RunningWorker::start(
        dir.path(),
        &[("typed.toml", &typed_spec("\"typed-in\"", "hot")), ("shout.toml", &shout_spec(1, ""))],
        &[(&plugin("exclamation"), "libexclamation.so"), (&fixture("stateful"), "libstateful.so")],
        &[],
    );
    for fqfn in [TYPED, SHOUT] {
        worker.wait_until(&format!("{fqfn} runs"), |worker| worker.function(fqfn)["state"] == "running");
    }
    worker.create_subscription("typed-out", "check");
    let functions = worker.functions_dir.clone();

    // Under load, the label changes from hot to cold: every input is answered once, by one of
    // the two configurations, and everything sent after the update reads the new one.
    let ask = "config label string";
    let sent = thread::scope(|scope| {
        let producing = scope.spawn(|| {
            let asks: Vec<String> = (0..600).map(|_| ask.to_owned()).collect();
            for chunk in asks.chunks(50) {
                worker.produce("typed-in", format!("{}\n", chunk.join("\n")).as_bytes(), false);
                thread::sleep(Duration::from_millis(20));
            }
            asks.len()
        });
        let before = logged(&worker, &format!("fqfn={TYPED} how="));
        replace(&functions, "typed.toml", &typed_spec("\"typed-in\"", "cold"));
        wait_for_update(&worker, TYPED, before);
        producing.join().expect("producer")
    });
    worker.produce("typed-in", format!("{ask}\n").as_bytes(), false);
    let outputs = worker.consume("typed-out", "check", sent as u64 + 1, false);
    assert_eq!(outputs.len(), sent + 1, "an input was lost");
    let (hot, cold) = ("Some(\"hot\")", "Some(\"cold\")");
    assert!(outputs.iter().all(|output| output == hot || output == cold), "{outputs:?}");
    assert_eq!(outputs.last().map(String::as_str), Some(cold), "the update did not apply");
    assert!(worker.log_text().contains(&format!("fqfn={TYPED} how=configuration applied live")));

    // A new input restarts typed alone: shout keeps its instance and its counts.
    worker.produce("shout-in", b"one\ntwo\n", false);
    worker.wait_until("shout processed two", |worker| worker.total(SHOUT, "processed_successfully_total") == 2);
    let before = logged(&worker, &format!("fqfn={TYPED} how="));
    replace(&functions, "typed.toml", &typed_spec("\"typed-in\", \"typed-more\"", "cold"));
    wait_for_update(&worker, TYPED, before);
    assert!(worker.log_text().contains(&format!("fqfn={TYPED} how=restarted")));
    worker.wait_until("typed runs again", |worker| worker.function(TYPED)["state"] == "running");
    worker.produce("typed-more", format!("{ask}\n").as_bytes(), false);
    assert_eq!(worker.consume("typed-out", "check", 1, false), [cold]);
    assert_eq!(worker.total(SHOUT, "processed_successfully_total"), 2, "shout was restarted too");

    // The worker restarted finds its functions again, as the files say.
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker failed: {log}");
    worker = RunningWorker::start(dir.path(), &[], &[], &[]);
    for fqfn in [TYPED, SHOUT] {
        worker.wait_until(&format!("{fqfn} runs again"), |worker| worker.function(fqfn)["state"] == "running");
    }
    assert_eq!(worker.function(TYPED)["inputs"], serde_json::json!(["typed-in", "typed-more"]));
}
