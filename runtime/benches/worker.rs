//! The worker on embedded topics: how fast one instance of the `exclamation` plugin turns
//! 64-byte messages into outputs, and how long its outputs pause around a hot reload.
//!
//! Both measurements run a real [`Worker`] (function spec, plugins directory, coordinator and
//! instance threads) on an [`EmbeddedBroker`], with the input subscription pre-loaded before the
//! worker starts, so that the instance starts on a full backlog and never waits for input. The
//! output topic has one subscription, either left alone (its backlog grows) or drained by a
//! reader thread that acknowledges every output; each measurement is made both ways.
//!
//! 1. **Throughput.** `exclamation`, one instance, [`PAYLOAD`]-byte messages. The rate is
//!    counted from the first output seen to the last, so it leaves out the worker's start
//!    (reading, hashing and opening the plugin, subscribing), which is reported apart. One
//!    setup runs with the metrics endpoint on (calls timed for the latency summary) and scraped
//!    every [`SCRAPE_EVERY`], to compare with the same setup without it; the setups of a round
//!    run in the reverse order every other round, so that none always runs first.
//! 2. **Swap pause.** The `versioned` fixture at 1.0.0, one instance. A sampler thread, at
//!    real-time priority when `chrt` allows it, reads the output topic's published count every
//!    [`SAMPLE_SLEEP`] (plus the sleep's overshoot) and keeps the times at which it changed.
//!    Once [`SWAP_TRIGGER`] outputs were published, it renames 1.1.0 into the plugins directory
//!    (its manifest was there already). The pause is the longest time between two consecutive
//!    changes of the count, among those that overlap the window from the rename until the
//!    worker's status shows the instance on 1.1.0. Each round has two more runs over the same
//!    stream and a window of the same length: a *load only* run, where the bench itself loads
//!    1.1.0 with a [`Loader`] on a thread of its own at the same point and nothing is swapped,
//!    and a *baseline* run, where nothing happens.
//!
//! Every run also reports the CPU time the machine spent outside this process and the time
//! the VM's host took from its vCPUs (steal), since neither can be kept away on a shared
//! 2-CPU machine.
//!
//! Needs `scripts/build-plugins.sh` to have built `target/plugins/libexclamation.so` and
//! `target/fixtures/versioned/`. Run with `cargo bench -p pfn --bench worker`; without
//! `--bench` (as `cargo test --benches` runs it) it does one short run of each, as a smoke
//! test. `WORKER_BENCH_RUNS` and `WORKER_BENCH_MESSAGES` override the number of runs (rounds)
//! and the number of messages of a throughput run; `WORKER_BENCH_ONLY` picks parts (see
//! [`Plan::only`]).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

mod support;

use pfn::{
    config::FunctionSpec,
    io::{
        embedded::EmbeddedBroker,
        transport::{Delivery, Message, SubscriptionRequest, SubscriptionType, Transport},
    },
    loader::{Loader, Pin, PluginCache},
    telemetry::{Count, MetricsServer},
    verify::{Manifest, Sha256Digest},
    worker::{WorkerHandle, WorkerOptions, WorkerSummary},
};
use support::{bench_options, install, require, start_worker, target_dir};

/// The size of every input message, in bytes.
const PAYLOAD: usize = 64;
/// The function's input topic.
const INPUT: &str = "in";
/// The function's output topic.
const OUTPUT: &str = "out";
/// The subscription on the output topic: it keeps every output, as a user's reader would.
const OUTPUT_SUBSCRIPTION: &str = "bench-reader";
/// Messages per publish while pre-loading the input.
const PRELOAD_CHUNK: usize = 8192;
/// Most outputs the draining reader takes per receive.
const READER_BATCH: usize = 4096;
/// How long the throughput poller sleeps between two reads of the output count.
const POLL_SLEEP: Duration = Duration::from_micros(250);
/// How long the swap sampler sleeps between two reads of the output count.
const SAMPLE_SLEEP: Duration = Duration::from_micros(200);
/// The swap sampler reads the worker's status once every this many samples.
const STATUS_EVERY: u32 = 4;
/// How often the worker scans the plugins directory in the swap runs.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// The rename (or the load) happens once this many outputs were published: the stream is in its stride, and
/// the output subscription's queue has grown past 2^18 entries (without a reader, the growth
/// from 2^18 to 2^19 stalls publishing for several milliseconds by itself).
const SWAP_TRIGGER: u64 = 300_000;
/// A run that has not finished after this long has hung.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// The plugin version running when a swap run starts, and the one renamed in.
const FROM_VERSION: &str = "1.0.0";
const TO_VERSION: &str = "1.1.0";

/// How many runs and how many messages, for `cargo bench` or for a smoke test, and which
/// parts to run.
#[derive(Debug, Clone)]
struct Plan {
    runs: usize,
    throughput_messages: u64,
    swap_messages: u64,
    /// `WORKER_BENCH_ONLY`: a comma-separated list of `none`, `none-metrics`, `draining`
    /// (throughput with each reader), `swap-draining` and `swap-none` (default: all five).
    only: Option<String>,
}

impl Plan {
    fn from_args() -> Self {
        let benching = std::env::args().any(|arg| arg == "--bench");
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let (runs, messages, swap_messages) = if benching { (5, 2_000_000, 1_000_000) } else { (1, 50_000, 1_000_000) };
        Self {
            runs: env("WORKER_BENCH_RUNS").map_or(runs, |runs| runs.max(1) as usize),
            throughput_messages: env("WORKER_BENCH_MESSAGES").unwrap_or(messages),
            swap_messages,
            only: std::env::var("WORKER_BENCH_ONLY").ok(),
        }
    }

    /// Whether the part named `part` runs.
    fn wants(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only.split(',').any(|wanted| wanted.trim() == part))
    }
}

/// The payload of input message `index`: `message-NNNNNNN-` padded with dots to [`PAYLOAD`]
/// bytes (the lines of `scripts/bench.sh`, without their newline).
fn payload(index: u64) -> Vec<u8> {
    let mut payload = format!("message-{index:07}-").into_bytes();
    payload.resize(PAYLOAD, b'.');
    payload
}

/// A worker's directories: its plugins, its function specs, and where its plugin copies go.
#[derive(Debug)]
struct Dirs {
    plugins: PathBuf,
    functions: PathBuf,
    cache: PathBuf,
}

impl Dirs {
    /// Empty directories under `root` (removed first if they exist).
    fn fresh(root: &Path) -> Self {
        if root.exists() {
            fs::remove_dir_all(root).unwrap_or_else(|e| panic!("cannot remove {}: {e}", root.display()));
        }
        let dirs = Self { plugins: root.join("plugins"), functions: root.join("functions"), cache: root.join("cache") };
        for dir in [&dirs.plugins, &dirs.functions] {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        dirs
    }

    /// Writes the spec of function `name` running plugin `plugin` from [`INPUT`] to [`OUTPUT`]
    /// in `runtime`, and returns it as the worker reads it.
    fn write_spec(&self, name: &str, plugin: &str, runtime: &str) -> FunctionSpec {
        let path = self.functions.join(format!("{name}.toml"));
        let text = format!(
            "name = \"{name}\"\nplugin = \"{plugin}\"\ninputs = [\"{INPUT}\"]\noutput = \"{OUTPUT}\"\nruntime = \"{runtime}\"\n"
        );
        fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        FunctionSpec::from_file(&path).unwrap_or_else(|e| panic!("the bench's spec {} is refused: {e}", path.display()))
    }

    /// Worker options for these directories, scanning the plugins directory every
    /// `watch_interval`.
    fn options(&self, watch_interval: Duration, timing: bool) -> WorkerOptions {
        let state_store = self.functions.with_file_name("state.redb");
        bench_options(self.plugins.clone(), self.functions.clone(), state_store, watch_interval, timing)
    }
}

/// A broker whose input subscription (the function's) holds `messages` messages, and whose
/// output topic has the subscription [`OUTPUT_SUBSCRIPTION`].
fn preloaded_broker(spec: &FunctionSpec, messages: u64) -> Arc<EmbeddedBroker> {
    let broker = EmbeddedBroker::new();
    broker
        .create_subscription(INPUT, &spec.subscription(), spec.subscription_type())
        .expect("the input subscription is created");
    broker
        .create_subscription(OUTPUT, OUTPUT_SUBSCRIPTION, SubscriptionType::Shared)
        .expect("the output subscription is created");
    let mut chunk = Vec::with_capacity(PRELOAD_CHUNK);
    for index in 0..messages {
        chunk.push(Arc::new(Message::from_payload(payload(index))));
        if chunk.len() == PRELOAD_CHUNK || index + 1 == messages {
            broker.publish_shared(INPUT, &chunk).expect("the broker is open while pre-loading");
            chunk.clear();
        }
    }
    broker
}

/// Stops the worker and checks that its one instance turned every input into an output.
fn stop_worker(handle: &WorkerHandle, thread: JoinHandle<WorkerSummary>, messages: u64) -> WorkerSummary {
    handle.shutdown();
    let summary = thread.join().expect("the worker thread does not panic");
    let function = summary.functions.first().expect("the worker ran the bench's function");
    let instance = function.instances.first().expect("the function had an instance");
    assert_eq!(function.instances.len(), 1, "one instance");
    assert_eq!(
        (instance.count(Count::Outputs), instance.count(Count::Acked), instance.count(Count::DeadLettered)),
        (messages, messages, 0),
        "every input becomes one output"
    );
    summary
}

/// How the output subscription is read during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Nobody reads: the subscription's backlog grows to every output.
    None,
    /// A thread receives and acknowledges every output as it comes.
    Draining,
    /// Nobody reads, and the metrics endpoint is on (calls are timed) and scraped every
    /// [`SCRAPE_EVERY`].
    NoneWithMetrics,
    /// As [`Self::None`] and [`Self::Draining`], with the instance in a child process
    /// (`runtime = "process"`).
    NoneProcess,
    DrainingProcess,
}

/// How often the metrics endpoint is scraped in a run with it on.
const SCRAPE_EVERY: Duration = Duration::from_millis(100);

impl Reader {
    /// Its name in `WORKER_BENCH_ONLY`.
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Draining => "draining",
            Self::NoneWithMetrics => "none-metrics",
            Self::NoneProcess => "none-process",
            Self::DrainingProcess => "draining-process",
        }
    }

    /// How the tables name it.
    fn describe(self) -> &'static str {
        match self {
            Self::None => "no reader (backlog grows)",
            Self::Draining => "draining reader (acks all)",
            Self::NoneWithMetrics => "no reader, metrics endpoint on, scraped every 100 ms",
            Self::NoneProcess => "process runtime, no reader",
            Self::DrainingProcess => "process runtime, draining reader",
        }
    }

    fn metrics(self) -> bool {
        self == Self::NoneWithMetrics
    }

    fn draining(self) -> bool {
        matches!(self, Self::Draining | Self::DrainingProcess)
    }

    /// The runtime the function's spec names.
    fn runtime(self) -> &'static str {
        match self {
            Self::NoneProcess | Self::DrainingProcess => "process",
            Self::None | Self::Draining | Self::NoneWithMetrics => "thread",
        }
    }
}

/// Scrapes `GET /metrics` at `addr` every [`SCRAPE_EVERY`] until `stop` is set; returns the
/// number of scrapes and the size of the last one.
fn scrape_until(addr: std::net::SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) -> JoinHandle<(u32, usize)> {
    use std::io::{Read, Write};
    let scrape = move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint accepts");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "scrape answered {answer:.80}");
        answer.len()
    };
    std::thread::spawn(move || {
        let (mut scrapes, mut size) = (0, 0);
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            size = scrape();
            scrapes += 1;
            std::thread::sleep(SCRAPE_EVERY);
        }
        (scrapes, size)
    })
}

/// Clock ticks per second in `/proc/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// What the machine did besides this process during a run, in percent of one CPU: the bench
/// cannot keep other processes off its two CPUs, nor the VM's host off its vCPUs, so it says
/// when they were busy.
#[derive(Debug, Clone, Copy)]
struct Contention {
    /// CPU time used outside this process: other processes, kernel threads, interrupts.
    others: f64,
    /// Time the host ran something else while a vCPU had work (`steal` in `/proc/stat`).
    steal: f64,
}

/// Busy clock ticks so far, as `/proc/stat` and `/proc/self/stat` count them.
#[derive(Debug, Clone, Copy)]
struct CpuTicks {
    /// The whole machine: user, nice, system, irq and softirq (not idle, iowait or steal).
    machine: u64,
    steal: u64,
    /// This process: user and system.
    this: u64,
}

impl CpuTicks {
    fn now() -> Option<Self> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> =
            stat.lines().next()?.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
        let machine = fields.iter().take(7).enumerate().filter(|(index, _)| !matches!(index, 3 | 4)).map(|(_, t)| t);
        let own = fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name start at field 3 (state); utime is 14, stime 15.
        let after_name: Vec<&str> = own.rsplit_once(") ")?.1.split_whitespace().collect();
        let this = after_name.get(11)?.parse::<u64>().ok()? + after_name.get(12)?.parse::<u64>().ok()?;
        Some(Self { machine: machine.sum(), steal: *fields.get(7)?, this })
    }
}

/// Measures [`Contention`] from its start to [`CpuMeter::finish`].
#[derive(Debug, Clone, Copy)]
struct CpuMeter {
    at: Instant,
    ticks: CpuTicks,
}

impl CpuMeter {
    fn start() -> Option<Self> {
        Some(Self { at: Instant::now(), ticks: CpuTicks::now()? })
    }

    fn finish(self) -> Option<Contention> {
        let now = CpuTicks::now()?;
        let ticks = self.at.elapsed().as_secs_f64() * TICKS_PER_SECOND;
        let others =
            now.machine.saturating_sub(self.ticks.machine).saturating_sub(now.this.saturating_sub(self.ticks.this));
        Some(Contention {
            others: others as f64 / ticks * 100.0,
            steal: now.steal.saturating_sub(self.ticks.steal) as f64 / ticks * 100.0,
        })
    }
}

/// `3 % / 12 %`: CPU used outside this process, and steal; `?` when unknown.
fn show_contention(contention: Option<Contention>) -> String {
    contention.map_or_else(|| "?".into(), |c| format!("{:.0} % / {:.0} %", c.others, c.steal))
}

/// One throughput run.
#[derive(Debug, Clone, Copy)]
struct ThroughputRun {
    /// From starting the worker to the first output seen.
    startup: Duration,
    /// Outputs per second from the first output seen to the last.
    rate: f64,
    /// Messages per second from starting the worker to the last output.
    end_to_end: f64,
    /// What else the machine did meanwhile.
    contention: Option<Contention>,
}

/// When outputs were first seen (and how many), and when all of them were.
#[derive(Debug, Clone, Copy)]
struct Progress {
    first: Instant,
    first_count: u64,
    last: Instant,
}

/// Waits until the output topic's published count reaches `messages`, polling it.
fn poll_published(broker: &EmbeddedBroker, messages: u64, started: Instant) -> Progress {
    let mut first = None;
    loop {
        let published = broker.counts(OUTPUT).published;
        let now = Instant::now();
        if published > 0 && first.is_none() {
            first = Some((now, published));
        }
        if published >= messages {
            let (first, first_count) = first.expect("seen before the last");
            return Progress { first, first_count, last: now };
        }
        assert!(now < started + RUN_DEADLINE, "only {published} of {messages} outputs after {RUN_DEADLINE:?}");
        std::thread::sleep(POLL_SLEEP);
    }
}

/// Receives and acknowledges `messages` outputs on a thread of its own, checking that the first
/// and the last start with the prefixes given.
fn drain_outputs(
    broker: &Arc<EmbeddedBroker>,
    messages: u64,
    started: Instant,
    (first_expected, last_expected): (Vec<u8>, Vec<u8>),
) -> JoinHandle<Progress> {
    let source = broker
        .subscribe(&SubscriptionRequest::new(vec![OUTPUT.to_owned()], OUTPUT_SUBSCRIPTION, SubscriptionType::Shared))
        .expect("the reader subscribes");
    let reader = move || {
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(READER_BATCH);
        let mut tags = Vec::with_capacity(READER_BATCH);
        let mut received = 0;
        let mut first = None;
        loop {
            deliveries.clear();
            let taken = source
                .receive(READER_BATCH, Duration::from_millis(20), &mut deliveries)
                .expect("the broker stays open while the reader runs");
            let now = Instant::now();
            if taken > 0 && first.is_none() {
                let payload = &deliveries[0].message.payload;
                assert!(payload.starts_with(&first_expected), "the first output: {}", String::from_utf8_lossy(payload));
                first = Some((now, taken as u64));
            }
            tags.clear();
            tags.extend(deliveries.iter().map(|delivery| delivery.tag));
            source.ack(&tags);
            received += taken as u64;
            if received >= messages {
                let last = deliveries.last().expect("the last receive took something");
                let payload = &last.message.payload;
                assert!(payload.starts_with(&last_expected), "the last output: {}", String::from_utf8_lossy(payload));
                let (first, first_count) = first.expect("seen before the last");
                return Progress { first, first_count, last: now };
            }
            assert!(now < started + RUN_DEADLINE, "only {received} of {messages} outputs after {RUN_DEADLINE:?}");
        }
    };
    std::thread::Builder::new().name("bench-reader".into()).spawn(reader).expect("the reader thread starts")
}

fn throughput_run(dirs: &Dirs, spec: &FunctionSpec, messages: u64, reader: Reader) -> ThroughputRun {
    let broker = preloaded_broker(spec, messages);
    let meter = CpuMeter::start();
    let started = Instant::now();
    let shout = |index: u64| {
        let mut output = payload(index);
        output.push(b'!');
        output
    };
    let expected = (shout(0), shout(messages - 1));
    let draining = reader.draining().then(|| drain_outputs(&broker, messages, started, expected));
    let options = dirs.options(Duration::from_millis(250), reader.metrics());
    let (handle, thread) = start_worker(options, &dirs.cache, &broker);
    let stop_scraping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraping = reader.metrics().then(|| {
        let render = handle.clone();
        let server =
            MetricsServer::start("127.0.0.1:0".parse().expect("an address"), Arc::new(move || render.render_metrics()))
                .expect("the metrics endpoint starts");
        let scraper = scrape_until(server.addr(), Arc::clone(&stop_scraping));
        (server, scraper)
    });
    let progress = match draining {
        Some(reader) => reader.join().expect("the reader thread does not panic"),
        None => poll_published(&broker, messages, started),
    };
    if let Some((server, scraper)) = scraping {
        stop_scraping.store(true, std::sync::atomic::Ordering::Release);
        let (scrapes, size) = scraper.join().expect("the scraper does not panic");
        assert!(scrapes > 0, "the endpoint was scraped");
        eprintln!("metrics: {scrapes} scrapes, the last {size} bytes");
        drop(server);
    }
    let contention = meter.and_then(CpuMeter::finish);
    stop_worker(&handle, thread, messages);
    let input = broker.counts(INPUT);
    assert_eq!(input.subscriptions.first().map(|(_, counts)| counts.acked), Some(messages), "every input acked");
    let steady = progress.last.duration_since(progress.first).as_secs_f64();
    ThroughputRun {
        startup: progress.first.duration_since(started),
        rate: (messages - progress.first_count) as f64 / steady,
        end_to_end: messages as f64 / progress.last.duration_since(started).as_secs_f64(),
        contention,
    }
}

/// One swap run (reload, load only or baseline).
#[derive(Debug, Clone)]
struct SwapRun {
    /// From the rename to the first sample whose status shows every instance on the new
    /// version (load only and baseline: the length they were given).
    window: Duration,
    /// The longest time between two consecutive changes of the published count, among those
    /// overlapping the window.
    pause: Gap,
    /// When that gap ended, from the rename.
    pause_ended: Duration,
    /// The longest time between two consecutive changes over the rest of the run.
    elsewhere: Gap,
    /// The mean time between two samples.
    sample_period: Duration,
    /// Why the sampler ran at normal priority, if it did.
    not_realtime: Option<String>,
    /// What else the machine did during the run.
    contention: Option<Contention>,
}

/// A time between two consecutive changes of the published count, when it ended, and the count
/// it ended at.
#[derive(Debug, Clone, Copy)]
struct Gap {
    length: Duration,
    end: Instant,
    published: u64,
}

/// The longest interval between two consecutive `points` that overlaps `[from, to]`, and the
/// longest one that does not.
fn gaps(points: &[(Instant, u64)], from: Instant, to: Instant) -> (Gap, Gap) {
    let none = Gap { length: Duration::ZERO, end: from, published: 0 };
    let (mut inside, mut outside) = (none, none);
    for pair in points.windows(2) {
        let ((start, _), (end, published)) = (pair[0], pair[1]);
        let gap = Gap { length: end.duration_since(start), end, published };
        let longest = if end > from && start <= to { &mut inside } else { &mut outside };
        if gap.length > longest.length {
            *longest = gap;
        }
    }
    (inside, outside)
}

/// Puts the calling thread in the `SCHED_FIFO` class (priority 1) with `chrt`, so that it
/// preempts the worker's threads when it wakes; returns why not when that is refused. On two
/// CPUs, a sampler at normal priority is starved for up to ~15 ms while the instance thread
/// runs on one CPU and the coordinator loads the new plugin on the other, and those gaps in
/// its sampling would pass for pauses in the stream.
fn make_this_thread_realtime() -> Result<(), String> {
    let link = fs::read_link("/proc/thread-self").map_err(|e| format!("cannot read /proc/thread-self: {e}"))?;
    let tid = link.file_name().and_then(|tid| tid.to_str()).ok_or("no thread id in /proc/thread-self")?.to_owned();
    let output = Command::new("chrt")
        .args(["--fifo", "--pid", "1", &tid])
        .output()
        .map_err(|e| format!("cannot run chrt: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("chrt failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// What a swap run's sampler saw.
#[derive(Debug)]
struct Samples {
    /// When the published count was seen to change, and to what.
    changes: Vec<(Instant, u64)>,
    triggered: Instant,
    switched: Instant,
    sample_period: Duration,
    not_realtime: Option<String>,
}

/// What a swap run does once the stream is in its stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Drops the new version into the plugins directory: the worker loads it and swaps it in.
    Reload,
    /// Loads the new version on a thread of the bench at normal priority, as the worker's
    /// low-priority loader thread would (read, hash, private copy, open, checks), and swaps
    /// nothing: the load's cost alone when it competes with the instance as an equal.
    LoadOnly,
    /// Nothing: the stream's own gaps.
    Baseline,
}

/// What the sampler does at [`SWAP_TRIGGER`].
#[derive(Debug)]
enum Action {
    /// Renames the staged library to its place in the plugins directory.
    Drop {
        staged: PathBuf,
        dropped: PathBuf,
    },
    /// Loads `library` (pinned by `digest`) on a thread of its own, into the plugin cache `cache`.
    Load {
        library: PathBuf,
        digest: Sha256Digest,
        cache: PathBuf,
    },
    Nothing,
}

/// What the sampler needs to know about its run.
#[derive(Debug)]
struct SamplerPlan {
    broker: Arc<EmbeddedBroker>,
    handle: WorkerHandle,
    messages: u64,
    action: Action,
    /// The window's length when it does not end with the switch to the new version.
    window: Duration,
    deadline: Instant,
}

/// Loads `library` as the worker would, on a thread of its own.
fn load_aside(library: PathBuf, digest: Sha256Digest, cache: PathBuf) -> JoinHandle<()> {
    let load = move || {
        let loader = Loader::new(PluginCache::new(cache));
        loader.load(&library, Pin::Digest(digest)).expect("the new version loads");
    };
    std::thread::Builder::new().name("bench-load".into()).spawn(load).expect("the load thread starts")
}

/// Reads the output topic's published count every [`SAMPLE_SLEEP`] until it reaches
/// `messages`, dropping the new version in at [`SWAP_TRIGGER`], and the worker's status every
/// [`STATUS_EVERY`] samples until the switch.
fn sample(plan: SamplerPlan) -> Samples {
    let not_realtime = make_this_thread_realtime().err();
    let mut loading = None;
    let mut changes: Vec<(Instant, u64)> = Vec::with_capacity(1 << 16);
    let (mut last, mut samples) = (0, 0u32);
    let (mut triggered, mut switched): (Option<Instant>, Option<Instant>) = (None, None);
    let first_sample = Instant::now();
    loop {
        let published = plan.broker.counts(OUTPUT).published;
        let now = Instant::now();
        samples += 1;
        if published != last {
            changes.push((now, published));
            last = published;
        }
        match triggered {
            None if published >= SWAP_TRIGGER => {
                match &plan.action {
                    Action::Drop { staged, dropped } => {
                        fs::rename(staged, dropped).expect("the new version is renamed into the plugins directory");
                    }
                    Action::Load { library, digest, cache } => {
                        loading = Some(load_aside(library.clone(), *digest, cache.clone()));
                    }
                    Action::Nothing => {}
                }
                triggered = Some(Instant::now());
            }
            Some(at) if switched.is_none() => {
                let closes = match plan.action {
                    Action::Drop { .. } => samples % STATUS_EVERY == 0 && on_new_version(&plan.handle),
                    Action::Load { .. } | Action::Nothing => now.duration_since(at) >= plan.window,
                };
                if closes {
                    assert!(published < plan.messages, "the stream ended before the window closed");
                    switched = Some(now);
                }
            }
            _ => {}
        }
        if published >= plan.messages {
            break;
        }
        assert!(now < plan.deadline, "only {published} of {} outputs before the deadline", plan.messages);
        std::thread::sleep(SAMPLE_SLEEP);
    }
    let switched = switched.unwrap_or_else(|| {
        panic!("the stream of {} messages ended before the window closed; give it more messages", plan.messages)
    });
    if let Some(loading) = loading {
        loading.join().expect("the load thread does not panic");
    }
    Samples {
        changes,
        triggered: triggered.expect("the stream reached the trigger"),
        switched,
        sample_period: first_sample.elapsed() / samples,
        not_realtime,
    }
}

/// Runs the `versioned` function over `messages` inputs, its outputs read as `reader` says, and
/// does what `variant` says once [`SWAP_TRIGGER`] outputs were published. The window ends with
/// the switch to the new version for a reload, and after `window` for the other variants.
fn swap_run(
    root: &Path,
    fixtures: &Path,
    messages: u64,
    reader: Reader,
    variant: Variant,
    window: Duration,
) -> SwapRun {
    let dirs = Dirs::fresh(root);
    let spec = dirs.write_spec("tag", "versioned", "thread");
    let old = fixtures.join(FROM_VERSION).join("libversioned.so");
    install(&old, &dirs.plugins, &format!("libversioned-{FROM_VERSION}.so"), "versioned", FROM_VERSION);
    // The new version waits in the plugins directory under a name the scan ignores, with its
    // manifest in place (`libversioned-1.1.0.staged` has the file stem of the library it will
    // be renamed to): the drop is one rename.
    let new = fixtures.join(TO_VERSION).join("libversioned.so");
    let staged = install(&new, &dirs.plugins, &format!("libversioned-{TO_VERSION}.staged"), "versioned", TO_VERSION);
    let dropped = dirs.plugins.join(format!("libversioned-{TO_VERSION}.so"));
    let action = match variant {
        Variant::Reload => Action::Drop { staged, dropped },
        Variant::LoadOnly => {
            let bytes = fs::read(&new).unwrap_or_else(|e| panic!("cannot read {}: {e}", new.display()));
            Action::Load { digest: Sha256Digest::of(&bytes), library: new, cache: dirs.cache.join("aside") }
        }
        Variant::Baseline => Action::Nothing,
    };
    let reload = variant == Variant::Reload;

    let broker = preloaded_broker(&spec, messages);
    let meter = CpuMeter::start();
    let started = Instant::now();
    let tagged = |index: u64, version: &str| {
        let mut output = payload(index);
        output.extend_from_slice(format!(" from v{version}").as_bytes());
        output
    };
    let expected = (tagged(0, FROM_VERSION), tagged(messages - 1, if reload { TO_VERSION } else { FROM_VERSION }));
    let draining = (reader == Reader::Draining).then(|| drain_outputs(&broker, messages, started, expected));
    let (handle, thread) = start_worker(dirs.options(WATCH_INTERVAL, false), &dirs.cache, &broker);
    let plan = SamplerPlan {
        broker: Arc::clone(&broker),
        handle: handle.clone(),
        messages,
        action,
        window,
        deadline: started + RUN_DEADLINE,
    };
    let sampler = std::thread::Builder::new()
        .name("bench-sampler".into())
        .spawn(move || sample(plan))
        .expect("the sampler thread starts");
    let samples = sampler.join().expect("the sampler thread does not panic");
    let contention = meter.and_then(CpuMeter::finish);
    if let Some(draining) = draining {
        draining.join().expect("the reader thread does not panic");
    }
    let summary = stop_worker(&handle, thread, messages);
    let function = summary.functions.first().expect("the worker ran the bench's function");
    assert_eq!(function.reloads.len(), usize::from(reload), "one reload in a reload run, none otherwise");
    let Samples { changes, triggered, switched, sample_period, not_realtime } = samples;
    let (pause, elsewhere) = gaps(&changes, triggered, switched);
    SwapRun {
        window: switched.duration_since(triggered),
        pause,
        pause_ended: pause.end.saturating_duration_since(triggered),
        elsewhere,
        sample_period,
        not_realtime,
        contention,
    }
}

/// Whether every instance of the worker's function reports [`TO_VERSION`].
fn on_new_version(handle: &WorkerHandle) -> bool {
    let status = handle.status(None).expect("status of every function");
    let function = status.first().expect("the worker runs the bench's function");
    !function.instances.is_empty() && function.instances.iter().all(|instance| instance.version == TO_VERSION)
}

/// The smallest, the median and the largest of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[0], sorted[(sorted.len() - 1) / 2], sorted[sorted.len() - 1])
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The load averages of `/proc/loadavg`, to tell a quiet machine from a busy one.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Prints the throughput table, one row per way of reading the outputs.
fn report_throughput(plan: &Plan, throughput: &[(Reader, Vec<ThroughputRun>)]) {
    if throughput.iter().all(|(_, runs)| runs.is_empty()) {
        return;
    }
    println!();
    println!(
        "Throughput: `exclamation`, 1 instance, {} messages of {PAYLOAD} B, {} runs; rate from the first output to the last",
        plan.throughput_messages, plan.runs
    );
    println!();
    println!(
        "| output subscription | best | median | worst | end to end (median) | startup (median) | CPU outside this \
         process / steal (max) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (reader, runs) in throughput.iter().filter(|(_, runs)| !runs.is_empty()) {
        let (worst, median, best) = spread(&runs.iter().map(|run| run.rate / 1e6).collect::<Vec<_>>());
        let (_, end_to_end, _) = spread(&runs.iter().map(|run| run.end_to_end / 1e6).collect::<Vec<_>>());
        let (_, startup, _) = spread(&runs.iter().map(|run| millis(run.startup)).collect::<Vec<_>>());
        let most = |pick: fn(&Contention) -> f64| {
            runs.iter().filter_map(|run| run.contention.as_ref().map(pick)).reduce(f64::max)
        };
        let contention = most(|c: &Contention| c.others)
            .zip(most(|c: &Contention| c.steal))
            .map(|(others, steal)| Contention { others, steal });
        println!(
            "| {} | {best:.2} M msg/s | {median:.2} M msg/s | {worst:.2} M msg/s | {end_to_end:.2} M msg/s | \
             {startup:.0} ms | {} |",
            reader.describe(),
            show_contention(contention)
        );
    }
}

/// `12.34 ms @ 262656`: a gap and the published count it ended at.
fn show(gap: &Gap) -> String {
    format!("{:.2} ms @ {}", millis(gap.length), gap.published)
}

/// The three runs of one round of the swap measurement.
#[derive(Debug)]
struct SwapRound {
    reload: SwapRun,
    load_only: SwapRun,
    baseline: SwapRun,
}

/// Prints one row per round, then the median and worst of each column.
fn report_swaps(plan: &Plan, reader: Reader, rounds: &[SwapRound]) {
    if rounds.is_empty() {
        return;
    }
    println!();
    println!(
        "Swap pause: `versioned` {FROM_VERSION} -> {TO_VERSION}, 1 instance, {} messages of {PAYLOAD} B, output \
         subscription: {}, rename (or load) at {SWAP_TRIGGER} outputs, plugins directory scanned every \
         {WATCH_INTERVAL:?}. Gaps as `length @ published count at its end`.",
        plan.swap_messages,
        reader.describe()
    );
    println!();
    println!(
        "| round | pause: reload | it ended | window | pause: load only | pause: baseline | longest gap elsewhere \
         (baseline) | CPU outside this process / steal: reload; load only; baseline |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (index, round) in rounds.iter().enumerate() {
        println!(
            "| {} | **{}** | +{:.1} ms | {:.1} ms | {} | {} | {} | {}; {}; {} |",
            index + 1,
            show(&round.reload.pause),
            millis(round.reload.pause_ended),
            millis(round.reload.window),
            show(&round.load_only.pause),
            show(&round.baseline.pause),
            show(&round.baseline.elsewhere),
            show_contention(round.reload.contention),
            show_contention(round.load_only.contention),
            show_contention(round.baseline.contention)
        );
    }
    let column = |pick: &dyn Fn(&SwapRound) -> Duration| {
        let (_, median, worst) = spread(&rounds.iter().map(|round| millis(pick(round))).collect::<Vec<_>>());
        format!("{median:.2} / {worst:.2} ms")
    };
    println!(
        "| median / worst | **{}** | | {} | {} | {} | {} | |",
        column(&|round| round.reload.pause.length),
        column(&|round| round.reload.window),
        column(&|round| round.load_only.pause.length),
        column(&|round| round.baseline.pause.length),
        column(&|round| round.baseline.elsewhere.length)
    );
    let runs = || rounds.iter().flat_map(|round| [&round.reload, &round.load_only, &round.baseline]);
    let refusals: Vec<&str> = runs().filter_map(|run| run.not_realtime.as_deref()).collect();
    let (_, period, _) = spread(&runs().map(|run| millis(run.sample_period)).collect::<Vec<_>>());
    let priority = match refusals.first() {
        None => "at SCHED_FIFO priority 1 (chrt) in every run".to_owned(),
        Some(why) => format!("at normal priority in {} of {} runs ({why})", refusals.len(), rounds.len() * 3),
    };
    println!();
    println!("The sampler read the count every {:.0} us (median) and ran {priority}.", period * 1e3);
}

fn main() {
    let plan = Plan::from_args();
    let target = target_dir();
    let exclamation = require(&target.join("plugins").join("libexclamation.so"));
    let fixtures = target.join("fixtures").join("versioned");
    for version in [FROM_VERSION, TO_VERSION] {
        require(&fixtures.join(version).join("libversioned.so"));
    }
    let root = target.join("bench").join("worker");
    eprintln!(
        "worker bench: {plan:?}, {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    // The process runtime's children are the release pfn: this binary is not one.
    let pfn = require(&target.join("release").join("pfn"));
    // SAFETY: no other thread runs yet, so none reads the environment while it changes.
    unsafe { std::env::set_var(pfn::process::child_instance::PROGRAM_VARIABLE, &pfn) };
    let version = Manifest::read_for(&exclamation)
        .ok()
        .flatten()
        .map(|manifest| manifest.version)
        .unwrap_or_else(|| panic!("{} has no manifest: run scripts/build-plugins.sh", exclamation.display()));
    // One directory per runtime, each with its spec and the plugin.
    let setups: Vec<(Dirs, FunctionSpec)> = ["thread", "process"]
        .into_iter()
        .map(|runtime| {
            let dirs = Dirs::fresh(&root.join(format!("throughput-{runtime}")));
            let spec = dirs.write_spec("shout", "exclamation", runtime);
            install(&exclamation, &dirs.plugins, "libexclamation.so", "exclamation", &version);
            (dirs, spec)
        })
        .collect();

    let readers =
        [Reader::None, Reader::NoneWithMetrics, Reader::Draining, Reader::NoneProcess, Reader::DrainingProcess];
    let mut throughput: Vec<(Reader, Vec<ThroughputRun>)> =
        readers.into_iter().filter(|reader| plan.wants(reader.name())).map(|reader| (reader, Vec::new())).collect();
    for run in 1..=plan.runs {
        // Every other round in the reverse order, so that no setup always runs first.
        let reverse = run % 2 == 0;
        if reverse {
            throughput.reverse();
        }
        for (reader, runs) in &mut throughput {
            let (dirs, spec) = &setups[usize::from(reader.runtime() == "process")];
            let result = throughput_run(dirs, spec, plan.throughput_messages, *reader);
            eprintln!(
                "throughput run {run}/{}, {}: {:.2} M msg/s from the first output, {:.2} M msg/s end to end, \
                 startup {:.0} ms, outside this process / steal: {}",
                plan.runs,
                reader.describe(),
                result.rate / 1e6,
                result.end_to_end / 1e6,
                millis(result.startup),
                show_contention(result.contention)
            );
            runs.push(result);
        }
        if reverse {
            throughput.reverse();
        }
    }

    let mut swaps: Vec<(Reader, Vec<SwapRound>)> = [Reader::Draining, Reader::None]
        .into_iter()
        .filter(|reader| plan.wants(&format!("swap-{}", reader.name())))
        .map(|reader| (reader, Vec::new()))
        .collect();
    for round in 1..=plan.runs {
        for (reader, rounds) in &mut swaps {
            let root = root.join("swap");
            let run = |variant, window| swap_run(&root, &fixtures, plan.swap_messages, *reader, variant, window);
            let reload = run(Variant::Reload, Duration::ZERO);
            let load_only = run(Variant::LoadOnly, reload.window);
            let baseline = run(Variant::Baseline, reload.window);
            eprintln!(
                "swap round {round}/{}, {}: pause {} in a {:.1} ms window, load only {}, baseline {}; longest gap \
                 elsewhere {} (baseline {}); outside this process / steal: {}; {}; {}",
                plan.runs,
                reader.describe(),
                show(&reload.pause),
                millis(reload.window),
                show(&load_only.pause),
                show(&baseline.pause),
                show(&reload.elsewhere),
                show(&baseline.elsewhere),
                show_contention(reload.contention),
                show_contention(load_only.contention),
                show_contention(baseline.contention)
            );
            rounds.push(SwapRound { reload, load_only, baseline });
        }
    }

    report_throughput(&plan, &throughput);
    for (reader, runs) in &swaps {
        report_swaps(&plan, *reader, runs);
    }
    eprintln!("load average at the end: {}", load_average());
}
