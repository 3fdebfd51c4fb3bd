//! `pfn worker --pulsar-url` against pulsar-lite (through the test relay): functions on real
//! Pulsar topics, fed and read by an external client: throughput, acknowledgements that wait for
//! the broker's receipts, a broker crash, dead letters, and a broker that is down at start.

use std::{
    collections::HashMap,
    fs,
    net::TcpListener,
    process::Command,
    sync::atomic::AtomicUsize,
    thread,
    time::{Duration, Instant},
};

use pfn_tests::{
    broker::TestBroker,
    fixtures::scratch,
    pulsar_client::{Outgoing, PulsarPeer, unique_topic},
    pulsar_functions::{
        IDLE, PANICKY, PulsarRig, SHOUT, Tally, consumer_outages, launch_shout, number_of, numbered, panicky_spec,
        read_into, seq_of, shout_spec, start_panicky, start_shout, tally, wait_subscribed,
    },
    relay::Relay,
    worker::WorkerDirs,
};

#[test]
fn every_input_of_50_000_has_exactly_one_output_with_its_key_properties_and_event_time() {
    const COUNT: usize = 50_000;
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let dir = scratch();
    let worker = start_shout(dir.path(), &relay, &shout_spec(&input, &output, ""));

    let peer = PulsarPeer::connect(&relay.url());
    let mut reader = peer.subscribe(&output, "check");
    peer.produce(&input, (0..COUNT).map(|i| numbered(i, 100)));
    let outputs = reader.receive(COUNT, Duration::from_secs(60));
    // Anything extra would come right after.
    let extra = reader.receive(1, Duration::from_secs(2));

    let seen = tally(&outputs, COUNT);
    let missing: Vec<usize> = (0..COUNT).filter(|&i| seen[i] == 0).collect();
    let duplicated: Vec<usize> = (0..COUNT).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty(),
        "{} inputs without output, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(duplicated.is_empty() && extra.is_empty(), "duplicates without any failure: {duplicated:?} {extra:?}");
    let sample = &outputs[outputs.len() / 2];
    let i = number_of(sample);
    assert_eq!(sample.key.as_deref(), Some(format!("key-{}", i % 100).as_str()), "the input's key is kept");
    assert_eq!(sample.properties.get("seq"), Some(&i.to_string()), "the input's properties are kept");
    assert_eq!(sample.event_time, Some(1_700_000_000_000 + i as u64), "the input's event time is kept");
    assert_eq!(sample.properties.get("__pfn_input_topic__"), Some(&input), "the output names its input's topic");
    let id = sample.properties.get("__pfn_input_msg_id__").cloned().unwrap_or_default();
    assert_eq!(id.split(':').count(), 4, "and its input's id, ledger:entry:partition:batch: {id:?}");
    worker.wait_until("every input acknowledged", |worker| worker.total(SHOUT, "acked_total") == COUNT as u64);
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn inputs_are_acknowledged_only_once_the_broker_has_receipts_for_their_outputs() {
    const COUNT: usize = 3_000;
    /// The worker's consumer gets this many messages, then the relay holds back everything the
    /// broker sends the worker, its send receipts included.
    const LET_THROUGH: u64 = 1_000;
    let broker = TestBroker::start();
    let (to_worker, to_test) =
        (Relay::start(broker.addr()).expect("relay"), Relay::start(broker.addr()).expect("relay"));
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let peer = PulsarPeer::connect(&to_test.url());
    let mut reader = peer.subscribe(&output, "check");
    peer.produce(&input, (0..COUNT).map(|i| numbered(i, 100)));
    to_worker.pause_after_messages(LET_THROUGH);
    let dir = scratch();
    // Unbatched: the `pulsar` crate sends a producer's next batch only once the last one has its
    // receipt, so with receipts held a batching producer would stop after one batch.
    let unbatched = "[producer_config]\nbatching = false\ncompression_type = \"NONE\"";
    let worker = start_shout(dir.path(), &to_worker, &shout_spec(&input, &output, unbatched));

    // Outputs reach the broker while their receipts are held: read them until none comes.
    let held = reader.receive(COUNT, Duration::from_secs(3));
    let total = |name: &str| worker.total(SHOUT, name);
    let (received, outputs, acked) = (total("received_total"), total("outputs_total"), total("acked_total"));
    let receipts = to_worker.stats().receipts;
    assert!(
        !held.is_empty() && held.len() as u64 == outputs && outputs <= LET_THROUGH,
        "{} outputs read, {outputs} counted, {LET_THROUGH} inputs let through",
        held.len()
    );
    assert!(
        acked <= receipts,
        "{acked} inputs acknowledged with only {receipts} receipts passed (received {received}, outputs {outputs})"
    );
    assert!(acked < received, "every received input acknowledged ({acked}) though receipts are held");

    to_worker.set_paused(false);
    let mut all = held;
    all.extend(reader.receive(COUNT - all.len(), IDLE));
    let extra = reader.receive(1, Duration::from_secs(2));
    let seen = tally(&all, COUNT);
    assert!(seen.iter().all(|&n| n == 1) && extra.is_empty(), "not one output per input: {extra:?}");
    worker.wait_until("every input acknowledged", |worker| worker.total(SHOUT, "acked_total") == COUNT as u64);
    eprintln!(
        "held receipts: {received} received, {outputs} published, {acked} acknowledged, {receipts} receipts passed"
    );
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn effectively_once_is_refused_on_pulsar_with_the_reason() {
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let spec = shout_spec(&input, &output, "processing_guarantees = \"effectively_once\"");
    let dir = scratch();
    let worker = launch_shout(dir.path(), &relay, &spec, &[]);
    worker.wait_until("shout is refused", |worker| worker.function(SHOUT)["state"] != "waiting for plugin");
    let state = worker.function(SHOUT)["state"].as_str().unwrap_or_default().to_owned();
    assert!(
        state.starts_with("failed: function public/default/shout: effectively_once is not available on the Pulsar")
            && state.contains("use at_least_once"),
        "state: {state}"
    );
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn a_token_given_to_the_worker_is_sent_in_every_connect() {
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwZm4tdGVzdCJ9.c2lnbmF0dXJl";
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let dir = scratch();
    let worker = launch_shout(dir.path(), &relay, &shout_spec(&input, &output, ""), &["--pulsar-token", TOKEN]);
    wait_subscribed(&worker, 1);
    let auths = relay.connect_auths();
    assert!(!auths.is_empty(), "no CONNECT seen");
    assert_eq!(auths.len() as u64, relay.stats().connections, "a connection whose CONNECT was not read");
    for (method, data) in &auths {
        assert_eq!(method.as_deref(), Some("token"), "{auths:?}");
        assert_eq!(data.as_deref(), Some(TOKEN.as_bytes()), "{auths:?}");
    }
    // The token does not show in the worker's log.
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
    assert!(!log.contains(TOKEN), "the token is in the log");
}

#[test]
fn a_broker_crash_and_restart_mid_stream_loses_no_input_and_the_worker_keeps_running() {
    const COUNT: usize = 10_000;
    let mut broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let dir = scratch();
    let worker = start_panicky(dir.path(), &relay, &panicky_spec(&input, &output, "parallelism = 2"));
    wait_subscribed(&worker, 2);

    // Each call sleeps a millisecond: the stream lasts at least COUNT / 2 ms, so the crash
    // comes mid-stream.
    let sleepy = |i: usize| Outgoing {
        payload: b"sleep 1".to_vec(),
        key: Some(format!("key-{}", i % 100)),
        properties: HashMap::from([("seq".to_owned(), i.to_string())]),
        event_time: None,
    };
    let mut tally = Tally::new(COUNT);
    let read = AtomicUsize::new(0);
    {
        let peer = PulsarPeer::connect(&relay.url());
        let mut reader = peer.subscribe(&output, "check");
        peer.produce(&input, (0..COUNT).map(sleepy));
        read_into(&mut reader, &mut tally, seq_of, &read, IDLE, |distinct| distinct >= 1_000);
    }
    assert!(tally.distinct >= 1_000, "only {} outputs before the crash", tally.distinct);
    assert!(tally.distinct < COUNT, "the stream was over before the crash: this proves nothing");
    let before = tally.distinct;
    broker.kill();
    // Down long enough for the client to give up reconnecting: a broker back within
    // milliseconds is reconnected inside the `pulsar` crate, which the worker never sees.
    worker.wait_until("the worker notices the consumer outage", |worker| consumer_outages(worker) > 0);
    broker.restart();

    // The old client's connection died with the broker: read on with a new one.
    let peer = PulsarPeer::connect(&relay.url());
    let mut reader = peer.subscribe(&output, "check");
    read_into(&mut reader, &mut tally, seq_of, &read, IDLE, |distinct| distinct == COUNT);
    tally.assert_complete("after the broker restart");
    for output in reader.receive(1, Duration::from_secs(1)) {
        assert!(output.text() == "ok:sleep 1", "unexpected output {output:?}");
    }
    let (duplicates, _) = tally.duplicates();
    let outages = consumer_outages(&worker);
    let status = worker.status();
    let counted = status["pulsar"]["consumer_failures"].as_u64();
    assert!(counted.is_some_and(|n| n > 0), "consumer outages not counted in status: {}", status["pulsar"]);
    eprintln!("broker restart: {before} outputs before the crash, {outages} outages logged, {duplicates} duplicates");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit after the broker restart: {status}\n{log}");
}

#[test]
fn failing_inputs_go_to_the_dead_letter_topic_after_their_retries_and_the_rest_to_the_output() {
    const COUNT: usize = 300;
    const RETRIES: u64 = 2;
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let (input, output, dlq) = (unique_topic("in"), unique_topic("out"), unique_topic("dlq"));
    let dir = scratch();
    let extra = format!("max_message_retries = {RETRIES}\ndead_letter_topic = \"{dlq}\"");
    let worker = start_panicky(dir.path(), &relay, &panicky_spec(&input, &output, &extra));

    let text = |i: usize| match (i % 10, i % 15) {
        (0, _) => format!("panic-{i}"),
        (_, 0) => format!("error-{i}"),
        _ => format!("plain-{i}"),
    };
    let reason = |i: usize| match (i % 10, i % 15) {
        (0, _) => Some("panic"),
        (_, 0) => Some("error"),
        _ => None,
    };
    let failing: Vec<usize> = (0..COUNT).filter(|&i| reason(i).is_some()).collect();
    let passing: Vec<usize> = (0..COUNT).filter(|&i| reason(i).is_none()).collect();
    let peer = PulsarPeer::connect(&relay.url());
    let mut outputs_reader = peer.subscribe(&output, "check");
    let mut letters_reader = peer.subscribe(&dlq, "check");
    peer.produce(
        &input,
        (0..COUNT).map(|i| Outgoing {
            properties: HashMap::from([("seq".to_owned(), i.to_string())]),
            ..Outgoing::text(text(i))
        }),
    );

    let outputs = outputs_reader.receive(passing.len(), IDLE);
    let letters = letters_reader.receive(failing.len(), IDLE);
    worker.wait_until("every input acknowledged", |worker| worker.total(PANICKY, "acked_total") == COUNT as u64);
    let late_outputs = outputs_reader.receive(1, Duration::from_secs(1));
    let late_letters = letters_reader.receive(1, Duration::from_secs(1));

    let mut output_seqs: Vec<usize> = outputs.iter().map(seq_of).collect();
    output_seqs.sort_unstable();
    assert_eq!(output_seqs, passing, "the output holds every passing input once");
    for output in &outputs {
        assert_eq!(output.text(), format!("ok:{}", text(seq_of(output))), "{output:?}");
    }
    assert!(late_outputs.is_empty(), "outputs beyond every passing input once: {late_outputs:?}");

    let mut letter_seqs: Vec<usize> = letters.iter().map(seq_of).collect();
    letter_seqs.sort_unstable();
    assert_eq!(letter_seqs, failing, "the dead-letter topic holds every failing input once");
    assert!(late_letters.is_empty(), "dead letters beyond every failing input once: {late_letters:?}");
    for letter in &letters {
        let i = seq_of(letter);
        let property = |name: &str| letter.properties.get(name).map(String::as_str);
        assert_eq!(letter.text(), text(i), "a dead letter carries its input: {letter:?}");
        assert_eq!(property("pfn.dead_letter.reason"), reason(i), "{letter:?}");
        let expected_error = match reason(i) {
            Some("panic") => format!("asked to panic on-{i}"),
            _ => format!("asked to fail on-{i}"),
        };
        let error = property("pfn.dead_letter.error").unwrap_or_default();
        assert!(error.contains(&expected_error), "error of dead letter {i}: {error:?}");
        assert_eq!(property("REAL_TOPIC"), Some(input.as_str()), "{letter:?}");
        assert!(property("ORIGIN_MESSAGE_ID").is_some_and(|id| !id.is_empty()), "{letter:?}");
    }

    // Each failing input is called once and redelivered RETRIES times, failing every time.
    let failed = failing.len() as u64;
    let function = worker.function(PANICKY);
    let total = |name: &str| worker.total(PANICKY, name);
    assert_eq!(total("user_exceptions_total"), failed * (1 + RETRIES), "{function}");
    assert_eq!(total("dead_lettered_total"), failed, "{function}");
    assert_eq!(total("outputs_total"), passing.len() as u64, "{function}");
    assert_eq!(total("received_total"), COUNT as u64 + failed * RETRIES, "{function}");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

/// A `Duration` as its `Debug` form writes it (`500ms`, `1s`, `1.5s`), in seconds.
fn seconds(text: &str) -> f64 {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("not a duration: {text:?}"));
    match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => panic!("not a duration: {text:?}"),
    }
}

#[test]
fn a_worker_whose_broker_is_down_retries_with_back_off_and_stops_on_sigterm() {
    let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
    let url = format!("pulsar://127.0.0.1:{port}");
    let dir = scratch();
    let log_path = dir.path().join("worker.log");
    let mut child = WorkerDirs::create(dir.path())
        .command(dir.path())
        .env("PFN_LOG", "info")
        .args(["--pulsar-url", &url])
        .stderr(fs::File::create(&log_path).expect("worker log"))
        .spawn()
        .expect("pfn worker starts");
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let failures = || log().lines().filter(|line| line.contains("cannot reach Pulsar") && line.contains(&url)).count();

    let deadline = Instant::now() + Duration::from_secs(10);
    while failures() < 2 {
        if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let status = child.wait().expect("worker exits");
            panic!("not two connection failures naming {url} within 10 s (worker: {status}):\n{}", log());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let alive = child.try_wait().expect("worker status");
    assert!(alive.is_none(), "the worker exited while retrying: {alive:?}\n{}", log());
    // Each failure says when the next attempt comes: later and later.
    let retries: Vec<f64> = log()
        .lines()
        .filter(|line| line.contains("cannot reach Pulsar"))
        .filter_map(|line| line.split("retry_in=").nth(1)?.split_whitespace().next().map(seconds))
        .collect();
    assert!(
        retries.len() >= 2 && retries.windows(2).all(|pair| pair[0] < pair[1]),
        "no back-off between attempts: {retries:?}\n{}",
        log()
    );

    let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("worker status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SIGTERM did not stop a worker waiting for its broker:\n{}", log());
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "worker exit on SIGTERM: {status}\n{}", log());
}

#[test]
fn trigger_on_pulsar_answers_with_the_output_of_the_triggered_value() {
    let rig = PulsarRig::start();
    let dir = scratch();
    let worker = start_shout(dir.path(), &rig.relay, &shout_spec(&rig.input, &rig.output, ""));
    // Other traffic on the topics: the trigger must pick its own answer out.
    rig.peer.produce(&rig.input, (0..50).map(|i| numbered(i, 4)));
    for value in ["hello", "pulsar"] {
        let answer = worker.pfn().args(["functions", "trigger", SHOUT, "--value", value]).output().expect("trigger");
        let (stdout, stderr) = pfn_tests::pfn_cli::texts(&answer);
        assert!(answer.status.success(), "{stderr}");
        assert_eq!(stdout, format!("{value}!\n"));
    }
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn pfn_topics_produces_to_and_consumes_from_pulsar_topics_through_the_worker() {
    let rig = PulsarRig::start();
    let dir = scratch();
    let worker = start_shout(dir.path(), &rig.relay, &shout_spec(&rig.input, &rig.output, ""));
    worker.create_subscription(&rig.output, "cli");
    let produced = worker.produce(&rig.input, b"stream\nfunctions\n", false);
    assert!(pfn_tests::pfn_cli::texts(&produced).1.contains("produced 2 messages"), "{produced:?}");
    assert_eq!(worker.consume(&rig.output, "cli", 2, false), ["stream!", "functions!"]);
    let stats = worker.pfn().args(["topics", "stats", &rig.output]).output().expect("pfn topics stats");
    let (_, stderr) = pfn_tests::pfn_cli::texts(&stats);
    assert!(!stats.status.success() && stderr.contains("pulsar-admin topics stats"), "{stderr}");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}
