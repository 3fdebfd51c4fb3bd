//! `processing_guarantees = "manual"`: the function acknowledges its inputs through its
//! context (the manual-ack fixture holds back those starting with "hold"), on embedded topics
//! and on Pulsar, where a held input is redelivered to the next consumer of the subscription.

use std::{thread, time::Duration};

use pfn_tests::{
    fixtures::{fixture, scratch},
    pulsar_client::Outgoing,
    pulsar_functions::{ACKER, IDLE, PulsarRig, acker_spec, by_trailing_number, start_acker},
    worker::RunningWorker,
};

/// Long enough for a wrongly retried input to come round again: the test workers' nack
/// back-off is 10–100 ms.
const RETRY_WINDOW: Duration = Duration::from_secs(1);

#[test]
fn only_the_inputs_the_function_acknowledged_are_acknowledged_on_embedded_topics() {
    only_acknowledged_inputs_are_acknowledged("thread");
}

#[test]
fn a_child_process_acknowledges_as_a_thread_does() {
    only_acknowledged_inputs_are_acknowledged("process");
}

fn only_acknowledged_inputs_are_acknowledged(runtime: &str) {
    let spec = format!(
        "name = \"acker\"\nplugin = \"manual-ack\"\ninputs = [\"acker-in\"]\noutput = \"acker-out\"\n\
         processing_guarantees = \"manual\"\nruntime = \"{runtime}\"\n"
    );
    let dir = scratch();
    let worker = RunningWorker::start(
        dir.path(),
        &[("acker.toml", &spec)],
        &[(&fixture("manual-ack"), "libmanual_ack.so")],
        &[],
    );
    worker.wait_until("acker runs", |worker| worker.function(ACKER)["state"] == "running");
    worker.create_subscription("acker-out", "check");
    worker.produce("acker-in", b"one\nhold two\nthree\nerror four\nhold five\nsix\n", false);

    let outputs = worker.consume("acker-out", "check", 5, false);
    assert_eq!(outputs, ["acked:one", "held:hold two", "acked:three", "held:hold five", "acked:six"]);
    worker.wait_until("four inputs acknowledged", |worker| worker.total(ACKER, "acked_total") == 4);
    thread::sleep(RETRY_WINDOW);
    let total = |name: &str| worker.total(ACKER, name);
    assert_eq!(total("received_total"), 6, "an input the function acknowledged before failing was retried");
    assert_eq!((total("user_exceptions_total"), total("dead_lettered_total")), (1, 0));
    assert_eq!(total("acked_total"), 4, "only the function's acknowledgements count");

    let stats = worker.topic_stats("acker-in");
    let subscriptions = stats["subscriptions"].as_array().expect("subscriptions list");
    let [subscription] = subscriptions.as_slice() else { panic!("one subscription expected: {stats}") };
    assert_eq!(subscription["unacked"], 2, "the two held inputs stay unacknowledged: {stats}");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn inputs_the_function_did_not_acknowledge_are_redelivered_on_pulsar_after_a_restart() {
    const COUNT: usize = 500;
    let is_held = |i: usize| i % 10 == 3;
    let rig = PulsarRig::start();
    let PulsarRig { relay, input, output, peer, .. } = &rig;
    let mut reader = rig.reader();
    peer.produce(
        input,
        (0..COUNT).map(|i| Outgoing::text(if is_held(i) { format!("hold {i}") } else { format!("take {i}") })),
    );
    let held: Vec<String> = (0..COUNT).filter(|&i| is_held(i)).map(|i| format!("held:hold {i}")).collect();
    let spec = acker_spec(input, output);

    let first_dir = scratch();
    let first = start_acker(first_dir.path(), relay, &spec);
    let outputs = reader.receive(COUNT, IDLE);
    assert_eq!(outputs.len(), COUNT, "one output per input");
    let acked = (COUNT - held.len()) as u64;
    first.wait_until("the taken inputs acknowledged", |worker| worker.total(ACKER, "acked_total") == acked);
    let (status, log) = first.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");

    // The same subscription again: the broker still owes it exactly the held inputs.
    let second_dir = scratch();
    let second = start_acker(second_dir.path(), relay, &spec);
    let mut again: Vec<String> = reader.receive(held.len(), IDLE).iter().map(|output| output.text()).collect();
    again.extend(reader.receive(1, RETRY_WINDOW).iter().map(|output| output.text()));
    assert_eq!(by_trailing_number(again), held, "the second worker got other inputs than the held ones");
    assert_eq!(second.total(ACKER, "acked_total"), 0, "held inputs were acknowledged");
    let (status, log) = second.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}
