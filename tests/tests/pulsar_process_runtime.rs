//! The process runtime on Pulsar: the zoo's inputs each cost restarts and one dead letter while
//! every other input comes out, and a poison message shared by two workers of one subscription
//! is dead-lettered once, after as many kills in all as the retries allow, on whichever worker.

use std::collections::BTreeMap;

use pfn_tests::{
    fixtures::scratch,
    pulsar_client::{Outgoing, Received},
    pulsar_functions::{IDLE, PulsarRig, ZOO, start_zoo, wait_subscribed, zoo_spec},
};

/// The zoo's inputs and what their dead letters say: reason, and a piece of the error.
const ZOO_INPUTS: [(&str, &str, &str); 5] = [
    ("abort", "crash", "SIGABRT"),
    ("exit 3", "crash", "exited with code 3"),
    ("null", "crash", "SIGSEGV"),
    ("overflow", "crash", "stack overflow"),
    ("loop", "timeout", "timeout_ms = 500"),
];

fn fine(i: usize) -> Outgoing {
    Outgoing::text(format!("msg {i}"))
}

/// The numbers of the `ok:msg N` outputs, each once, or the test fails.
fn distinct_numbers(outputs: &[Received]) -> Vec<usize> {
    let mut numbers: Vec<usize> = outputs
        .iter()
        .map(|output| {
            output.text().strip_prefix("ok:msg ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{output:?}"))
        })
        .collect();
    numbers.sort_unstable();
    let before = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), before, "an output came twice");
    numbers
}

#[test]
fn the_zoo_on_pulsar_costs_restarts_and_one_dead_letter_each() {
    const FINE: usize = 300;
    let rig = PulsarRig::start();
    let spec = zoo_spec(&rig.input, &rig.output, "parallelism = 2\nmax_message_retries = 1\ntimeout_ms = 500");
    let dir = scratch();
    let worker = start_zoo(dir.path(), &rig.relay, &spec);
    wait_subscribed(&worker, 2);
    let mut messages: Vec<Outgoing> = (0..FINE).map(fine).collect();
    for (at, (input, _, _)) in ZOO_INPUTS.iter().enumerate() {
        messages.insert(50 * (at + 1), Outgoing::text(*input));
    }
    rig.peer.produce(&rig.input, messages);

    let outputs = rig.reader().receive(FINE, IDLE);
    assert_eq!(distinct_numbers(&outputs), (0..FINE).collect::<Vec<_>>());
    let letters = rig.dead_letters().receive(ZOO_INPUTS.len(), IDLE);
    let by_value: BTreeMap<String, &Received> = letters.iter().map(|letter| (letter.text(), letter)).collect();
    assert_eq!(by_value.len(), ZOO_INPUTS.len(), "one dead letter per zoo input: {letters:?}");
    for (input, reason, cause) in ZOO_INPUTS {
        let letter = by_value.get(input).unwrap_or_else(|| panic!("no dead letter for {input}: {letters:?}"));
        assert_eq!(letter.properties.get("pfn.dead_letter.reason").map(String::as_str), Some(reason), "{letter:?}");
        let error = letter.properties.get("pfn.dead_letter.error").cloned().unwrap_or_default();
        assert!(error.contains(cause), "the error of {input} should name {cause:?}: {letter:?}");
        assert_eq!(letter.properties.get("REAL_TOPIC"), Some(&rig.input), "{letter:?}");
    }
    let kills = 2 * ZOO_INPUTS.len() as u64;
    worker.wait_until("every kill is counted", |worker| worker.total(ZOO, "restarts_total") >= kills);
    assert_eq!(worker.total(ZOO, "restarts_total"), kills, "{}", worker.function(ZOO));
    assert_eq!(worker.total(ZOO, "outputs_total"), FINE as u64);
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exited with {status}; log:\n{log}");
}

#[test]
fn two_workers_share_a_poison_messages_count_of_kills() {
    const FINE: usize = 400;
    const RETRIES: u64 = 3;
    let rig = PulsarRig::start();
    let spec = zoo_spec(&rig.input, &rig.output, &format!("max_message_retries = {RETRIES}"));
    let (dir_a, dir_b) = (scratch(), scratch());
    let workers = [start_zoo(dir_a.path(), &rig.relay, &spec), start_zoo(dir_b.path(), &rig.relay, &spec)];
    for worker in &workers {
        wait_subscribed(worker, 1);
    }
    let mut messages: Vec<Outgoing> = (0..FINE).map(fine).collect();
    messages.insert(FINE / 2, Outgoing::text("abort"));
    rig.peer.produce(&rig.input, messages);

    let outputs = rig.reader().receive(FINE, IDLE);
    assert_eq!(distinct_numbers(&outputs), (0..FINE).collect::<Vec<_>>());
    let letters = rig.dead_letters().receive(2, std::time::Duration::from_secs(5));
    assert_eq!(letters.len(), 1, "the poison message is dead-lettered once: {letters:?}");
    assert_eq!(letters[0].text(), "abort");
    assert_eq!(letters[0].properties.get("pfn.dead_letter.reason").map(String::as_str), Some("crash"));
    // It killed a child once, then once per retry: in all, not per worker.
    let kills = |worker: &pfn_tests::worker::RunningWorker| worker.total(ZOO, "restarts_total");
    let total: u64 = workers.iter().map(kills).sum();
    assert_eq!(total, RETRIES + 1, "kills per worker: {:?}", workers.iter().map(kills).collect::<Vec<_>>());
    assert!(workers.iter().all(|worker| worker.total(ZOO, "received_total") > 0), "both workers took a share");
    for worker in workers {
        let (status, log) = worker.terminate();
        assert!(status.success(), "worker exited with {status}; log:\n{log}");
    }
}
