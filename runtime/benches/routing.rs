//! Routing on embedded topics: one instance of the `router` plugin publishing each input through
//! `ctx.publish` to one of four topics by its content, against one instance of `exclamation`
//! writing each input to one output, over the same pre-loaded JSON inputs, in one invocation.
//!
//! Each run pre-loads [`Plan::messages`] inputs of [`PAYLOAD`] bytes
//! (`{"route":"rN","m":"message-…"}`, N = index mod 4) into the function's subscription before a
//! real worker starts, then counts from the first acknowledged input to the last (the rate
//! leaves out the worker's start). The setups alternate, each round in the reverse order of
//! the one before. After every run the topics are counted: every input once, on its route's
//! topic (router) or the output (exclamation).
//!
//! Needs `scripts/build-plugins.sh` (`target/plugins/librouter.so`, `libexclamation.so`). Run
//! with `cargo bench -p pfn --bench routing`; without `--bench` it does one short round as a
//! smoke test. `ROUTING_BENCH_MESSAGES` (default 1,000,000) and `ROUTING_BENCH_ROUNDS` (default
//! 5) change the plan.

use std::{
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

mod support;

use pfn::{
    io::{
        embedded::EmbeddedBroker,
        transport::{Message, SubscriptionType},
    },
    verify::Manifest,
};
use support::{bench_options, install, require, start_worker, target_dir};

const INPUT: &str = "routing-in";
const OUTPUT: &str = "routing-out";
const ROUTES: u64 = 4;
const PAYLOAD: usize = 64;
/// A run that has not finished after this long has hung.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// Input `index`: its route and number, padded to [`PAYLOAD`] bytes.
fn payload(index: u64) -> Vec<u8> {
    let mut text = format!("{{\"route\":\"r{}\",\"m\":\"message-{index:07}", index % ROUTES);
    text.push_str(&".".repeat(PAYLOAD.saturating_sub(text.len() + 2)));
    text.push_str("\"}");
    text.into_bytes()
}

/// Which function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `exclamation`: every input to one output.
    OneOutput,
    /// `router`: every input published to its route's topic.
    Router,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Self::OneOutput => "exclamation → 1 output",
            Self::Router => "router → 4 topics (ctx.publish)",
        }
    }

    fn spec(self) -> String {
        match self {
            Self::OneOutput => {
                format!("name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"{INPUT}\"]\noutput = \"{OUTPUT}\"\n")
            }
            Self::Router => {
                let routes: Vec<String> = (0..ROUTES)
                    .map(|r| format!("{{ field = \"route\", equals = \"r{r}\", topic = \"{OUTPUT}-r{r}\" }}"))
                    .collect();
                format!(
                    "name = \"route\"\nplugin = \"router\"\ninputs = [\"{INPUT}\"]\n[user_config]\n\
                     default_topic = \"{OUTPUT}-other\"\nroutes = [{}]\n",
                    routes.join(", ")
                )
            }
        }
    }

    /// The topics its results go to.
    fn topics(self) -> Vec<String> {
        match self {
            Self::OneOutput => vec![OUTPUT.to_owned()],
            Self::Router => (0..ROUTES).map(|r| format!("{OUTPUT}-r{r}")).collect(),
        }
    }
}

/// Runs `setup` over `messages` inputs; returns its rate in messages per second.
fn run(root: &Path, setup: Setup, messages: u64) -> f64 {
    if root.exists() {
        fs::remove_dir_all(root).expect("remove the last run's directories");
    }
    let (plugins, functions) = (root.join("plugins"), root.join("functions"));
    for dir in [&plugins, &functions] {
        fs::create_dir_all(dir).expect("the run's directories");
    }
    for name in ["exclamation", "router"] {
        let library = require(&target_dir().join("plugins").join(format!("lib{name}.so")));
        let version =
            Manifest::read_for(&library).ok().flatten().expect("a manifest: run scripts/build-plugins.sh").version;
        install(&library, &plugins, &format!("lib{name}.so"), name, &version);
    }
    let spec_path = functions.join("function.toml");
    fs::write(&spec_path, setup.spec()).expect("write the spec");
    let spec = pfn::config::FunctionSpec::from_file(&spec_path).expect("the bench's spec");

    let broker = EmbeddedBroker::new();
    broker.create_subscription(INPUT, &spec.subscription(), SubscriptionType::Shared).expect("input subscription");
    for topic in setup.topics() {
        broker.create_subscription(&topic, "check", SubscriptionType::Shared).expect("output subscription");
    }
    let inputs: Vec<Arc<Message>> = (0..messages).map(|i| Arc::new(Message::from_payload(payload(i)))).collect();
    for chunk in inputs.chunks(10_000) {
        broker.publish_shared(INPUT, chunk).expect("pre-load");
    }
    drop(inputs);

    let options = bench_options(plugins, functions, root.join("state.redb"), Duration::from_millis(250), false);
    let started = Instant::now();
    let (handle, thread) = start_worker(options, &root.join("cache"), &broker);
    let acked = || broker.counts(INPUT).subscriptions.first().map_or(0, |(_, counts)| counts.acked);
    let (first, first_count) = loop {
        let count = acked();
        if count > 0 {
            break (Instant::now(), count);
        }
        assert!(started.elapsed() < RUN_DEADLINE, "no input acknowledged");
        std::thread::sleep(Duration::from_micros(200));
    };
    while acked() < messages {
        assert!(started.elapsed() < RUN_DEADLINE, "only {} of {messages} acknowledged", acked());
        std::thread::sleep(Duration::from_micros(200));
    }
    let last = Instant::now();
    handle.shutdown();
    thread.join().expect("the worker thread does not panic");
    let published: Vec<u64> = setup.topics().iter().map(|topic| broker.counts(topic).published).collect();
    let expected: Vec<u64> = match setup {
        Setup::OneOutput => vec![messages],
        Setup::Router => (0..ROUTES).map(|r| (messages + ROUTES - 1 - r) / ROUTES).collect(),
    };
    assert_eq!(published, expected, "{}: every input once, on its topic", setup.name());
    (messages - first_count) as f64 / last.duration_since(first).as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let number = |name: &str, default: u64| {
        std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
    };
    let messages = number("ROUTING_BENCH_MESSAGES", if full { 1_000_000 } else { 20_000 });
    let rounds = number("ROUTING_BENCH_ROUNDS", if full { 5 } else { 1 });
    let root = target_dir().join("routing-bench");
    let mut rates: Vec<(Setup, f64)> = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [Setup::OneOutput, Setup::Router] } else { [Setup::Router, Setup::OneOutput] };
        for setup in order {
            let rate = run(&root, setup, messages);
            eprintln!("round {} {}: {rate:.0} msg/s", round + 1, setup.name());
            rates.push((setup, rate));
        }
    }
    println!("\n{messages} messages of {PAYLOAD} B per run, {rounds} round(s)\n");
    println!("| setup | msg/s per round | median |");
    println!("|---|---|---|");
    let median = |setup: Setup| {
        let mut mine: Vec<f64> = rates.iter().filter(|(s, _)| *s == setup).map(|(_, rate)| *rate).collect();
        mine.sort_by(f64::total_cmp);
        let all: Vec<String> = mine.iter().map(|rate| format!("{rate:.0}")).collect();
        (all.join(", "), mine[mine.len() / 2])
    };
    for setup in [Setup::OneOutput, Setup::Router] {
        let (all, median) = median(setup);
        println!("| {} | {all} | **{median:.0}** |", setup.name());
    }
    let ratio = median(Setup::Router).1 / median(Setup::OneOutput).1;
    println!("\nmedian router / one output: {:.0} %", ratio * 100.0);
}
