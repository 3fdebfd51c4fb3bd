//! `pfn worker`: the worker, its local endpoint, and SIGINT/SIGTERM handling.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use signal_hook::{
    consts::signal::{SIGINT, SIGTERM},
    iterator::Signals,
};

use super::default_socket;
use crate::{
    admin::{self, AdminServerError, AdminState},
    http_server::HttpServer,
    io::{
        embedded::EmbeddedBroker,
        pulsar::{ConnectError, PulsarSettings, PulsarTransport},
    },
    loader::Loader,
    sync::lock,
    telemetry::{Count, MetricsServer},
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
    #[command(flatten)]
    pub pulsar: PulsarArgs,
    /// A listener of its own for `GET /metrics` (`HOST:PORT`, port 0 for any free one), besides
    /// the admin API's `/metrics` (on its TCP address and socket) [default: none]
    #[arg(long, env = "PFN_METRICS_ADDR", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<ListenAddr>,
    /// The cluster name the metrics carry, as Pulsar Functions label theirs.
    #[arg(long, env = "PFN_CLUSTER", default_value = "standalone")]
    pub cluster: String,
    /// A TOML file of `name = "value"` secrets, for spec references `worker:NAME`.
    #[arg(long, env = "PFN_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Where the admin REST API (`/admin/v3/functions`) is served (`HOST:PORT`, port 0 for any
    /// free one), or `off` [default: 127.0.0.1:6750, skipped with a warning when taken]
    #[arg(long, env = "PFN_ADMIN_ADDR", value_parser = parse_listen_addr)]
    pub admin_addr: Option<ListenAddr>,
    /// The bearer token every admin request but `GET /admin/v3/worker/health` must carry;
    /// required to serve the admin API on an address other than loopback.
    #[arg(long, env = "PFN_ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    pub admin_token: Option<String>,
    /// A file holding the admin token (its first line).
    #[arg(long, env = "PFN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Run only this instance of each function, as one pod of a StatefulSet does (its ordinal).
    #[arg(long, env = "PFN_INSTANCE_ID")]
    pub instance_id: Option<u32>,
}

/// Where Pulsar is, and how to reach it: without `--pulsar-url`, the functions run on embedded
/// topics.
#[derive(Debug, Args)]
pub struct PulsarArgs {
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

impl PulsarArgs {
    /// The connection's settings, when `--pulsar-url` is given.
    fn settings(&self) -> Option<PulsarSettings> {
        self.pulsar_url.as_ref().map(|url| PulsarSettings {
            url: url.clone(),
            token: self.pulsar_token.clone(),
            tls_trust_certs: self.tls_trust_certs.clone(),
            tls_allow_insecure: self.tls_allow_insecure,
            io_threads: usize::from(self.pulsar_io_threads),
        })
    }
}

/// The admin API's address when none is given (Pulsar's function worker uses 6750 too).
const DEFAULT_ADMIN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6750);

/// The admin token given on the command line, in the environment or in a file.
fn admin_token(args: &WorkerArgs) -> anyhow::Result<Option<Arc<str>>> {
    if let Some(token) = &args.admin_token {
        return Ok(Some(Arc::from(token.as_str())));
    }
    let Some(path) = &args.admin_token_file else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
    let token = text.lines().next().map(str::trim).filter(|token| !token.is_empty());
    let token = token.with_context(|| format!("the admin token file {} is empty", path.display()))?;
    Ok(Some(Arc::from(token)))
}

/// Starts the admin API as asked. As for metrics, a taken default address is skipped with a
/// warning; a non-loopback address without a token is refused.
fn start_admin(asked: Option<ListenAddr>, state: AdminState) -> anyhow::Result<Option<HttpServer>> {
    let addr = match asked {
        Some(ListenAddr::Off) => return Ok(None),
        Some(ListenAddr::At(addr)) => addr,
        None => DEFAULT_ADMIN_ADDR,
    };
    match admin::serve(addr, state) {
        Ok(server) => Ok(Some(server)),
        Err(AdminServerError::Server(error)) if asked.is_none() && error.addr_in_use() => {
            tracing::warn!(%error, "no admin API: pass --admin-addr to choose another address");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Where a server of the worker listens (the metrics endpoint, the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    Off,
    At(SocketAddr),
}

pub(super) fn parse_listen_addr(text: &str) -> Result<ListenAddr, String> {
    if text == "off" {
        return Ok(ListenAddr::Off);
    }
    text.parse().map(ListenAddr::At).map_err(|error| format!("`{text}` is neither HOST:PORT nor off: {error}"))
}

/// Starts a metrics listener of its own when asked for one (the admin API serves `/metrics`
/// in any case).
fn start_metrics(asked: Option<ListenAddr>, handle: &WorkerHandle) -> anyhow::Result<Option<MetricsServer>> {
    let Some(ListenAddr::At(addr)) = asked else { return Ok(None) };
    let handle = handle.clone();
    Ok(Some(MetricsServer::start(addr, Arc::new(move || handle.render_metrics()))?))
}

/// Runs a worker until SIGINT or SIGTERM, then drains and returns.
pub fn run(args: WorkerArgs, state_dir: PathBuf, loader: Loader) -> anyhow::Result<()> {
    run_with(args, state_dir, loader, |_| {})
}

/// [`run`], calling `started` with the worker's handle once it is set up, before it runs.
pub fn run_with(
    args: WorkerArgs,
    state_dir: PathBuf,
    loader: Loader,
    started: impl FnOnce(&WorkerHandle),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let grace_period = Duration::from_millis(args.grace_period_ms);
    let token = admin_token(&args)?;
    // Refused before anything starts, not after connecting to Pulsar.
    if let Some(ListenAddr::At(addr)) = args.admin_addr
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        return Err(AdminServerError::NoToken { addr }.into());
    }
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
        cluster: args.cluster.clone(),
        // `/metrics` is always served (on the socket at least).
        timing: true,
        secrets_file: args.secrets_file.clone(),
        only_instance: args.instance_id,
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

    let topics = match args.pulsar.settings() {
        None => Topics::Embedded,
        Some(settings) => match PulsarTransport::connect(&settings, || stop_requested.load(Ordering::Acquire)) {
            Ok(pulsar) => Topics::Pulsar(Arc::new(pulsar)),
            Err(ConnectError::Stopped { url }) => {
                tracing::info!(%url, "stopped before Pulsar could be reached");
                signals_handle.close();
                let _ = signal_thread.join();
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        },
    };
    let worker = Worker::new(options, loader, EmbeddedBroker::new(), topics)?;
    let handle = worker.handle();
    let metrics = start_metrics(args.metrics_addr, &handle)?;
    let admin = start_admin(args.admin_addr, AdminState { worker: handle.clone(), token })?;
    let socket = args.socket.unwrap_or_else(|| default_socket(&state_dir));
    let socket_server = admin::serve_unix(&socket, handle.clone())?;
    *lock(&running) = Some(handle.clone());
    started(&handle);
    if stop_requested.load(Ordering::Acquire) {
        handle.shutdown();
    }

    let summary = worker.run();
    drop(admin);
    drop(metrics);
    drop(socket_server);
    signals_handle.close();
    let _ = signal_thread.join();
    for function in &summary.functions {
        let mut parts: Vec<String> = Count::ALL
            .into_iter()
            .filter_map(|count| {
                let total: u64 = function.instances.iter().map(|instance| instance.count(count)).sum();
                Some(format!("{total} {}", count.summary_words()?))
            })
            .collect();
        parts.push(format!("{} reloads", function.reloads.len()));
        eprintln!("pfn worker: {}: {}", function.fqfn, parts.join(", "));
    }
    if !summary.stuck.is_empty() {
        let stuck: Vec<String> = summary.stuck.iter().map(|(fqfn, id)| format!("{fqfn} instance {id}")).collect();
        anyhow::bail!("still in a plugin call after the grace period: {}", stuck.join(", "));
    }
    Ok(())
}
