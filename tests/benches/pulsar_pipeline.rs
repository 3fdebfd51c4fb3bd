//! A function on Pulsar against the same pipeline written by hand: how fast, and at what CPU
//! cost per message, a `pfn worker` running `exclamation` turns a pre-loaded topic into outputs,
//! next to a hand-written `pulsar`-crate loop and a Python `pulsar-client` loop, on one
//! pulsar-lite broker on this machine, in one invocation.
//!
//! Each run pre-loads [`Plan::messages`] messages of [`PAYLOAD`] bytes into a fresh input topic
//! (a Rust producer through a relay, before the contender starts), then starts one contender,
//! which consumes the topic (Shared subscription, receiver queue 1000, from the earliest message),
//! sends each payload + `!` to a fresh output topic (one unbatched producer whose queue blocks
//! when full) and acknowledges each input only once its output has a send receipt:
//!
//! - **pfn**: `target/release/pfn worker --pulsar-url <relay>` with one function, one instance.
//! - **rust**: [`rust_loop`], this same binary executed again with [`ROLE_ENV`] set, so that the
//!   loop is a process of its own, through a relay of its own like the worker.
//! - **python**: `scripts/bench-pulsar.py` on the venv of `scripts/setup.sh`, connected to the
//!   broker directly (the C++ client reads pulsar-lite's frames; only the stock Rust crate
//!   needs the relay).
//! - **pfn-unbatched**, only when asked for: the same worker with the spec's `producer_config`
//!   turning batching (and compression) off: the producer pfn had before Pulsar Functions'
//!   defaults.
//! - **pfn-router**, only when asked for: the `router` plugin instead of `exclamation`, over JSON
//!   inputs of the same size (`{"route":"rN","m":"<numbered payload>"}`) that it publishes through
//!   `ctx.publish` to four topics `<output>-r0` … `<output>-r3` by their `route`.
//! - **rust-batch**, only when asked for: the Rust loop shaped like the worker's instance loop
//!   (take up to 512 inputs, send all, wait for every receipt, acknowledge all, receive again),
//!   to tell what that shape costs from what the rest of the worker costs.
//!
//! The window of a run starts when the first input reaches the contender and ends when its last
//! input is acknowledged. For the two Rust contenders both ends are seen from outside, the same
//! way: the start is the relay's first MESSAGE frame (the relays run in this process, polled
//! every [`TICK`]); the end is the worker's `acked_total` reaching the count (its endpoint
//! asked over the Unix socket) or the loop's `done` line. The Python loop and the Rust loop also
//! report their own window (first receive to last acknowledgement), as a cross-check. CPU is
//! utime + stime from `/proc/<pid>/stat` over that window, for the contender, for this process
//! (the relays), for the broker, and for the rest of the machine; the contender's and the
//! broker's threads are also shown by name (`/proc/<pid>/task/*`), with context switches, and
//! the machine's idle time.
//!
//! After every run the outputs are read back and checked: each input once, shouted.
//!
//! Needs `scripts/setup.sh` (pulsar-lite, pulsar-client) and `scripts/build-plugins.sh` (the
//! release `pfn`, `target/plugins/libexclamation.so`). Run with
//! `cargo bench -p pfn-tests --bench pulsar_pipeline`; without `--bench` (`cargo test --benches`)
//! it does one short round as a smoke test. `PULSAR_BENCH_MESSAGES` (default 100,000),
//! `PULSAR_BENCH_ROUNDS` (default 3) and `PULSAR_BENCH_ONLY` (comma-separated `pfn`, `rust`,
//! `python`, `pfn-unbatched`, `pfn-router`, `rust-batch`; default the first three, in that
//! order) change the plan; `PULSAR_BENCH_PRELOAD_BATCH=N` pre-loads the inputs in batched
//! entries of N messages, as clients' default batching makes them (default: one per entry);
//! `PULSAR_BENCH_BATCH` sets the batch of `rust-batch` (default 512, the worker's);
//! `PULSAR_BENCH_PERF=DIR` records each Rust contender from its first input with
//! `perf record --call-graph dwarf` into `DIR` (this slows them: not for the numbers).

use std::{
    collections::{BTreeMap, HashMap},
    env, fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use pfn::telemetry::Count;
use pfn_tests::{
    broker::TestBroker,
    fixtures::{pfn_bin, plugin, target_dir, workspace_root},
    pulsar_client::{Outgoing, PulsarPeer, unique_topic},
    pulsar_functions::{PAYLOAD, numbered_payload, tally},
    relay::Relay,
    worker::WorkerDirs,
};

/// Set (to [`RUST_LOOP_ROLE`]) when this binary runs as the hand-written loop.
const ROLE_ENV: &str = "PFN_PULSAR_BENCH_ROLE";
const RUST_LOOP_ROLE: &str = "rust-loop";
/// The receiver queue (flow permits) of every contender's consumer.
const RECEIVER_QUEUE: u32 = 1000;
/// How often the bench looks at the relay's counters and the contenders' progress.
const TICK: Duration = Duration::from_millis(1);
/// How often the worker's status is asked for while far from done, and near the end (the last
/// [`NEAR_END`] of the messages).
const STATUS_EVERY_FAR: Duration = Duration::from_millis(20);
const STATUS_EVERY_NEAR: Duration = Duration::from_millis(2);
const NEAR_END: f64 = 0.05;
/// A run that has not finished after this long has hung.
const RUN_DEADLINE: Duration = Duration::from_secs(180);
/// How long reading the outputs back waits for one more message.
const VERIFY_IDLE: Duration = Duration::from_secs(20);
/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn main() {
    if env::var(ROLE_ENV).as_deref() == Ok(RUST_LOOP_ROLE) {
        rust_loop::child();
        return;
    }
    let plan = Plan::from_env(env::args().any(|arg| arg == "--bench"));
    let python = python_venv();
    let script = workspace_root().join("scripts/bench-pulsar.py");
    let exclamation = plugin("exclamation");
    let router = plugin("router");
    // Says to run scripts/build-plugins.sh when the release binary is missing.
    let _ = pfn_bin();
    if !python.is_file() {
        eprintln!("missing {}: run scripts/setup.sh first", python.display());
        std::process::exit(2);
    }

    let broker = TestBroker::start();
    let broker_pid = child_named("pulsar-lite");
    let tools_relay = Relay::start(broker.addr()).expect("tools relay");
    let tools = PulsarPeer::connect(&tools_relay.url());
    eprintln!(
        "pulsar pipeline: {} messages of {PAYLOAD} B ({} per entry), {} round(s) of {:?}; broker {} (pid {broker_pid:?}); \
         load {}",
        plan.messages,
        plan.preload_batch.unwrap_or(1),
        plan.rounds,
        plan.contenders,
        broker.addr(),
        loadavg()
    );
    let bench = Bench { plan: &plan, broker: &broker, broker_pid, tools: &tools, exclamation, router, python, script };
    let mut runs = Vec::new();
    for round in 1..=plan.rounds {
        for &contender in &plan.contenders {
            let run = bench.run(contender, round);
            eprintln!("  {}", run.line());
            runs.push(run);
        }
    }
    report(&plan, &runs);
}

/// Who processes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Pfn,
    Rust,
    Python,
    /// The worker with batching off (not run unless asked for).
    PfnUnbatched,
    /// The worker running the router over JSON inputs (not run unless asked for).
    PfnRouter,
    /// The Rust loop shaped like the worker's instance loop (not run unless asked for).
    RustBatch,
    /// The worker with its instance in a child process (`runtime = "process"`; not run
    /// unless asked for). Its CPU is the worker's and the child's.
    PfnProcess,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Self::Pfn => "pfn",
            Self::Rust => "rust",
            Self::Python => "python",
            Self::PfnUnbatched => "pfn-unbatched",
            Self::PfnRouter => "pfn-router",
            Self::RustBatch => "rust-batch",
            Self::PfnProcess => "pfn-process",
        }
    }
}

/// What one invocation runs.
#[derive(Debug)]
struct Plan {
    messages: usize,
    rounds: usize,
    contenders: Vec<Contender>,
    /// Messages per entry when pre-loading in batches; `None`: one per entry.
    preload_batch: Option<u32>,
    /// Where `perf record` data goes, when asked for.
    perf: Option<PathBuf>,
}

impl Plan {
    fn from_env(full: bool) -> Self {
        let number = |name: &str, default: usize| {
            env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
        };
        let contenders = env::var("PULSAR_BENCH_ONLY").map_or_else(
            |_| vec![Contender::Pfn, Contender::Rust, Contender::Python],
            |only| {
                only.split(',')
                    .map(|name| match name.trim() {
                        "pfn" => Contender::Pfn,
                        "rust" => Contender::Rust,
                        "python" => Contender::Python,
                        "pfn-unbatched" => Contender::PfnUnbatched,
                        "pfn-router" => Contender::PfnRouter,
                        "pfn-process" => Contender::PfnProcess,
                        "rust-batch" => Contender::RustBatch,
                        other => panic!(
                            "PULSAR_BENCH_ONLY: unknown contender {other:?} \
                             (pfn, rust, python, pfn-unbatched, pfn-router, rust-batch)"
                        ),
                    })
                    .collect()
            },
        );
        Self {
            messages: number("PULSAR_BENCH_MESSAGES", if full { 100_000 } else { 2_000 }),
            rounds: number("PULSAR_BENCH_ROUNDS", if full { 3 } else { 1 }),
            contenders,
            preload_batch: env::var("PULSAR_BENCH_PRELOAD_BATCH")
                .ok()
                .map(|v| v.parse().unwrap_or_else(|_| panic!("PULSAR_BENCH_PRELOAD_BATCH={v} is not a number"))),
            perf: env::var_os("PULSAR_BENCH_PERF").map(PathBuf::from),
        }
    }
}

/// What every run shares.
struct Bench<'a> {
    plan: &'a Plan,
    broker: &'a TestBroker,
    broker_pid: Option<u32>,
    tools: &'a PulsarPeer,
    exclamation: PathBuf,
    router: PathBuf,
    python: PathBuf,
    script: PathBuf,
}

/// One contender's run, measured.
#[derive(Debug, Clone)]
struct Run {
    contender: Contender,
    round: usize,
    messages: usize,
    /// From starting the process to the first input it received.
    startup: Duration,
    /// The window: first input received to last input acknowledged.
    window: Duration,
    /// The window as this process saw it, which the CPU figures other than the contender's
    /// are measured over (the same as `window` but for the Python loop).
    observed: Duration,
    /// The contender's CPU over the window (its own figure for the Python loop), and over its
    /// whole life up to the window's end.
    cpu: Duration,
    cpu_whole: Duration,
    /// What the loop measured itself (window, CPU), for the two loops.
    own: Option<(Duration, Duration)>,
    /// This process's CPU over the window: the relays (idle for the Python loop).
    bench_cpu: Duration,
    broker_cpu: Option<Duration>,
    /// The rest of the machine over the window, and steal, in percent of one CPU.
    outside: f64,
    steal: f64,
    /// The machine's idle time over the window, in percent of all its CPUs.
    idle: f64,
    /// Irq and softirq time over the window (part of `outside`), in percent of one CPU.
    irq: f64,
    /// How long pre-loading the input took.
    preload: Duration,
    /// The contender's threads over the window, by name: CPU and context switches.
    threads: Vec<(String, Duration, u64)>,
    /// The broker's threads, the same way.
    broker_threads: Vec<(String, Duration, u64)>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.window.as_secs_f64()
    }

    fn cpu_per_message(&self) -> f64 {
        micros_per_message(self.cpu, self.messages)
    }

    /// `pfn-pulsar 20.1 µs, 3.1 cs; ...`: CPU and context switches per message, by thread name.
    fn thread_split(&self) -> String {
        let per_message = |switches: u64| switches as f64 / self.messages as f64;
        let parts: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, cpu, switches)| !cpu.is_zero() || *switches > 0)
            .map(|(name, cpu, switches)| {
                format!("{name} {:.1} µs, {:.2} cs", micros_per_message(*cpu, self.messages), per_message(*switches))
            })
            .collect();
        parts.join("; ")
    }

    /// `tokio-rt-worker 45 %; ...`: how busy the broker's threads were, by name, in percent of
    /// one CPU over the window.
    fn broker_split(&self) -> String {
        let parts: Vec<String> = self
            .broker_threads
            .iter()
            .filter(|(_, cpu, _)| !cpu.is_zero())
            .map(|(name, cpu, _)| format!("{name} {:.0} %", cpu.as_secs_f64() / self.observed.as_secs_f64() * 100.0))
            .collect();
        parts.join("; ")
    }

    /// The run's figures as the report prints them.
    fn figures(&self) -> Figures {
        let per_message = |cpu: Duration| micros_per_message(cpu, self.messages);
        Figures {
            rate: format!("{:.0}", self.rate()),
            cpu: format!("{:.1}", self.cpu_per_message()),
            cpu_whole: format!("{:.1}", per_message(self.cpu_whole)),
            startup_ms: format!("{:.0}", self.startup.as_secs_f64() * 1e3),
            relay: format!("{:.1}", per_message(self.bench_cpu)),
            broker: self.broker_cpu.map_or_else(|| "?".into(), |cpu| format!("{:.1}", per_message(cpu))),
            own: self.own.map(|(window, cpu)| {
                (format!("{:.0}", self.messages as f64 / window.as_secs_f64()), format!("{:.1}", per_message(cpu)))
            }),
            outside: format!("{:.0} %", self.outside),
            irq: format!("{:.0} %", self.irq),
            steal: format!("{:.0} %", self.steal),
            idle: format!("{:.0} %", self.idle),
        }
    }

    fn line(&self) -> String {
        let f = self.figures();
        let own = f.own.as_ref().map_or_else(String::new, |(rate, cpu)| format!("; own: {rate} msg/s, {cpu} µs/msg"));
        format!(
            "round {} {:>6}: {:>6} msg/s, {} µs CPU/msg (whole process {}), startup {} ms, relay {} µs/msg, broker {} \
             µs/msg, outside {} (irq {}), steal {}, idle {}, preload {:.1} s{own}\n    threads: {}\n    broker threads: {}",
            self.round,
            self.contender.name(),
            f.rate,
            f.cpu,
            f.cpu_whole,
            f.startup_ms,
            f.relay,
            f.broker,
            f.outside,
            f.irq,
            f.steal,
            f.idle,
            self.preload.as_secs_f64(),
            self.thread_split(),
            self.broker_split(),
        )
    }

    /// The run as a row of the report's main table.
    fn row(&self) -> String {
        let f = self.figures();
        let own = f.own.as_ref().map_or_else(String::new, |(rate, cpu)| format!("{rate}, {cpu}"));
        format!(
            "| {} | {} | {} | {} | {} | {own} | {} ms | {} | {} | {} ({}) / {} | {} |",
            self.round,
            self.contender.name(),
            f.rate,
            f.cpu,
            f.cpu_whole,
            f.startup_ms,
            f.relay,
            f.broker,
            f.outside,
            f.irq,
            f.steal,
            f.idle,
        )
    }
}

/// One run's figures, formatted once for both the progress line and the table.
struct Figures {
    rate: String,
    cpu: String,
    cpu_whole: String,
    startup_ms: String,
    relay: String,
    broker: String,
    /// The contender's own rate and CPU per message, when it measures itself.
    own: Option<(String, String)>,
    outside: String,
    irq: String,
    steal: String,
    idle: String,
}

fn micros_per_message(cpu: Duration, messages: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / messages as f64
}

impl Bench<'_> {
    fn run(&self, contender: Contender, round: usize) -> Run {
        let messages = self.plan.messages;
        let input = unique_topic(&format!("bench-{}-in", contender.name()));
        let output = unique_topic(&format!("bench-{}-out", contender.name()));
        let started = Instant::now();
        let payload = if contender == Contender::PfnRouter { routed_payload } else { numbered_payload };
        let inputs = (0..messages).map(|i| Outgoing { payload: payload(i), ..Outgoing::default() });
        self.tools.produce_in_batches(&input, inputs, self.plan.preload_batch);
        let preload = started.elapsed();

        let measured = match contender {
            Contender::Pfn | Contender::PfnUnbatched | Contender::PfnRouter | Contender::PfnProcess => {
                self.run_pfn(&input, &output, round, contender)
            }
            Contender::Rust => self.run_rust(&input, &output, round, "pipelined"),
            Contender::RustBatch => self.run_rust(&input, &output, round, "batched"),
            Contender::Python => self.run_python(&input, &output),
        };
        if contender == Contender::PfnRouter {
            verify_routed(self.tools, &output, messages);
        } else {
            verify(self.tools, &output, messages, contender);
        }
        let Measured { spawned, start, end, own } = measured;
        let ticks = |from: u64, to: u64| Duration::from_secs_f64(to.saturating_sub(from) as f64 / TICKS_PER_SECOND);
        // The window as this process saw it; the Python loop's own is the one it reports (it
        // cannot be seen from outside but through its stdout).
        let observed = end.at.duration_since(start.at);
        let (window, cpu) = match (contender, own) {
            (Contender::Python, Some(own)) => own,
            _ => (observed, ticks(start.contender, end.contender)),
        };
        let busy = end.machine.saturating_sub(start.machine);
        let accounted = [
            end.contender.saturating_sub(start.contender),
            end.this.saturating_sub(start.this),
            end.broker.unwrap_or(0).saturating_sub(start.broker.unwrap_or(0)),
        ];
        let percent = |t: u64| t as f64 / (observed.as_secs_f64() * TICKS_PER_SECOND) * 100.0;
        Run {
            contender,
            round,
            messages,
            startup: start.at.duration_since(spawned),
            window,
            observed,
            cpu,
            cpu_whole: ticks(0, end.contender),
            own,
            bench_cpu: ticks(start.this, end.this),
            broker_cpu: start.broker.zip(end.broker).map(|(from, to)| ticks(from, to)),
            outside: percent(busy.saturating_sub(accounted.iter().sum())),
            steal: percent(end.steal.saturating_sub(start.steal)),
            idle: percent(end.idle.saturating_sub(start.idle)) / end.cpus.max(1) as f64,
            irq: percent(end.irq.saturating_sub(start.irq)),
            preload,
            threads: thread_deltas(&start.threads, &end.threads),
            broker_threads: thread_deltas(&start.broker_threads, &end.broker_threads),
        }
    }

    fn run_pfn(&self, input: &str, output: &str, round: usize, contender: Contender) -> Measured {
        let relay = Relay::start(self.broker.addr()).expect("relay");
        let scratch = tempfile::Builder::new().prefix("pfn-pulsar-bench-").tempdir().expect("scratch dir");
        let dirs = WorkerDirs::create(scratch.path());
        let (plugins, functions, state) = (&dirs.plugins, &dirs.functions, &dirs.state);
        let (library, spec) = match contender {
            Contender::PfnRouter => {
                let routes: Vec<String> = (0..ROUTES)
                    .map(|r| format!("{{ field = \"route\", equals = \"r{r}\", topic = \"{output}-r{r}\" }}"))
                    .collect();
                let spec = format!(
                    "name = \"route\"\nplugin = \"router\"\ninputs = [\"{input}\"]\nsubscription_position = \"earliest\"\n\
                     [user_config]\ndefault_topic = \"{output}-other\"\nroutes = [{}]\n",
                    routes.join(", ")
                );
                (&self.router, spec)
            }
            _ => {
                let unbatched = match contender {
                    Contender::PfnUnbatched => "[producer_config]\nbatching = false\ncompression_type = \"NONE\"\n",
                    Contender::PfnProcess => "runtime = \"process\"\n",
                    _ => "",
                };
                let spec = format!(
                    "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"{input}\"]\noutput = \"{output}\"\n\
                     subscription_position = \"earliest\"\n{unbatched}"
                );
                (&self.exclamation, spec)
            }
        };
        // The library and the manifest `scripts/build-plugins.sh` pinned it with.
        let file = library.file_name().expect("a library file name");
        let manifest = library.with_extension("pfn.toml");
        let manifest_name = manifest.file_name().expect("a manifest file name");
        fs::copy(&manifest, plugins.join(manifest_name)).expect("copy the manifest");
        fs::copy(library, plugins.join(file)).expect("copy the plugin");
        fs::write(functions.join("function.toml"), spec).expect("write the spec");
        let log = scratch.path().join("worker.log");
        let spawned = Instant::now();
        let mut worker = dirs
            .command(scratch.path())
            .env("PFN_LOG", "warn")
            .args(["--pulsar-url", &relay.url()])
            .stderr(fs::File::create(&log).expect("worker log"))
            .spawn()
            .expect("pfn worker starts");
        let pid = worker.id();
        let mut perf = None;
        let socket = state.join("worker.sock");
        let total = self.plan.messages as u64;
        let mut acked = 0_u64;
        let mut asked = Instant::now() - STATUS_EVERY_FAR;
        let near = total - (total as f64 * NEAR_END) as u64;
        let measured = measure(
            pid,
            self.broker_pid,
            spawned,
            || self.started_via(&relay, pid, "pfn", round, &mut perf),
            || {
                let every = if acked >= near { STATUS_EVERY_NEAR } else { STATUS_EVERY_FAR };
                if asked.elapsed() >= every {
                    asked = Instant::now();
                    acked = acked_total(&socket);
                }
                (acked >= total).then(Instant::now)
            },
            || fs::read_to_string(&log).unwrap_or_default(),
        );
        stop_perf(perf);
        let signalled = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(signalled.success(), "could not signal the worker");
        let status = worker.wait().expect("the worker exits");
        assert!(status.success(), "worker exit: {status}\n{}", fs::read_to_string(&log).unwrap_or_default());
        measured
    }

    fn run_rust(&self, input: &str, output: &str, round: usize, mode: &str) -> Measured {
        let relay = Relay::start(self.broker.addr()).expect("relay");
        let spawned = Instant::now();
        let child = Command::new(env::current_exe().expect("this bench's path"))
            .env(ROLE_ENV, RUST_LOOP_ROLE)
            .env("PFN_BENCH_URL", relay.url())
            .env("PFN_BENCH_INPUT", input)
            .env("PFN_BENCH_OUTPUT", output)
            .env("PFN_BENCH_COUNT", self.plan.messages.to_string())
            .env("PFN_BENCH_MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Rust loop starts");
        let mut child = Lines::of(child);
        let pid = child.pid();
        let mut perf = None;
        let mut measured = measure(
            pid,
            self.broker_pid,
            spawned,
            || self.started_via(&relay, pid, mode, round, &mut perf),
            || child.done(),
            String::new,
        );
        stop_perf(perf);
        measured.own = child.own();
        child.finish();
        measured
    }

    fn run_python(&self, input: &str, output: &str) -> Measured {
        let spawned = Instant::now();
        let child = Command::new(&self.python)
            .arg(&self.script)
            .args(["--url", &self.broker.url(), "--input", input, "--output", output, "--wait-stdin"])
            .args(["--count", &self.plan.messages.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python loop starts");
        let mut child = Lines::of(child);
        let pid = child.pid();
        let mut measured = {
            // Both probes read the same stdout.
            let child = std::cell::RefCell::new(&mut child);
            let started = || child.borrow_mut().first().is_some();
            measure(pid, self.broker_pid, spawned, started, || child.borrow_mut().done(), String::new)
        };
        // The Python loop cannot be seen from the outside (no relay): its own window it is.
        let own = child.own().expect("the Python loop's result");
        measured.own = Some(own);
        child.finish();
        measured
    }

    /// Whether the first input went through `relay`; if so, and the plan asks for profiles,
    /// attaches `perf` to `pid` (once every thread is there: `perf record -p` missed the
    /// worker's instance thread when attached at spawn).
    fn started_via(&self, relay: &Relay, pid: u32, name: &str, round: usize, perf: &mut Option<Child>) -> bool {
        let started = relay.stats().checksums_inserted > 0;
        if started && perf.is_none() {
            *perf = self.perf(pid, name, round);
        }
        started
    }

    /// `perf record --call-graph dwarf` attached to `pid`, when the plan asks for it.
    fn perf(&self, pid: u32, name: &str, round: usize) -> Option<Child> {
        let dir = self.plan.perf.as_ref()?;
        fs::create_dir_all(dir).expect("perf directory");
        let data = dir.join(format!("{name}-{round}.data"));
        let child = Command::new("perf")
            .args(["record", "--call-graph", "dwarf,8192", "-m", "4096", "-F", "499", "-p", &pid.to_string(), "-o"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf record starts");
        Some(child)
    }
}

fn stop_perf(perf: Option<Child>) {
    if let Some(mut perf) = perf {
        let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
    }
}

/// Reads the outputs back: every input once, shouted. Panics otherwise.
fn verify(tools: &PulsarPeer, output: &str, messages: usize, contender: Contender) {
    let mut reader = tools.subscribe(output, "verify");
    let mut outputs = reader.receive(messages, VERIFY_IDLE);
    let read = outputs.len();
    outputs.extend(reader.receive(1, Duration::from_millis(500)));
    let seen = tally(&outputs, messages);
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    assert!(missing == 0, "{}: {missing} of {messages} inputs have no output ({read} outputs read)", contender.name());
    if duplicated > 0 {
        eprintln!("  {}: {duplicated} inputs have more than one output (at-least-once)", contender.name());
    }
}

/// The topics the router contender routes to.
const ROUTES: usize = 4;

/// Input `i` of the router contender: a JSON object of [`PAYLOAD`] bytes naming its route
/// (`r0` … `r3`) and carrying the numbered payload, shortened to fit.
fn routed_payload(i: usize) -> Vec<u8> {
    let head = format!("{{\"route\":\"r{}\",\"m\":\"", i % ROUTES);
    let mut numbered = numbered_payload(i);
    numbered.truncate(PAYLOAD - head.len() - 2);
    let mut payload = head.into_bytes();
    payload.extend(numbered);
    payload.extend(b"\"}");
    payload
}

/// Reads the routed topics back: every input once, on the topic of its route. Panics otherwise.
fn verify_routed(tools: &PulsarPeer, output: &str, messages: usize) {
    let mut seen = vec![0_u32; messages];
    for route in 0..ROUTES {
        let topic = format!("{output}-r{route}");
        let mut reader = tools.subscribe(&topic, "verify");
        let expected = (0..messages).filter(|i| i % ROUTES == route).count();
        let mut routed = reader.receive(expected, VERIFY_IDLE);
        routed.extend(reader.receive(1, Duration::from_millis(500)));
        for message in routed {
            let text = message.text();
            let number: usize = text
                .split("\"m\":\"m")
                .nth(1)
                .and_then(|rest| rest.get(..8))
                .and_then(|digits| digits.parse().ok())
                .unwrap_or_else(|| panic!("no number in {text:?}"));
            assert_eq!(number % ROUTES, route, "input {number} on {topic}");
            seen[number] += 1;
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    assert!(missing == 0, "pfn-router: {missing} of {messages} inputs were not routed");
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    if duplicated > 0 {
        eprintln!("  pfn-router: {duplicated} inputs were routed more than once (at-least-once)");
    }
}

/// The sum of `acked_total` over the worker's instances (`pfn functions status` on its
/// socket); 0 while it does not answer.
fn acked_total(socket: &Path) -> u64 {
    let status = Command::new(pfn_bin())
        .env("PFN_LOG", "warn")
        .arg("functions")
        .arg("--worker")
        .arg(socket)
        .arg("status")
        .output();
    let Ok(status) = status else { return 0 };
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(&status.stdout) else { return 0 };
    let instances = status["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|function| function["instances"].as_array().into_iter().flatten());
    instances.filter_map(|instance| instance[Count::Acked.status_name()].as_u64()).sum()
}

/// CPU ticks so far of the contender, this process, the broker and the machine.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    contender: u64,
    this: u64,
    broker: Option<u64>,
    /// User, nice, system, irq and softirq of `/proc/stat` (not idle, iowait or steal).
    machine: u64,
    steal: u64,
    /// Idle and iowait of `/proc/stat`, and how many CPUs it counts.
    idle: u64,
    /// Irq and softirq of `/proc/stat` (loopback TCP is mostly softirq).
    irq: u64,
    cpus: usize,
    /// The contender's and the broker's threads, summed by name.
    threads: BTreeMap<String, ThreadCounts>,
    broker_threads: BTreeMap<String, ThreadCounts>,
}

/// CPU ticks and context switches (voluntary and not) of some threads.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadCounts {
    ticks: u64,
    switches: u64,
}

/// CPU and context switches from `start` to `end`, by thread name.
fn thread_deltas(
    start: &BTreeMap<String, ThreadCounts>,
    end: &BTreeMap<String, ThreadCounts>,
) -> Vec<(String, Duration, u64)> {
    end.iter()
        .map(|(name, counts)| {
            let before = start.get(name).copied().unwrap_or_default();
            let cpu = counts.ticks.saturating_sub(before.ticks) as f64 / TICKS_PER_SECOND;
            (name.clone(), Duration::from_secs_f64(cpu), counts.switches.saturating_sub(before.switches))
        })
        .collect()
}

/// The threads of `pid`, summed by name. Threads that exit within the window are lost (the
/// contenders' long-lived threads do not).
fn threads_of(pid: u32) -> BTreeMap<String, ThreadCounts> {
    let mut threads = BTreeMap::<String, ThreadCounts>::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return threads };
    for task in tasks.flatten() {
        let (Ok(stat), Ok(status)) =
            (fs::read_to_string(task.path().join("stat")), fs::read_to_string(task.path().join("status")))
        else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let Some((_, name)) = head.split_once(" (") else { continue };
        // `rest` starts at field 3 (state); utime is 14, stime 15.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(11) + field(12);
        let switches: u64 = status
            .lines()
            .filter(|line| {
                line.starts_with("voluntary_ctxt_switches") || line.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        let counts = threads.entry(name.to_owned()).or_default();
        counts.ticks += ticks;
        counts.switches += switches;
    }
    threads
}

impl Snapshot {
    fn take(at: Instant, contender: u32, broker: Option<u32>) -> Self {
        let stat = fs::read_to_string("/proc/stat").expect("/proc/stat");
        let cpus = stat.lines().filter(|line| line.starts_with("cpu") && !line.starts_with("cpu ")).count();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .expect("a cpu line")
            .split_whitespace()
            .skip(1)
            .filter_map(|field| field.parse().ok())
            .collect();
        let machine = fields.iter().take(7).enumerate().filter(|(index, _)| !matches!(index, 3 | 4)).map(|(_, t)| t);
        Self {
            at,
            contender: process_ticks(&contender.to_string()).expect("the contender is running")
                + children_ticks(contender),
            this: process_ticks("self").expect("/proc/self/stat"),
            broker: broker.and_then(|pid| process_ticks(&pid.to_string())),
            machine: machine.sum(),
            steal: fields.get(7).copied().unwrap_or(0),
            idle: fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0),
            irq: fields.get(5).copied().unwrap_or(0) + fields.get(6).copied().unwrap_or(0),
            cpus,
            threads: threads_of(contender),
            broker_threads: broker.map(threads_of).unwrap_or_default(),
        }
    }
}

/// utime + stime of the running children of `parent` (the process runtime's instances).
fn children_ticks(parent: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let parent_of = stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            (parent_of == parent).then(|| process_ticks(&pid.to_string())).flatten()
        })
        .sum()
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name start at field 3 (state); utime is 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A child of this process with this command name.
fn child_named(name: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1;
        let ppid = rest.split_whitespace().nth(1)?;
        (comm == name && ppid == me).then_some(pid)
    })
}

/// A run's window and what was measured at its two ends.
struct Measured {
    spawned: Instant,
    start: Snapshot,
    end: Snapshot,
    own: Option<(Duration, Duration)>,
}

/// Waits, ticking every [`TICK`], for `started` and then for `finished` (which says when it
/// finished), taking a snapshot at each; `log` says why when the deadline passes.
fn measure(
    pid: u32,
    broker: Option<u32>,
    spawned: Instant,
    mut started: impl FnMut() -> bool,
    mut finished: impl FnMut() -> Option<Instant>,
    log: impl Fn() -> String,
) -> Measured {
    let deadline = spawned + RUN_DEADLINE;
    let mut start = None;
    loop {
        assert!(Instant::now() < deadline, "no end after {RUN_DEADLINE:?}; log:\n{}", log());
        match start {
            None if started() => start = Some(Snapshot::take(Instant::now(), pid, broker)),
            Some(_) => {
                if let Some(at) = finished() {
                    let end = Snapshot::take(at, pid, broker);
                    let start = start.take().expect("started");
                    return Measured { spawned, start, end, own: None };
                }
            }
            None => {}
        }
        thread::sleep(TICK);
    }
}

/// A loop process whose stdout says `first` at its first input and its result when done.
struct Lines {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, String)>,
    first: Option<Instant>,
    done: Option<(Instant, String)>,
}

impl Lines {
    fn of(mut child: Child) -> Self {
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines, first: None, done: None }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn drain(&mut self) {
        while let Ok((at, line)) = self.lines.try_recv() {
            if line == "first" {
                self.first = Some(at);
            } else if line.starts_with('{') {
                self.done = Some((at, line));
            }
        }
        if self.done.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            panic!("the loop exited with {status} before it was done");
        }
    }

    fn first(&mut self) -> Option<Instant> {
        self.drain();
        self.first
    }

    fn done(&mut self) -> Option<Instant> {
        self.drain();
        self.done.as_ref().map(|(at, _)| *at)
    }

    /// The window and CPU the loop measured itself (`elapsed_s`, `cpu_s` of its result line).
    fn own(&self) -> Option<(Duration, Duration)> {
        let (_, line) = self.done.as_ref()?;
        let result: HashMap<String, serde_json::Value> = serde_json::from_str(line).ok()?;
        let seconds = |key: &str| result.get(key)?.as_f64().map(Duration::from_secs_f64);
        Some((seconds("elapsed_s")?, seconds("cpu_s")?))
    }

    /// Closes the loop's stdin, which tells it to exit, and waits for it.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("the loop exits");
        assert!(status.success(), "the loop exited with {status}");
    }
}

fn python_venv() -> PathBuf {
    target_dir().join("pulsar-venv/bin/python")
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Best, median and worst of `values`, where best is the highest when `high_is_best`.
fn spread(mut values: Vec<f64>, high_is_best: bool) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    if high_is_best {
        values.reverse();
    }
    (values[0], values[values.len() / 2], values[values.len() - 1])
}

/// Prints the tables of `docs/BENCHMARKS.md` to stdout.
fn report(plan: &Plan, runs: &[Run]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n{} messages of {PAYLOAD} B per run, {} round(s); load now {}\n",
        plan.messages,
        plan.rounds,
        loadavg()
    );
    let _ = writeln!(
        out,
        "| round | contender | msg/s | CPU µs/msg (window) | CPU µs/msg (whole process) | own: msg/s, µs/msg | startup | \
         relay (bench process) µs/msg | broker µs/msg | outside (irq) / steal | machine idle |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let _ = writeln!(out, "{}", run.row());
    }
    let _ = writeln!(
        out,
        "\n| round | contender | by thread: CPU µs/msg, context switches/msg | broker threads: % of one CPU |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            run.round,
            run.contender.name(),
            run.thread_split(),
            run.broker_split()
        );
    }
    let _ = writeln!(out, "\n| contender | msg/s best / median / worst | CPU µs/msg best / median / worst |");
    let _ = writeln!(out, "|---|---|---|");
    for &contender in &plan.contenders {
        let mine: Vec<&Run> = runs.iter().filter(|run| run.contender == contender).collect();
        let (best, median, worst) = spread(mine.iter().map(|run| run.rate()).collect(), true);
        let (cbest, cmedian, cworst) = spread(mine.iter().map(|run| run.cpu_per_message()).collect(), false);
        let _ = writeln!(
            out,
            "| {} | {best:.0} / **{median:.0}** / {worst:.0} | {cbest:.1} / **{cmedian:.1}** / {cworst:.1} |",
            contender.name()
        );
    }
    let pair = |round: usize, contender: Contender| runs.iter().find(|r| r.round == round && r.contender == contender);
    let broker_per_message = |run: &Run| run.broker_cpu.map_or(f64::NAN, |cpu| micros_per_message(cpu, run.messages));
    let against: Vec<(usize, f64, f64, f64)> = (1..=plan.rounds)
        .filter_map(|round| {
            let (pfn, unbatched) = (pair(round, Contender::Pfn)?, pair(round, Contender::PfnUnbatched)?);
            Some((round, pfn.rate() / unbatched.rate(), broker_per_message(pfn), broker_per_message(unbatched)))
        })
        .collect();
    if !against.is_empty() {
        let _ =
            writeln!(out, "\n| round | pfn (batching) / pfn-unbatched msg/s | broker µs/msg: batching / unbatched |");
        let _ = writeln!(out, "|---|---|---|");
        for (round, rate, batched, unbatched) in &against {
            let _ = writeln!(out, "| {round} | {:.2}× | {batched:.1} / {unbatched:.1} |", rate);
        }
        let (_, rate, _) = spread(against.iter().map(|r| r.1).collect(), true);
        let verdict = if rate >= 1.5 { "met" } else { "missed" };
        let _ = writeln!(out, "\nmedian pfn (batching) / pfn-unbatched: {rate:.2}× (goal ≥ 1.5×: {verdict})");
    }
    let ratios: Vec<(usize, f64, f64)> = (1..=plan.rounds)
        .filter_map(|round| {
            let (pfn, rust) = (pair(round, Contender::Pfn)?, pair(round, Contender::Rust)?);
            Some((round, pfn.rate() / rust.rate(), pfn.cpu_per_message() / rust.cpu_per_message()))
        })
        .collect();
    if ratios.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n| round | pfn / rust msg/s | pfn / rust CPU per message |");
    let _ = writeln!(out, "|---|---|---|");
    for (round, rate, cpu) in &ratios {
        let _ = writeln!(out, "| {round} | {:.0} % | {:.0} % |", rate * 100.0, cpu * 100.0);
    }
    let (_, rate, _) = spread(ratios.iter().map(|r| r.1).collect(), true);
    let (_, cpu, _) = spread(ratios.iter().map(|r| r.2).collect(), false);
    let _ = writeln!(
        out,
        "\nmedian pfn / rust: throughput {:.0} % (goal ≥ 95 %: {}), CPU per message {:.0} % (goal ≤ 110 %: {})",
        rate * 100.0,
        if rate >= 0.95 { "met" } else { "missed" },
        cpu * 100.0,
        if cpu <= 1.10 { "met" } else { "missed" },
    );
}

/// The hand-written consume → `!` → produce loop, run as a process of its own.
mod rust_loop {
    use std::{
        env,
        io::{Read, Write},
        time::Instant,
    };

    use futures::{FutureExt, StreamExt, stream::FuturesOrdered};
    use pulsar::{
        Consumer, ConsumerOptions, Producer, Pulsar, SubType, TokioExecutor,
        consumer::{InitialPosition, Message},
        producer::{self, ProducerOptions},
    };

    use super::{RECEIVER_QUEUE, TICKS_PER_SECOND, process_ticks};

    /// Outputs sent and not yet acknowledged by the broker, at most (the Python client's
    /// default `max_pending_messages`).
    const MAX_IN_FLIGHT: usize = 1000;
    /// Most inputs per batch in the batched mode: the worker's `BATCH`, unless
    /// `PULSAR_BENCH_BATCH` says otherwise.
    const BATCH: usize = 512;

    type Input = Consumer<Vec<u8>, TokioExecutor>;
    type Output = Producer<TokioExecutor>;
    /// When the first input came, and this process's CPU ticks then.
    type First = Option<(Instant, u64)>;

    fn var(name: &str) -> String {
        env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
    }

    /// Runs the loop with the `PFN_BENCH_*` settings, prints `first` at the first input and a
    /// JSON result when every input is acknowledged, then exits when stdin closes.
    /// `PFN_BENCH_MODE=batched` runs [`batched`] instead of [`pipelined`].
    pub fn child() {
        let (url, input, output) = (var("PFN_BENCH_URL"), var("PFN_BENCH_INPUT"), var("PFN_BENCH_OUTPUT"));
        let count: usize = var("PFN_BENCH_COUNT").parse().expect("PFN_BENCH_COUNT is a number");
        let batched_mode = env::var("PFN_BENCH_MODE").as_deref() == Ok("batched");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the loop's runtime");
        let result = runtime.block_on(async {
            let client = Pulsar::builder(url, TokioExecutor).build().await.expect("connect");
            let mut consumer: Input = client
                .consumer()
                .with_topic(&input)
                .with_subscription("bench-rust")
                .with_subscription_type(SubType::Shared)
                .with_batch_size(RECEIVER_QUEUE)
                .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
                .build()
                .await
                .expect("subscribe");
            let options = ProducerOptions { block_queue_if_full: true, ..ProducerOptions::default() };
            let mut producer =
                client.producer().with_topic(&output).with_options(options).build().await.expect("producer");
            let mut first = None;
            let acked = if batched_mode {
                batched(&mut consumer, &mut producer, &input, count, &mut first).await
            } else {
                pipelined(&mut consumer, &mut producer, &input, count, &mut first).await
            };
            let (at, ticks) = first.expect("at least one input");
            let cpu = process_ticks("self").unwrap_or(0).saturating_sub(ticks) as f64 / TICKS_PER_SECOND;
            let result =
                format!("{{\"count\": {acked}, \"elapsed_s\": {}, \"cpu_s\": {cpu}}}", at.elapsed().as_secs_f64());
            (result, client, consumer, producer)
        });
        let (result, client, consumer, producer) = result;
        {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{result}");
            let _ = stdout.flush();
        }
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        // Dropped inside the runtime: they spawn tasks as they close.
        let _inside = runtime.enter();
        drop((producer, consumer, client));
    }

    /// Notes the first input's time and CPU, and tells the bench.
    fn mark_first(first: &mut First) {
        if first.is_none() {
            *first = Some((Instant::now(), process_ticks("self").unwrap_or(0)));
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "first");
            let _ = stdout.flush();
        }
    }

    /// Sends `input + "!"` and returns the receipt's future and the input's id.
    async fn shout(
        producer: &mut Output,
        message: Option<Result<Message<Vec<u8>>, pulsar::Error>>,
        first: &mut First,
    ) -> (producer::SendFuture, pulsar::proto::MessageIdData) {
        let Message { payload, message_id, .. } = message.expect("the stream goes on").expect("a message");
        mark_first(first);
        let mut data = payload.data;
        data.push(b'!');
        let receipt =
            producer.send_non_blocking(producer::Message { payload: data, ..Default::default() }).await.expect("send");
        (receipt, message_id.id)
    }

    /// The hand-written loop: receives while fewer than [`MAX_IN_FLIGHT`] outputs await their
    /// receipt, and acknowledges each input as soon as its output's receipt came (in order).
    async fn pipelined(
        consumer: &mut Input,
        producer: &mut Output,
        input: &str,
        count: usize,
        first: &mut First,
    ) -> usize {
        let mut in_flight = FuturesOrdered::new();
        let (mut received, mut acked) = (0, 0);
        while acked < count {
            tokio::select! {
                biased;
                Some(id) = in_flight.next(), if !in_flight.is_empty() => {
                    consumer.ack_with_id(input, id).await.expect("ack");
                    acked += 1;
                }
                message = consumer.next(), if received < count && in_flight.len() < MAX_IN_FLIGHT => {
                    received += 1;
                    let (receipt, id) = shout(producer, message, first).await;
                    in_flight.push_back(async move {
                        receipt.await.expect("send receipt");
                        id
                    });
                }
            }
        }
        acked
    }

    /// The same loop shaped like the worker's instance loop: takes up to [`BATCH`] inputs
    /// (waiting only for the first), sends every output, waits for every receipt, then
    /// acknowledges every input, and only then receives again.
    async fn batched(
        consumer: &mut Input,
        producer: &mut Output,
        input: &str,
        count: usize,
        first: &mut First,
    ) -> usize {
        let most = env::var("PULSAR_BENCH_BATCH").ok().and_then(|n| n.parse().ok()).unwrap_or(BATCH);
        let mut acked = 0;
        let mut batch = Vec::with_capacity(most);
        while acked < count {
            batch.push(consumer.next().await);
            while batch.len() < most {
                match consumer.next().now_or_never() {
                    Some(message) => batch.push(message),
                    None => break,
                }
            }
            let mut sent = Vec::with_capacity(batch.len());
            for message in batch.drain(..) {
                sent.push(shout(producer, message, first).await);
            }
            let mut ids = Vec::with_capacity(sent.len());
            for (receipt, id) in sent {
                receipt.await.expect("send receipt");
                ids.push(id);
            }
            for id in ids {
                consumer.ack_with_id(input, id).await.expect("ack");
                acked += 1;
            }
        }
        acked
    }
}
