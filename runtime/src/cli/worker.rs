//! `pfn worker`: the worker, its local endpoint, and SIGINT/SIGTERM handling.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use signal_hook::{
    consts::signal::{SIGINT, SIGTERM},
    iterator::Signals,
};

use crate::{
    endpoint::{default_socket, server::Endpoint},
    io::{
        embedded::EmbeddedBroker,
        pulsar::{ConnectError, PulsarSettings, PulsarTransport},
    },
    loader::Loader,
    sync::lock,
    worker::{Backoff, Topics, Worker, WorkerHandle, WorkerOptions},
};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The directory of plugin files (each pinned by its `.pfn.toml` manifest), watched for new versions.
    #[arg(long, env = "PFN_PLUGINS_DIR")]
    pub plugins_dir: PathBuf,
    /// The directory of function specs (`.toml` or `.json`).
    #[arg(long, env = "PFN_FUNCTIONS_DIR")]
    pub functions: PathBuf,
    /// Where the worker keeps its socket and plugin copies.
    #[arg(long, env = "PFN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The local endpoint's Unix socket (default: `worker.sock` in the state directory).
    #[arg(long, env = "PFN_WORKER")]
    pub socket: Option<PathBuf>,
    /// Roll a new plugin version back when it fails this many messages the old one processes (0: off).
    #[arg(long, default_value_t = 0)]
    pub rollback_after: u32,
    /// How often the plugins directory is scanned, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub watch_interval_ms: u64,
    /// How long a shutdown waits for in-flight work, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_period_ms: u64,
    /// The first redelivery delay after a failure, in milliseconds; it doubles per failure.
    #[arg(long, default_value_t = 100)]
    pub nack_backoff_ms: u64,
    /// The longest redelivery delay, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub max_nack_backoff_ms: u64,
    /// Run the functions on this Pulsar cluster (`pulsar://host:6650`, `pulsar+ssl://host:6651`)
    /// instead of the embedded topics.
    #[arg(long, env = "PFN_PULSAR_URL")]
    pub pulsar_url: Option<String>,
    /// A JWT for Pulsar token authentication.
    #[arg(long, env = "PFN_PULSAR_TOKEN", hide_env_values = true)]
    pub pulsar_token: Option<String>,
    /// PEM file of the certificates that Pulsar TLS connections trust.
    #[arg(long, env = "PFN_TLS_TRUST_CERTS")]
    pub tls_trust_certs: Option<PathBuf>,
    /// Accept any TLS certificate from the broker (testing only).
    #[arg(long)]
    pub tls_allow_insecure: bool,
    /// Threads that run the Pulsar client's connections, consumers and producers. Instances
    /// receive, send and acknowledge on their own threads.
    #[arg(long, env = "PFN_PULSAR_IO_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pulsar_io_threads: u16,
}

/// Runs a worker until SIGINT or SIGTERM, then drains and returns.
pub fn run(args: WorkerArgs, state_dir: PathBuf, loader: Loader) -> anyhow::Result<()> {
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let grace_period = Duration::from_millis(args.grace_period_ms);
    let options = WorkerOptions {
        plugins_dir: args.plugins_dir,
        functions_dir: args.functions,
        rollback_after: args.rollback_after,
        watch_interval: Duration::from_millis(args.watch_interval_ms.max(1)),
        grace_period,
        nack_backoff: Backoff {
            base: Duration::from_millis(args.nack_backoff_ms),
            max: Duration::from_millis(args.max_nack_backoff_ms.max(args.nack_backoff_ms)),
        },
        state_store: state_dir.join("state.redb"),
    };
    // Signals first: a worker still waiting for its broker stops on SIGTERM too.
    let stop_requested = Arc::new(AtomicBool::new(false));
    let running: Arc<Mutex<Option<WorkerHandle>>> = Arc::default();
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    let signals_handle = signals.handle();
    let signal_thread = {
        let (stop_requested, running) = (Arc::clone(&stop_requested), Arc::clone(&running));
        std::thread::Builder::new().name("pfn-signals".into()).spawn(move || {
            for signal in signals.forever() {
                if stop_requested.swap(true, Ordering::AcqRel) {
                    tracing::warn!(signal, "second signal: exiting without draining");
                    std::process::exit(130);
                }
                tracing::info!(signal, "signal received: draining");
                if let Some(handle) = lock(&running).as_ref() {
                    handle.shutdown();
                }
            }
        })?
    };

    let topics = match &args.pulsar_url {
        None => Topics::Embedded,
        Some(url) => {
            let settings = PulsarSettings {
                url: url.clone(),
                token: args.pulsar_token.clone(),
                tls_trust_certs: args.tls_trust_certs.clone(),
                tls_allow_insecure: args.tls_allow_insecure,
                io_threads: usize::from(args.pulsar_io_threads),
            };
            match PulsarTransport::connect(&settings, || stop_requested.load(Ordering::Acquire)) {
                Ok(pulsar) => Topics::Pulsar(Arc::new(pulsar)),
                Err(ConnectError::Stopped { url }) => {
                    tracing::info!(%url, "stopped before Pulsar could be reached");
                    signals_handle.close();
                    let _ = signal_thread.join();
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    let worker = Worker::new(options, loader, EmbeddedBroker::new(), topics)?;
    let handle = worker.handle();
    let socket = args.socket.unwrap_or_else(|| default_socket(&state_dir));
    let endpoint = Endpoint::start(&socket, handle.clone())?;
    *lock(&running) = Some(handle.clone());
    if stop_requested.load(Ordering::Acquire) {
        handle.shutdown();
    }

    let summary = worker.run();
    let open_sessions = endpoint.stop(Instant::now() + grace_period);
    signals_handle.close();
    let _ = signal_thread.join();
    for function in &summary.functions {
        let total = |pick: fn(&crate::worker::stats::InstanceStatus) -> u64| -> u64 {
            function.instances.iter().map(pick).sum()
        };
        eprintln!(
            "pfn worker: {}: {} received, {} acked, {} outputs, {} filtered, {} dead-lettered, {} user exceptions, {} timeouts, {} reloads",
            function.fqfn,
            total(|i| i.received_total),
            total(|i| i.acked_total),
            total(|i| i.outputs_total),
            total(|i| i.filtered_total),
            total(|i| i.dead_lettered_total),
            total(|i| i.user_exceptions_total),
            total(|i| i.timeouts_total),
            function.reloads.len(),
        );
    }
    if open_sessions > 0 {
        tracing::warn!(open_sessions, "endpoint sessions still open at exit");
    }
    if !summary.stuck.is_empty() {
        let stuck: Vec<String> = summary.stuck.iter().map(|(fqfn, id)| format!("{fqfn} instance {id}")).collect();
        anyhow::bail!("still in a plugin call after the grace period: {}", stuck.join(", "));
    }
    Ok(())
}
