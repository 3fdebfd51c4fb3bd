//! `pfn functions localrun --spec FILE`: one function in the foreground, on Pulsar
//! (`--pulsar-url`) or on embedded topics (reached with `pfn topics` through `--worker`), as
//! Pulsar's localrun runs one. Unlike Pulsar's, it exits non-zero on a fatal error: a spec
//! that does not validate, a plugin refused or never found, a function that cannot start.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;

use super::worker::{self as worker_cli, ListenAddr, PulsarArgs, WorkerArgs};
use crate::{
    config::FunctionSpec,
    loader::{Loader, PluginCache},
    sync::lock,
    worker::{WorkerHandle, state::FunctionState},
};

/// How long a function may wait for its plugin before localrun gives up.
const PLUGIN_WAIT: Duration = Duration::from_secs(10);
/// How often the function's state is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct LocalrunArgs {
    /// The function's spec (TOML or JSON).
    #[arg(long)]
    pub spec: PathBuf,
    /// Where the plugin the spec names is, pinned by its manifest (default: the spec's directory).
    #[arg(long)]
    pub plugins_dir: Option<PathBuf>,
    /// Where the function's state is kept (default: a temporary directory, gone at exit).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub pulsar: PulsarArgs,
    /// A TOML file of `name = "value"` secrets, for spec references `worker:NAME`.
    #[arg(long, env = "PFN_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Where `GET /metrics` is served (`HOST:PORT`), or `off`; it is served on `--worker`'s
    /// socket in any case.
    #[arg(long, default_value = "off", value_parser = worker_cli::parse_listen_addr)]
    pub metrics_addr: ListenAddr,
    /// Run only this instance of the function (a StatefulSet pod's ordinal); default: all.
    #[arg(long, env = "PFN_INSTANCE_ID")]
    pub instance_id: Option<u32>,
    /// How long a shutdown waits for in-flight work, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_period_ms: u64,
}

/// Runs the function until SIGINT or SIGTERM, or until it fails; `socket`, when given, is
/// where `pfn topics` reaches its embedded topics (by default a socket of its own, so that a
/// localrun never takes a worker's).
pub fn run(args: LocalrunArgs, socket: Option<PathBuf>, plugin_cache: Option<PathBuf>) -> anyhow::Result<()> {
    let spec = FunctionSpec::from_file(&args.spec)?;
    let spec_dir = args.spec.parent().map(PathBuf::from).unwrap_or_default();
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let functions = scratch.path().join("functions");
    std::fs::create_dir_all(&functions).context("cannot create the functions directory")?;
    std::fs::write(functions.join("function.json"), serde_json::to_string_pretty(&spec)?)
        .context("cannot write the function's spec")?;
    let state_dir = args.state_dir.unwrap_or_else(|| scratch.path().join("state"));
    let plugins_dir = args.plugins_dir.unwrap_or(spec_dir);
    let cache = plugin_cache.unwrap_or_else(|| scratch.path().join("plugin-cache"));
    let worker_args = WorkerArgs {
        plugins_dir: plugins_dir.clone(),
        functions,
        state_dir: Some(state_dir.clone()),
        socket: Some(socket.unwrap_or_else(|| scratch.path().join("worker.sock"))),
        rollback_after: 0,
        watch_interval_ms: 250,
        grace_period_ms: args.grace_period_ms,
        nack_backoff_ms: 100,
        max_nack_backoff_ms: 10_000,
        pulsar: args.pulsar,
        metrics_addr: Some(args.metrics_addr),
        cluster: "localrun".into(),
        secrets_file: args.secrets_file,
        admin_addr: Some(ListenAddr::Off),
        admin_token: None,
        admin_token_file: None,
        instance_id: args.instance_id,
    };
    let fatal: Arc<Mutex<Option<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let mut watcher = None;
    let fqfn = spec.fqfn();
    let outcome = worker_cli::run_with(worker_args, state_dir, Loader::new(PluginCache::new(cache)), |handle| {
        let (handle, fatal, done) = (handle.clone(), Arc::clone(&fatal), Arc::clone(&done));
        let plugin = format!("{} in {}", spec.plugin, plugins_dir.display());
        watcher = Some(thread::spawn(move || watch(&handle, &fqfn, &plugin, &fatal, &done)));
    });
    done.store(true, Ordering::Release);
    if let Some(watcher) = watcher
        && watcher.join().is_err()
    {
        tracing::error!("the localrun watcher panicked");
    }
    outcome?;
    match lock(&fatal).take() {
        Some(reason) => anyhow::bail!(reason),
        None => Ok(()),
    }
}

/// Looks at the function until `done`; on a fatal state, notes why and stops the worker.
fn watch(handle: &WorkerHandle, fqfn: &str, plugin: &str, fatal: &Mutex<Option<String>>, done: &AtomicBool) {
    let started = Instant::now();
    while !done.load(Ordering::Acquire) {
        thread::sleep(LOOK_EVERY);
        let Ok(status) = handle.status(Some(fqfn)) else { continue };
        let Some(status) = status.first() else { continue };
        let reason = match &status.state {
            FunctionState::Failed(reason) => Some(format!("function {fqfn} failed: {reason}")),
            FunctionState::WaitingForPlugin if started.elapsed() > PLUGIN_WAIT => {
                let refusals: Vec<String> = status.refusals.iter().map(|refusal| refusal.reason.clone()).collect();
                let why = if refusals.is_empty() { "none found".to_owned() } else { refusals.join("; ") };
                Some(format!("function {fqfn} has no plugin after {PLUGIN_WAIT:?} (looked for {plugin}): {why}"))
            }
            _ => None,
        };
        if let Some(reason) = reason {
            tracing::error!(%fqfn, %reason, "localrun stops");
            *lock(fatal) = Some(reason);
            handle.shutdown();
            return;
        }
    }
}
