//! `pfn functions delete`: the function stops for good, its spec file goes, and its
//! subscription is deleted unless the spec says `cleanup_subscription = false`; on embedded
//! topics and on Pulsar, where a new subscription at `earliest` reads the topic again.

use std::{process::Output, time::Duration};

use pfn_tests::{
    fixtures::{fixture, plugin, scratch},
    pfn_cli::texts,
    pulsar_client::{PulsarPeer, TestConsumer},
    pulsar_functions::{IDLE, PulsarRig, SHOUT, number_of, numbered, shout_spec, start_shout},
    worker::RunningWorker,
};

/// `pfn functions delete FQFN` against `worker`.
fn delete(worker: &RunningWorker, fqfn: &str) -> Output {
    worker.pfn().args(["functions", "delete", fqfn]).output().expect("pfn functions delete")
}

/// Deletes `fqfn` and returns what the command printed.
fn delete_ok(worker: &RunningWorker, fqfn: &str) -> String {
    let output = delete(worker, fqfn);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "delete of {fqfn} failed: {stderr}");
    assert!(stderr.is_empty(), "delete of {fqfn} warned: {stderr}");
    stdout.trim_end().to_owned()
}

/// The names of `topic`'s subscriptions on the worker's embedded topics.
fn subscriptions(worker: &RunningWorker, topic: &str) -> Vec<String> {
    let stats = worker.topic_stats(topic);
    let list = stats["subscriptions"].as_array().unwrap_or_else(|| panic!("no subscriptions list: {stats}"));
    list.iter().map(|subscription| subscription["name"].as_str().expect("a name").to_owned()).collect()
}

#[test]
fn a_deleted_function_stops_and_takes_its_subscription_and_spec_file_unless_told_to_keep_the_subscription() {
    let spec = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\nplugin = \"exclamation\"\ninputs = [\"{name}-in\"]\noutput = \"{name}-out\"\n{extra}\n"
        )
    };
    let (cleaned, kept) = (spec("cleaned", ""), spec("kept", "cleanup_subscription = false"));
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("cleaned.toml", &cleaned), ("kept.toml", &kept)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &[],
    );
    for fqfn in ["public/default/cleaned", "public/default/kept"] {
        worker.wait_until(&format!("{fqfn} runs"), |worker| worker.function(fqfn)["state"] == "running");
    }
    assert_eq!(subscriptions(&worker, "cleaned-in"), ["public-default-cleaned"]);

    let printed = delete_ok(&worker, "public/default/cleaned");
    assert_eq!(printed, "deleted public/default/cleaned; subscription public-default-cleaned deleted");
    assert!(subscriptions(&worker, "cleaned-in").is_empty(), "the subscription is still there");
    assert!(!worker.functions_dir.join("cleaned.toml").exists(), "the spec file is still there");
    let listed: Vec<String> = worker.status()["functions"]
        .as_array()
        .expect("functions list")
        .iter()
        .map(|function| function["fqfn"].as_str().expect("fqfn").to_owned())
        .collect();
    assert_eq!(listed, ["public/default/kept"]);
    let again = delete(&worker, "public/default/cleaned");
    assert!(!again.status.success(), "a second delete succeeded");
    assert!(texts(&again).1.contains("no function public/default/cleaned"), "{:?}", texts(&again));

    let printed = delete_ok(&worker, "public/default/kept");
    assert_eq!(printed, "deleted public/default/kept; subscription public-default-kept kept");
    // The kept subscription goes on keeping what is published, as a Pulsar one would.
    worker.produce("kept-in", b"one\ntwo\n", false);
    let stats = worker.topic_stats("kept-in");
    let subscription = &stats["subscriptions"][0];
    assert_eq!(
        (subscription["name"].as_str(), subscription["backlog"].as_u64()),
        (Some("public-default-kept"), Some(2))
    );
    assert!(worker.status()["functions"].as_array().expect("functions list").is_empty());
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn a_call_still_running_when_its_function_is_deleted_publishes_nothing_and_its_inputs_stay() {
    let spec = "name = \"slow\"\nplugin = \"panicky\"\ninputs = [\"slow-in\"]\noutput = \"slow-out\"\n\
                cleanup_subscription = false\n";
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("slow.toml", spec)],
        &[(&fixture("panicky"), "libpanicky.so")],
        &["--grace-period-ms", "200"],
    );
    worker.wait_until("slow runs", |worker| worker.function("public/default/slow")["state"] == "running");
    worker.create_subscription("slow-out", "check");
    worker.produce("slow-in", b"sleep 1500\nafter\n", false);
    let in_flight = |worker: &RunningWorker| worker.topic_stats("slow-in")["subscriptions"][0]["unacked"].as_u64();
    worker.wait_until("the slow input is being processed", |worker| in_flight(worker).is_some_and(|n| n > 0));

    let deleted = delete(&worker, "public/default/slow");
    let (stdout, stderr) = texts(&deleted);
    assert!(deleted.status.success(), "delete failed: {stderr}");
    assert_eq!(stdout.trim_end(), "deleted public/default/slow; subscription public-default-slow kept");
    assert!(stderr.contains("were still in a call when the grace period ran out"), "no warning: {stderr}");
    worker.wait_until("the stuck call returned", |worker| worker.log_text().contains("stuck call returned"));
    assert_eq!(worker.topic_stats("slow-out")["published"], 0, "the deleted function published");
    let stats = worker.topic_stats("slow-in");
    let subscription = &stats["subscriptions"][0];
    assert_eq!(
        (subscription["backlog"].as_u64(), subscription["unacked"].as_u64(), subscription["consumers"].as_u64()),
        (Some(2), Some(0), Some(0)),
        "both inputs wait in the kept subscription, with no consumer: {stats}"
    );
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

/// Publishes inputs `range` to `input`.
fn publish(peer: &PulsarPeer, input: &str, range: std::ops::Range<usize>) {
    peer.produce(input, range.map(|i| numbered(i, 10)));
}

/// Reads outputs until `count` came, then checks that nothing more comes; returns their
/// input numbers, sorted.
fn read_numbers(reader: &mut TestConsumer<'_>, count: usize) -> Vec<usize> {
    let mut outputs = reader.receive(count, IDLE);
    outputs.extend(reader.receive(1, Duration::from_secs(2)));
    let mut numbers: Vec<usize> = outputs.iter().map(number_of).collect();
    numbers.sort_unstable();
    numbers
}

#[test]
fn on_pulsar_deleting_a_function_deletes_its_subscription_unless_cleanup_subscription_is_false() {
    let rig = PulsarRig::start();
    let PulsarRig { relay, input, output, peer, .. } = &rig;
    let mut reader = rig.reader();
    publish(peer, input, 0..100);

    // Kept: a new worker on the subscription goes on from where the deleted one stopped.
    let keep = shout_spec(input, output, "cleanup_subscription = false");
    let first_dir = scratch();
    let first = start_shout(first_dir.path(), relay, &keep);
    assert_eq!(read_numbers(&mut reader, 100), (0..100).collect::<Vec<_>>());
    first.wait_until("every input acknowledged", |worker| worker.total(SHOUT, "acked_total") == 100);
    assert_eq!(delete_ok(&first, SHOUT), "deleted public/default/shout; subscription public-default-shout kept");
    publish(peer, input, 100..110);
    let second_dir = scratch();
    let second = start_shout(second_dir.path(), relay, &shout_spec(input, output, ""));
    assert_eq!(read_numbers(&mut reader, 10), (100..110).collect::<Vec<_>>(), "the kept subscription restarted");
    second.wait_until("the new inputs acknowledged", |worker| worker.total(SHOUT, "acked_total") == 10);

    // Deleted: a new subscription of the same name starts again at the earliest input.
    assert_eq!(delete_ok(&second, SHOUT), "deleted public/default/shout; subscription public-default-shout deleted");
    let third_dir = scratch();
    let third = start_shout(third_dir.path(), relay, &shout_spec(input, output, ""));
    assert_eq!(read_numbers(&mut reader, 110), (0..110).collect::<Vec<_>>(), "the subscription was not deleted");
    for worker in [first, second, third] {
        let (status, log) = worker.terminate();
        assert!(status.success(), "worker exit: {status}\n{log}");
    }
}
