//! `pfn worker`: runs every function spec of a directory on embedded topics or on Pulsar
//! ([`Topics`]), watches the plugins directory, and swaps in higher plugin versions while the
//! functions run.
//!
//! One thread per function instance runs the per-message loop ([`instance_loop`]); this
//! module's coordinator thread starts functions, scans the plugins directory, and handles
//! rollbacks and shutdown. Status and triggers are served through a [`WorkerHandle`].

mod admin_view;
mod apply;
mod commits;
mod control;
mod delete;
mod deploy;
mod function;
mod functions_dir;
mod instance_loop;
mod lifecycle;
mod low_priority;
mod metrics;
mod outcomes;
mod plugins_dir;
mod pulsar_trigger;
mod reload;
mod retry_letter;
mod routed;
mod runner;
pub mod state;
pub mod stats;
mod table;
mod update_plan;
mod watchdog;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use thiserror::Error;

pub use self::{
    apply::Applied,
    delete::{DeleteError, Deleted},
    deploy::{Deploy, DeployError, Deployed, Upload},
    function::{FunctionShared, StartError},
    instance_loop::Backoff,
    lifecycle::{Lifecycle, LifecycleError},
    outcomes::{Outcome, Outcomes},
};
use self::{
    delete::SpecFile, deploy::DeployTarget, functions_dir::FunctionsDir, plugins_dir::PluginsDir,
    runner::FunctionRunner, state::FunctionState, stats::FunctionStatus, table::FunctionTable, watchdog::Watchdog,
};
use crate::{
    io::{
        embedded::EmbeddedBroker,
        pulsar::PulsarTransport,
        transport::{Message, Transport, TransportError},
    },
    loader::{Loader, Plugin},
    secrets::{SecretError, WorkerSecrets},
    state::{StateEntry, StateError, StateStore},
    telemetry::FlushMetrics,
    verify::Sha256Digest,
};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub plugins_dir: PathBuf,
    pub functions_dir: PathBuf,
    /// Keep the old version beside a new one and roll back when the new one fails this many
    /// messages that the old one processes (0: off).
    pub rollback_after: u32,
    /// How often the plugins directory is scanned.
    pub watch_interval: Duration,
    /// How long a shutdown waits for instances to finish the batch in hand.
    pub grace_period: Duration,
    pub nack_backoff: Backoff,
    /// The state store's file (created when missing).
    pub state_store: PathBuf,
    /// The cluster name every metric carries, as Pulsar Functions label theirs.
    pub cluster: String,
    /// Whether calls are timed for the latency metrics (the metrics endpoint is on).
    pub timing: bool,
    /// The worker-wide secrets file (`name = "value"` TOML), for `worker:` references.
    pub secrets_file: Option<PathBuf>,
    /// Run only this instance of each function, as one pod of a StatefulSet does (none: all).
    pub only_instance: Option<u32>,
}

/// Something the coordinator must act on.
#[derive(Debug)]
pub enum WorkerEvent {
    /// Stop: drain and return.
    Shutdown,
    /// An instance on probation went back to the old version.
    RolledBack { fqfn: String, instance: u32, from: String, to: String, reason: String },
    /// Delete function `fqfn` and answer on `reply`.
    Delete { fqfn: String, reply: mpsc::Sender<Result<Deleted, DeleteError>> },
    /// Apply the functions directory now and answer with what spec file `path` last came to.
    ApplySpec { path: PathBuf, reply: mpsc::Sender<Option<Applied>> },
    /// Start, stop or restart a function or one instance, and answer on `reply`.
    Lifecycle {
        fqfn: String,
        instance: Option<u32>,
        action: Lifecycle,
        reply: mpsc::Sender<Result<String, LifecycleError>>,
    },
}

/// Why a worker could not start.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("cannot read the {what} directory {path}: {source}")]
    Directory { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot start the plugin loader thread: {0}")]
    LoaderThread(std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Secrets(#[from] SecretError),
}

/// Why a state command failed.
#[derive(Debug, Error)]
pub enum StateCommandError {
    #[error(transparent)]
    Function(#[from] TriggerError),
    #[error("function {fqfn}: {source}")]
    State { fqfn: String, source: StateError },
}

/// Why a trigger gave no outcome.
#[derive(Debug, Error)]
pub enum TriggerError {
    #[error("no function {0} in this worker")]
    NoSuchFunction(String),
    #[error("function {fqfn} is not running ({state})")]
    NotRunning { fqfn: String, state: FunctionState },
    #[error("cannot publish to {topic}: {source}")]
    Publish { topic: String, source: TransportError },
    #[error("{fqfn} has no output topic (or no input topic) for a trigger to use")]
    NoOutput { fqfn: String },
    #[error("no outcome from {fqfn} within {waited:?}")]
    TimedOut { fqfn: String, waited: Duration },
}

/// Where a worker's functions read and write.
#[derive(Debug, Clone, Default)]
pub enum Topics {
    /// In-process topics (the endpoint's `topics` commands reach them).
    #[default]
    Embedded,
    /// A Pulsar cluster.
    Pulsar(Arc<PulsarTransport>),
}

/// The parts of a running worker that other threads use.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    /// The embedded topics (the functions' own when [`Topics::Embedded`]).
    pub broker: Arc<EmbeddedBroker>,
    pub topics: Topics,
    pub outcomes: Arc<Outcomes>,
    functions: Arc<FunctionTable>,
    /// Spec files refused, each with why.
    spec_errors: Arc<Mutex<BTreeMap<PathBuf, String>>>,
    events: mpsc::Sender<WorkerEvent>,
    /// The cluster name the metrics carry.
    cluster: Arc<str>,
    flushes: Arc<FlushMetrics>,
    /// Where created and updated functions' plugins and specs are written.
    deploy: Arc<DeployTarget>,
}

impl WorkerHandle {
    /// Asks the worker to drain and stop.
    pub fn shutdown(&self) {
        // The coordinator is gone only when it has stopped already.
        let _ = self.events.send(WorkerEvent::Shutdown);
    }

    /// The status of every function, or of the one named.
    pub fn status(&self, fqfn: Option<&str>) -> Result<Vec<FunctionStatus>, TriggerError> {
        match fqfn {
            None => Ok(self.listed().map(|function| function.status()).collect()),
            Some(fqfn) => Ok(vec![self.function(fqfn)?.status()]),
        }
    }

    /// One entry of function `fqfn`'s state, as a counter when `counter`.
    pub fn query_state(&self, fqfn: &str, key: &str, counter: bool) -> Result<StateEntry, StateCommandError> {
        let function = self.function(fqfn)?;
        function.store.query(key, counter).map_err(|source| StateCommandError::State { fqfn: fqfn.to_owned(), source })
    }

    /// Sets one entry of function `fqfn`'s state; returns once it is on disk.
    pub fn put_state(&self, fqfn: &str, entry: &StateEntry) -> Result<(), StateCommandError> {
        let function = self.function(fqfn)?;
        function.store.put_entry(entry).map_err(|source| StateCommandError::State { fqfn: fqfn.to_owned(), source })
    }

    /// The Pulsar transport's failure counters, when the functions run on Pulsar.
    pub fn pulsar_stats(&self) -> Option<crate::io::pulsar::PulsarStats> {
        let Topics::Pulsar(pulsar) = &self.topics else { return None };
        Some(pulsar.counters().snapshot())
    }

    /// Spec files that were refused, each with why.
    pub fn spec_errors(&self) -> Vec<String> {
        crate::sync::lock(&self.spec_errors).values().cloned().collect()
    }

    /// Applies the functions directory now (as the worker does every watch interval); returns
    /// what spec file `path` last came to, whichever look applied it.
    pub fn apply_spec(&self, path: &std::path::Path) -> Result<Option<Applied>, DeleteError> {
        let (reply, answer) = mpsc::channel();
        let apply = WorkerEvent::ApplySpec { path: path.to_path_buf(), reply };
        self.events.send(apply).map_err(|_| DeleteError::ShuttingDown)?;
        answer.recv().map_err(|_| DeleteError::ShuttingDown)
    }

    /// The functions not deleted, in name order.
    fn listed(&self) -> impl Iterator<Item = Arc<FunctionShared>> {
        self.functions.all().into_iter().filter(|function| !function.is_deleted())
    }

    fn function(&self, fqfn: &str) -> Result<Arc<FunctionShared>, TriggerError> {
        self.functions
            .get(fqfn)
            .filter(|function| !function.is_deleted())
            .ok_or_else(|| TriggerError::NoSuchFunction(fqfn.to_owned()))
    }

    /// Deletes function `fqfn`: stops its instances (waiting up to the grace period), deletes
    /// its subscription when its spec says `cleanup_subscription`, and removes its spec file.
    pub fn delete(&self, fqfn: &str) -> Result<Deleted, DeleteError> {
        if self.function(fqfn).is_err() {
            return Err(DeleteError::NoSuchFunction(fqfn.to_owned()));
        }
        let (reply, answer) = mpsc::channel();
        let delete = WorkerEvent::Delete { fqfn: fqfn.to_owned(), reply };
        self.events.send(delete).map_err(|_| DeleteError::ShuttingDown)?;
        answer.recv().map_err(|_| DeleteError::ShuttingDown)?
    }

    /// Publishes `value` to the function's first input and waits for what becomes of it (on
    /// Pulsar: for its output).
    pub fn trigger(&self, fqfn: &str, value: Vec<u8>, wait: Duration) -> Result<Outcome, TriggerError> {
        let function = self.function(fqfn)?;
        let state = function.state();
        if state != FunctionState::Running {
            return Err(TriggerError::NotRunning { fqfn: fqfn.to_owned(), state });
        }
        if let Topics::Pulsar(pulsar) = &self.topics {
            return pulsar_trigger::trigger(pulsar, &function, value, wait);
        }
        let topic = function.spec().inputs.first().cloned().unwrap_or_default();
        let message = Arc::new(Message::from_payload(value));
        let outcome = self.outcomes.watch(&message);
        if let Err(source) = self.broker.publish_shared(&topic, &[Arc::clone(&message)]) {
            self.outcomes.forget(&message);
            return Err(TriggerError::Publish { topic, source });
        }
        outcome.recv_timeout(wait).map_err(|_| {
            self.outcomes.forget(&message);
            TriggerError::TimedOut { fqfn: fqfn.to_owned(), waited: wait }
        })
    }
}

/// What a worker left behind when it stopped.
#[derive(Debug)]
pub struct WorkerSummary {
    pub functions: Vec<FunctionStatus>,
    /// Instances that were still in a call when the grace period ran out.
    pub stuck: Vec<(String, u32)>,
}

/// A worker, ready to run.
#[derive(Debug)]
pub struct Worker {
    options: WorkerOptions,
    loader: Loader,
    /// Where plugin files are read, hashed, copied and opened.
    loads: low_priority::LowPriority,
    handle: WorkerHandle,
    events: mpsc::Receiver<WorkerEvent>,
    /// The functions that run, by fully qualified name.
    runners: HashMap<String, FunctionRunner>,
    /// The functions stopped by request, with the plugin they ran (none if they were not
    /// running).
    stopped: HashMap<String, Option<Plugin>>,
    plugins: PluginsDir,
    functions_dir: FunctionsDir,
    /// What each spec file last came to, for the admin API to answer with.
    last_applied: HashMap<PathBuf, Applied>,
    /// Digests that function specs pin, which make a file without a manifest acceptable.
    spec_digests: Vec<Sha256Digest>,
    watchdog: Watchdog,
    wiring: function::Wiring,
    /// Dropped last: what the instances staged is flushed before the worker returns.
    state_store: StateStore,
}

impl Worker {
    /// Reads the function specs; a spec that does not validate is logged and left out.
    pub fn new(
        options: WorkerOptions,
        loader: Loader,
        broker: Arc<EmbeddedBroker>,
        topics: Topics,
    ) -> Result<Self, WorkerError> {
        for (what, path) in [("functions", &options.functions_dir), ("plugins", &options.plugins_dir)] {
            std::fs::read_dir(path).map_err(|source| WorkerError::Directory { what, path: path.clone(), source })?;
        }
        let state = StateStore::open(&options.state_store)?;
        let (sender, events) = mpsc::channel();
        let outcomes = Arc::new(Outcomes::default());
        let transport: Arc<dyn Transport> = match &topics {
            Topics::Embedded => Arc::new(Arc::clone(&broker)),
            Topics::Pulsar(pulsar) => Arc::new(Arc::clone(pulsar)),
        };
        let wiring = function::Wiring {
            transport,
            outcomes: Arc::clone(&outcomes),
            events: sender.clone(),
            backoff: options.nack_backoff,
            cluster: options.cluster.clone(),
            timing: options.timing,
            secrets: options.secrets_file.as_deref().map(WorkerSecrets::read).transpose()?.map(Arc::new),
            only_instance: options.only_instance,
        };
        let handle = WorkerHandle {
            broker,
            topics,
            outcomes,
            functions: Arc::new(FunctionTable::default()),
            spec_errors: Arc::default(),
            events: sender,
            cluster: Arc::from(options.cluster.as_str()),
            flushes: state.flush_metrics(),
            deploy: Arc::new(DeployTarget {
                loader: loader.clone(),
                plugins_dir: options.plugins_dir.clone(),
                functions_dir: options.functions_dir.clone(),
            }),
        };
        let mut worker = Self {
            plugins: PluginsDir::new(options.plugins_dir.clone()),
            functions_dir: FunctionsDir::new(options.functions_dir.clone()),
            last_applied: HashMap::new(),
            runners: HashMap::new(),
            stopped: HashMap::new(),
            options,
            loader,
            loads: low_priority::LowPriority::start().map_err(WorkerError::LoaderThread)?,
            handle,
            events,
            spec_digests: Vec::new(),
            watchdog: Watchdog::default(),
            wiring,
            state_store: state,
        };
        // The functions are known (and subscribed) from here; they start when the worker runs.
        worker.follow_functions_dir(false);
        Ok(worker)
    }

    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// Starts the functions, then watches and reloads until shut down; drains and returns.
    pub fn run(mut self) -> WorkerSummary {
        tracing::info!(path = %self.state_store.path().display(), "state store open");
        self.start_path_plugins();
        self.scan();
        loop {
            match self.events.recv_timeout(self.options.watch_interval) {
                Ok(WorkerEvent::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(WorkerEvent::RolledBack { fqfn, instance, from, to, reason }) => {
                    self.rolled_back(&fqfn, instance, &from, &to, &reason);
                }
                Ok(WorkerEvent::Delete { fqfn, reply }) => {
                    // The asker may have given up waiting; the function is deleted either way.
                    let _ = reply.send(self.delete(&fqfn, SpecFile::Remove));
                }
                Ok(WorkerEvent::Lifecycle { fqfn, instance, action, reply }) => {
                    let _ = reply.send(self.lifecycle(&fqfn, instance, action));
                }
                Ok(WorkerEvent::ApplySpec { path, reply }) => {
                    self.follow_functions_dir(true);
                    let _ = reply.send(self.last_applied.get(&path).cloned());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.scan();
                    self.follow_functions_dir(true);
                }
            }
        }
        let summary = self.drain();
        self.watchdog.stop();
        summary
    }

    fn scan(&mut self) {
        match self.plugins.scan() {
            Ok(settled) if settled.is_empty() => {}
            Ok(settled) => self.consider(&settled),
            Err(error) => {
                tracing::error!(dir = %self.options.plugins_dir.display(), %error, "cannot scan the plugins directory");
            }
        }
    }

    /// Stops every instance after its batch in hand, waits up to the grace period, and closes
    /// the topics.
    fn drain(&mut self) -> WorkerSummary {
        tracing::info!(grace_period = ?self.options.grace_period, "shutting down: draining in-flight work");
        let deadline = Instant::now() + self.options.grace_period;
        for runner in self.runners.values() {
            runner.request_stop();
        }
        let mut stuck = Vec::new();
        for (_, runner) in self.runners.drain() {
            let fqfn = runner.shared.fqfn.clone();
            stuck.extend(runner.join(deadline).into_iter().map(|id| (fqfn.clone(), id)));
        }
        self.handle.broker.close();
        if let Topics::Pulsar(pulsar) = &self.handle.topics {
            pulsar.close();
        }
        WorkerSummary { functions: self.handle.status(None).unwrap_or_default(), stuck }
    }
}
