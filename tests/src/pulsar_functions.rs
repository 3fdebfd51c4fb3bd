//! Running functions on Pulsar in end-to-end tests: the exclamation (`shout`) and `panicky`
//! specs, numbered inputs, tallies of what came out, and a worker's consumer outages as its log
//! tells them.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    fs,
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::{
    broker::TestBroker,
    fixtures::{fixture, plugin},
    pulsar_client::{Outgoing, PulsarPeer, Received, TestConsumer, unique_topic},
    relay::Relay,
    worker::RunningWorker,
};

pub const SHOUT: &str = "public/default/shout";
pub const PANICKY: &str = "public/default/panicky";
pub const ACKER: &str = "public/default/acker";
pub const ZOO: &str = "public/default/zoo";

/// How long a reader waits for the next output before a test gives up (a hang guard).
pub const IDLE: Duration = Duration::from_secs(60);

/// How long anything else may take before a test gives up (a hang guard).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// A test broker, a relay to it, fresh input and output topics, and a client of the relay.
#[allow(missing_debug_implementations, reason = "the client is not Debug")]
pub struct PulsarRig {
    // Dropped in this order: the client before the relay and the broker.
    pub peer: PulsarPeer,
    pub input: String,
    pub output: String,
    pub relay: Relay,
    pub broker: TestBroker,
}

impl PulsarRig {
    pub fn start() -> Self {
        let broker = TestBroker::start();
        let relay = Relay::start(broker.addr()).expect("relay");
        let peer = PulsarPeer::connect(&relay.url());
        Self { peer, input: unique_topic("in"), output: unique_topic("out"), relay, broker }
    }

    /// A test consumer of the output topic, from its start.
    pub fn reader(&self) -> TestConsumer<'_> {
        self.peer.subscribe(&self.output, "check")
    }

    /// A test consumer of the output's default dead-letter topic, `<output>-DLQ`.
    pub fn dead_letters(&self) -> TestConsumer<'_> {
        self.peer.subscribe(&format!("{}-DLQ", self.output), "check")
    }
}

/// A spec running exclamation from `input` to `output`, reading the input from its start.
pub fn shout_spec(input: &str, output: &str, extra: &str) -> String {
    spec("shout", "exclamation", input, output, extra)
}

/// Starts a worker on `relay` running `spec` (see [`shout_spec`]) and waits until it runs.
pub fn start_shout(dir: &Path, relay: &Relay, spec: &str) -> RunningWorker {
    wait_running(launch_shout(dir, relay, spec, &[]), "shout", SHOUT)
}

/// Starts a worker on `relay`, with `worker_args` besides, running `spec` (see
/// [`shout_spec`]); does not wait for it.
pub fn launch_shout(dir: &Path, relay: &Relay, spec: &str, worker_args: &[&str]) -> RunningWorker {
    launch_shout_at(dir, &relay.url(), spec, worker_args)
}

/// Starts a worker on the Pulsar service `url`, with `worker_args` besides, running `spec`
/// (see [`shout_spec`]); does not wait for it.
pub fn launch_shout_at(dir: &Path, url: &str, spec: &str, worker_args: &[&str]) -> RunningWorker {
    launch(dir, url, "shout", (&plugin("exclamation"), "libexclamation.so"), spec, worker_args)
}

/// A spec named `name` running `plugin` from `input` to `output`, reading the input from its
/// start.
fn spec(name: &str, plugin: &str, input: &str, output: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nplugin = \"{plugin}\"\ninputs = [\"{input}\"]\noutput = \"{output}\"\n\
         subscription_position = \"earliest\"\n{extra}\n"
    )
}

/// Starts a worker on the Pulsar service `url` (and `worker_args`) with one spec, `name` in the
/// functions directory, and its plugin file.
fn launch(
    dir: &Path,
    url: &str,
    name: &str,
    (plugin, file_name): (&Path, &str),
    spec: &str,
    worker_args: &[&str],
) -> RunningWorker {
    let spec_file = format!("{name}.toml");
    let args: Vec<&str> = ["--pulsar-url", url].into_iter().chain(worker_args.iter().copied()).collect();
    RunningWorker::start(dir, &[(spec_file.as_str(), spec)], &[(plugin, file_name)], &args)
}

/// Waits until function `fqfn` (spec `name`) of `worker` runs.
fn wait_running(worker: RunningWorker, name: &str, fqfn: &str) -> RunningWorker {
    worker.wait_until(&format!("{name} runs"), |worker| worker.function(fqfn)["state"] == "running");
    worker
}

/// The size of every numbered input, in bytes.
pub const PAYLOAD: usize = 100;

/// Input `i`'s payload: `m<8 digits>-` padded with dots to [`PAYLOAD`] bytes.
pub fn numbered_payload(i: usize) -> Vec<u8> {
    let mut payload = format!("m{i:08}-").into_bytes();
    payload.resize(PAYLOAD, b'.');
    payload
}

/// Message `i`: [`numbered_payload`], key `key-<i mod keys>`, property `seq`.
pub fn numbered(i: usize, keys: usize) -> Outgoing {
    Outgoing {
        payload: numbered_payload(i),
        key: Some(format!("key-{}", i % keys)),
        properties: HashMap::from([("seq".to_owned(), i.to_string())]),
        event_time: Some(1_700_000_000_000 + i as u64),
    }
}

/// The input number an output carries, checking that it is a numbered input shouted.
pub fn number_of(output: &Received) -> usize {
    let text = output.text();
    assert!(output.payload.len() == PAYLOAD + 1 && text.ends_with('!'), "not shouted: {text:?}");
    text[1..9].parse().unwrap_or_else(|_| panic!("no number in {text:?}"))
}

/// How many times each of `0..count` came out; panics on anything else.
pub fn tally(outputs: &[Received], count: usize) -> Vec<u32> {
    let mut tally = Tally::new(count);
    for output in outputs {
        tally.add(number_of(output));
    }
    tally.seen
}

/// The number a text ends with (`held:hold 3`, `ok:12`, `error 4`), if any.
pub fn trailing_number(text: &str) -> Option<usize> {
    let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    text[text.len() - digits..].parse().ok()
}

/// `texts` in the order of the numbers they end with.
pub fn by_trailing_number(mut texts: Vec<String>) -> Vec<String> {
    texts.sort_by_key(|text| trailing_number(text));
    texts
}

/// The panicky fixture from `input` to `output`, reading the input from its start.
pub fn panicky_spec(input: &str, output: &str, extra: &str) -> String {
    spec("panicky", "panicky", input, output, extra)
}

/// Starts a worker on `relay` running `spec` (see [`panicky_spec`]) and waits until it runs.
pub fn start_panicky(dir: &Path, relay: &Relay, spec: &str) -> RunningWorker {
    let worker = launch(dir, &relay.url(), "panicky", (&fixture("panicky"), "libpanicky.so"), spec, &[]);
    wait_running(worker, "panicky", PANICKY)
}

/// The zoo fixture from `input` to `output` under the process runtime, reading the input from
/// its start.
pub fn zoo_spec(input: &str, output: &str, extra: &str) -> String {
    spec("zoo", "zoo", input, output, &format!("runtime = \"process\"\n{extra}"))
}

/// Starts a worker on `relay` running `spec` (see [`zoo_spec`]) and waits until it runs.
pub fn start_zoo(dir: &Path, relay: &Relay, spec: &str) -> RunningWorker {
    let worker = launch(dir, &relay.url(), "zoo", (&fixture("zoo"), "libzoo.so"), spec, &[]);
    wait_running(worker, "zoo", ZOO)
}

/// The manual-ack fixture from `input` to `output` with `manual` guarantees, reading the input
/// from its start.
pub fn acker_spec(input: &str, output: &str) -> String {
    spec("acker", "manual-ack", input, output, "processing_guarantees = \"manual\"")
}

/// Starts a worker on `relay` running `spec` (see [`acker_spec`]) and waits until it runs.
pub fn start_acker(dir: &Path, relay: &Relay, spec: &str) -> RunningWorker {
    let worker = launch(dir, &relay.url(), "acker", (&fixture("manual-ack"), "libmanual_ack.so"), spec, &[]);
    wait_running(worker, "acker", ACKER)
}

/// Waits until `consumers` of the worker's consumers have subscribed: input published from now
/// on is dispatched among all of them.
pub fn wait_subscribed(worker: &RunningWorker, consumers: usize) {
    worker.wait_until(&format!("{consumers} consumers subscribed"), |worker| {
        worker.log_text().matches("consumer subscribed").count() >= consumers
    });
}

/// Each instance's `received_total`.
pub fn received_per_instance(worker: &RunningWorker, fqfn: &str) -> Vec<u64> {
    let function = worker.function(fqfn);
    let instances = function["instances"].as_array().unwrap_or_else(|| panic!("no instances in {function}"));
    instances.iter().map(|instance| instance["received_total"].as_u64().expect("received_total")).collect()
}

/// How many times the worker logged losing a consumer or failing to subscribe one.
pub fn consumer_outages(worker: &RunningWorker) -> usize {
    let log = worker.log_text();
    log.matches("consumer lost").count() + log.matches("cannot subscribe").count()
}

/// How many acknowledgements pulsar-lite ignored because no consumer held the message: each
/// follows a message it dispatched twice on its own (see the Key_Shared test).
pub fn disowned_acks(broker: &TestBroker) -> usize {
    broker.log().matches("without ownership").count()
}

/// [`disowned_acks`] once there are at least `expected`, or after 10 s: the broker logs an
/// acknowledgement when it reads it, which may come just after the worker counted it sent.
pub fn disowned_acks_at_least(broker: &TestBroker, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let disowned = disowned_acks(broker);
        if disowned >= expected || Instant::now() > deadline {
            return disowned;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The first output of each input, in output order, and how many outputs repeated one.
pub fn first_occurrences(numbers: impl IntoIterator<Item = usize>) -> (Vec<usize>, usize) {
    let mut seen = std::collections::HashSet::new();
    let (mut firsts, mut repeats) = (Vec::new(), 0);
    for i in numbers {
        if seen.insert(i) {
            firsts.push(i);
        } else {
            repeats += 1;
        }
    }
    (firsts, repeats)
}

/// For a failure message: what each instance received and acknowledged, and whether the broker
/// moved messages between consumers on its own.
pub fn diagnosis(worker: &RunningWorker, fqfn: &str, broker: &TestBroker) -> String {
    let function = worker.function(fqfn);
    let instances = function["instances"].as_array().cloned().unwrap_or_default();
    let counts: Vec<String> = instances
        .iter()
        .map(|i| format!("instance {} received {} acked {}", i["instance_id"], i["received_total"], i["acked_total"]))
        .collect();
    let outages = consumer_outages(worker);
    let disowned = disowned_acks(broker);
    format!(
        "{}; {outages} consumer outages logged; broker ignored {disowned} acks without ownership",
        counts.join(", ")
    )
}

/// The input number an output carries in its `seq` property (kept from the input).
pub fn seq_of(output: &Received) -> usize {
    let seq = output.properties.get("seq").unwrap_or_else(|| panic!("no seq property on {output:?}"));
    seq.parse().unwrap_or_else(|_| panic!("seq {seq:?} is not a number"))
}

/// What a stream of outputs came to so far: how often each input came out.
#[derive(Debug)]
pub struct Tally {
    pub seen: Vec<u32>,
    pub distinct: usize,
}

impl Tally {
    pub fn new(count: usize) -> Self {
        Self { seen: vec![0; count], distinct: 0 }
    }

    pub fn add(&mut self, i: usize) {
        assert!(i < self.seen.len(), "output for unknown input {i}");
        self.seen[i] += 1;
        if self.seen[i] == 1 {
            self.distinct += 1;
        }
    }

    pub fn missing(&self) -> Vec<usize> {
        (0..self.seen.len()).filter(|&i| self.seen[i] == 0).collect()
    }

    /// How many outputs came more than once, and the first few inputs concerned.
    pub fn duplicates(&self) -> (u32, Vec<usize>) {
        let extra = self.seen.iter().map(|n| n.saturating_sub(1)).sum();
        (extra, (0..self.seen.len()).filter(|&i| self.seen[i] > 1).take(10).collect())
    }

    pub fn assert_complete(&self, what: &str) {
        let missing = self.missing();
        let (extra, duplicated) = self.duplicates();
        assert!(
            missing.is_empty(),
            "{what}: {} of {} inputs without output, first {:?} ({extra} duplicates, first {duplicated:?})",
            missing.len(),
            self.seen.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// Reads outputs into `tally` (numbered by `number`) until `done(distinct)` or nothing arrives
/// for `idle`; `progress` follows the distinct count as it grows. Returns what it read.
pub fn read_into(
    reader: &mut TestConsumer<'_>,
    tally: &mut Tally,
    number: fn(&Received) -> usize,
    progress: &AtomicUsize,
    idle: Duration,
    done: impl Fn(usize) -> bool,
) -> Vec<Received> {
    let tally = RefCell::new(tally);
    let counted = Cell::new(0);
    reader.receive_until(idle, |received| {
        let mut tally = tally.borrow_mut();
        for output in &received[counted.get()..] {
            tally.add(number(output));
        }
        counted.set(received.len());
        progress.store(tally.distinct, Ordering::Release);
        done(tally.distinct)
    })
}

/// Reads until every one of `count` inputs came out at least once (or nothing came for
/// [`IDLE`]); returns every output, repeats included, in order.
pub fn read_every(reader: &mut TestConsumer<'_>, count: usize, number: fn(&Received) -> usize) -> Vec<Received> {
    let mut tally = Tally::new(count);
    read_into(reader, &mut tally, number, &AtomicUsize::new(0), IDLE, |distinct| distinct == count)
}

/// How many inputs [`publish_paced_and_read_every`] publishes at once.
pub const PACE_CHUNK: usize = 250;

/// How far [`publish_paced_and_read_every`] lets publication run ahead of the outputs read.
pub const PACE_AHEAD: usize = 1_000;

/// Publishes `messages` to `topic` through `url` from a thread of its own, [`PACE_CHUNK`] at a
/// time and never more than [`PACE_AHEAD`] ahead of the distinct outputs read, while reading
/// `reader` until every input came out at least once (or nothing came for [`IDLE`]). Returns
/// every output, repeats included, in order.
///
/// Bridges pulsar-lite (`docs/TESTING.md`, deviation 10): with thousands of messages waiting
/// on a Key_Shared subscription its dispatcher scans storage for each message it sends, and
/// meanwhile no connection of the broker's is served, for 10 to 30 s. Apache Pulsar serves a
/// backlog of any size.
pub fn publish_paced_and_read_every(
    url: &str,
    topic: &str,
    messages: Vec<Outgoing>,
    reader: &mut TestConsumer<'_>,
    number: fn(&Received) -> usize,
) -> Vec<Received> {
    let count = messages.len();
    let read = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let _stop_producer = SetOnDrop(&stop);
        scope.spawn(|| {
            let producer = PulsarPeer::connect(url);
            let deadline = Instant::now() + HANG_GUARD;
            let (mut messages, mut published) = (messages.into_iter(), 0);
            while published < count {
                if !wait_for_outputs(&read, (published + 1).saturating_sub(PACE_AHEAD), &stop, deadline) {
                    return;
                }
                let chunk: Vec<Outgoing> = messages.by_ref().take(PACE_CHUNK).collect();
                published += chunk.len();
                producer.produce(topic, chunk);
            }
        });
        let mut tally = Tally::new(count);
        read_into(reader, &mut tally, number, &read, IDLE, |distinct| distinct == count)
    })
}

/// Waits until `read` (the distinct outputs read so far) reaches `target`, for a producer that
/// keeps a bounded lead; false if `stop` is set or `deadline` passes first.
pub fn wait_for_outputs(read: &AtomicUsize, target: usize, stop: &AtomicBool, deadline: Instant) -> bool {
    while read.load(Ordering::Acquire) < target {
        if stop.load(Ordering::Acquire) || Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Sets the flag when dropped, also when a test panics: the threads it runs then stop.
#[derive(Debug)]
pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Kills the worker with SIGKILL, as a crash would, and waits until it is dead (a zombie until
/// the [`RunningWorker`] reaps it).
pub fn kill_9(worker: &RunningWorker) {
    let pid = worker.pid().expect("worker running");
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(killed.success(), "kill -KILL {pid} failed");
    let dead = || fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "));
    let deadline = Instant::now() + HANG_GUARD;
    while !dead() {
        assert!(Instant::now() < deadline, "worker {pid} still alive after SIGKILL");
        thread::sleep(Duration::from_millis(10));
    }
}
