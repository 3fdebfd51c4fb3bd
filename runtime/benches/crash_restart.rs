//! The process runtime's cost of a death: how long from a call whose child aborts until the
//! replacement child has processed the next input, and how much memory an idle child holds.
//!
//! Each round hands one instance of the `zoo` fixture (in a child `pfn instance-host`) a batch
//! of two inputs, `abort` then `after`: the child aborts on the first, the worker sees it die,
//! starts a new child (a fresh `pfn` process that opens the plugin and runs `init`) and calls
//! it on the second. The time of that batch, from handing it over to holding the second
//! outcome, bounds the crash-to-processing-again time from above; a batch of `after` alone,
//! timed the same way, is the baseline. Then the children of this process are read in
//! `/proc/<pid>/status` (`VmRSS`, `RssAnon`) while idle.
//!
//! Needs `scripts/build-plugins.sh` (the release `pfn`, `target/fixtures/libzoo.so`). Run with
//! `cargo bench -p pfn --bench crash_restart`; `CRASH_BENCH_ROUNDS` sets the rounds (default
//! 50; without `--bench`, as `cargo test --benches` runs it, 3).

use std::{
    fs,
    sync::Arc,
    time::{Duration, Instant},
};

#[allow(dead_code, reason = "this bench needs only the fixture paths")]
mod support;

use pfn::{
    context::{FunctionIdentity, Services},
    execute::{CallOutcome, Input},
    hosted::{Hosting, Instance},
    loader::{Loader, Pin, PluginCache},
    process::{ProcessHosting, child_instance::PROGRAM_VARIABLE},
    state::{StateSlot, StateStore},
    verify::Sha256Digest,
};
use support::{require, target_dir};

/// Hands `inputs` to `instance` and returns how long until every outcome was held, and the
/// outcome of the last input.
fn timed(instance: &mut Instance, inputs: &[&str]) -> (Duration, CallOutcome<Vec<u8>>) {
    let ids: Vec<String> = (0..inputs.len()).map(|n| n.to_string()).collect();
    let inputs: Vec<Input<'_>> =
        inputs.iter().zip(&ids).map(|(payload, id)| Input::plain(payload.as_bytes(), "in", id)).collect();
    let started = Instant::now();
    instance.prepare(&inputs);
    let elapsed = started.elapsed();
    let mut last = CallOutcome::Filtered;
    for input in &inputs {
        last = instance.call(input).outcome.to_owned_output();
    }
    (elapsed, last)
}

/// `VmRSS` and `RssAnon` of each child of this process, in KiB.
fn children_memory() -> Vec<(u32, u64, u64)> {
    let me = std::process::id();
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        };
        if field("PPid:").and_then(|ppid| u32::try_from(ppid).ok()) == Some(me) {
            children.push((pid, field("VmRSS:").unwrap_or(0), field("RssAnon:").unwrap_or(0)));
        }
    }
    children
}

/// Median, 90th percentile and maximum, in milliseconds.
fn spread(mut times: Vec<Duration>) -> (f64, f64, f64) {
    times.sort_unstable();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.9), at(1.0))
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let rounds = std::env::var("CRASH_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(if benching { 50 } else { 3 });
    let target = target_dir();
    let pfn = require(&target.join("release").join("pfn"));
    let zoo = require(&target.join("fixtures").join("libzoo.so"));
    // SAFETY: no other thread runs yet, so none reads the environment while it changes.
    unsafe { std::env::set_var(PROGRAM_VARIABLE, &pfn) };
    let cache = target.join("bench").join("crash-restart-cache");
    let bytes = fs::read(&zoo).expect("the zoo fixture");
    let plugin = Loader::new(PluginCache::new(cache))
        .load(&zoo, Pin::Digest(Sha256Digest::of(&bytes)))
        .expect("the zoo fixture loads");
    let hosting = Hosting::Process(Arc::new(ProcessHosting::new(None, None).expect("the pfn executable")));
    // The zoo counts its calls in state, served to the child by this process.
    let state_dir = target.join("bench").join("crash-restart-state");
    fs::create_dir_all(&state_dir).expect("a state directory");
    let store = StateStore::open(&state_dir.join("state.redb")).expect("the state store opens");
    let services =
        Services { state: Some(Arc::new(StateSlot::new(store.function("public/default/zoo")))), ..Services::default() };
    let started = Instant::now();
    let mut instance = hosting
        .instantiate(&plugin, FunctionIdentity { name: "zoo".into(), ..FunctionIdentity::default() }, services)
        .expect("the child starts");
    eprintln!("first child ready in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    let mut baseline = Vec::with_capacity(rounds);
    let mut crash = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (time, _) = timed(&mut instance, &["after"]);
        baseline.push(time);
        let (time, last) = timed(&mut instance, &["abort", "after"]);
        assert_eq!(last, CallOutcome::Output(b"ok:after".to_vec()), "a new child answered the input after the abort");
        crash.push(time);
    }
    std::thread::sleep(Duration::from_millis(200));
    let memory = children_memory();
    let (median, p90, max) = spread(crash);
    let (base_median, base_p90, base_max) = spread(baseline);
    println!("Crash to processing again: zoo, batch [abort, after], {rounds} rounds");
    println!();
    println!("| batch | median | p90 | max |");
    println!("|---|---|---|---|");
    println!("| `abort`, `after` (a death, a restart, a call) | {median:.2} ms | {p90:.2} ms | {max:.2} ms |");
    println!("| `after` alone (baseline) | {base_median:.3} ms | {base_p90:.3} ms | {base_max:.3} ms |");
    println!();
    for (pid, rss, anon) in memory {
        println!("idle child {pid}: VmRSS {rss} KiB, RssAnon {anon} KiB");
    }
    drop(instance);
}
