//! One function in the worker as the other threads see it (its spec, state, instances and
//! history), why it may fail to start, and what every function is wired to.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use super::{
    WorkerEvent,
    control::InstanceControl,
    instance_loop::Backoff,
    outcomes::Outcomes,
    state::FunctionState,
    stats::{FunctionStatus, Refusal, Reload},
};
use crate::{
    config::FunctionSpec,
    instance::InitError,
    io::transport::{Transport, TransportError},
    plugin_log::FunctionLog,
    secrets::{SecretError, WorkerSecrets},
    state::FunctionStore,
    sync::lock,
};

/// What a function shares with status requests.
#[derive(Debug)]
pub struct FunctionShared {
    /// The spec the function runs; an update replaces it.
    spec: RwLock<Arc<FunctionSpec>>,
    /// The function's state, shared by its instances and read and written by the command line.
    pub store: FunctionStore,
    pub fqfn: String,
    /// The file the spec was read from.
    pub spec_file: PathBuf,
    deleted: AtomicBool,
    state: Mutex<FunctionState>,
    pub(super) version: Mutex<Option<String>>,
    pub(super) instances: Mutex<Vec<Arc<InstanceControl>>>,
    pub(super) reloads: Mutex<Vec<Reload>>,
    pub(super) refusals: Mutex<Vec<Refusal>>,
    /// The function's log level (changed with its spec, while it runs) and log topic.
    pub log: Arc<FunctionLog>,
}

impl FunctionShared {
    pub fn new(spec: FunctionSpec, spec_file: PathBuf, store: FunctionStore) -> Self {
        let log = Arc::new(FunctionLog::new(spec.fqfn(), spec.log_level.as_deref()));
        Self {
            store,
            fqfn: spec.fqfn(),
            spec: RwLock::new(Arc::new(spec)),
            spec_file,
            deleted: AtomicBool::new(false),
            state: Mutex::new(FunctionState::WaitingForPlugin),
            version: Mutex::new(None),
            instances: Mutex::new(Vec::new()),
            reloads: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            log,
        }
    }

    /// The spec the function runs.
    pub fn spec(&self) -> Arc<FunctionSpec> {
        Arc::clone(&self.spec.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the spec the function runs (its instances take it as the update applies it).
    pub(super) fn replace_spec(&self, spec: Arc<FunctionSpec>) {
        *self.spec.write().unwrap_or_else(PoisonError::into_inner) = spec;
    }

    /// Whether the function was deleted: it is no longer listed, started or triggered.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(super) fn mark_deleted(&self) {
        self.set_state(FunctionState::Deleted);
        self.deleted.store(true, Ordering::Release);
    }

    /// Lets go of every instance after a stop: the batches of those in `stuck` (still in a
    /// call) are taken back, so that nothing they return is published or acknowledged, and
    /// every consumer is detached from the subscription.
    pub(super) fn retire_instances(&self, stuck: &[u32]) {
        for control in std::mem::take(&mut *lock(&self.instances)) {
            if stuck.contains(&control.id) {
                control.take_back_batch();
            }
            control.source.detach();
        }
    }

    pub fn state(&self) -> FunctionState {
        lock(&self.state).clone()
    }

    pub fn set_state(&self, state: FunctionState) {
        *lock(&self.state) = state;
    }

    /// Records a refused plugin file, logs it, and counts it.
    pub fn refuse(&self, refusal: Refusal) {
        tracing::warn!(
            fqfn = %self.fqfn,
            file = %refusal.file,
            version = refusal.version.as_deref().unwrap_or("unknown"),
            reason = %refusal.reason,
            "plugin refused; the running version keeps running"
        );
        lock(&self.refusals).push(refusal);
    }

    pub fn record_reload(&self, reload: Reload) {
        lock(&self.reloads).push(reload);
    }

    /// Marks the last reload from `from` to `to` as rolled back.
    pub fn record_rollback(&self, from: &str, reason: &str) {
        if let Some(reload) = lock(&self.reloads).iter_mut().rev().find(|reload| reload.to == from) {
            reload.rolled_back = Some(reason.to_owned());
        }
    }

    pub fn status(&self) -> FunctionStatus {
        let spec = self.spec();
        FunctionStatus {
            fqfn: self.fqfn.clone(),
            plugin: spec.plugin.clone(),
            state: self.state(),
            version: lock(&self.version).clone(),
            inputs: spec.inputs.clone(),
            output: spec.output.clone(),
            instances: lock(&self.instances).iter().map(|control| control.stats.snapshot(control.id)).collect(),
            reloads: lock(&self.reloads).clone(),
            refusals: lock(&self.refusals).clone(),
        }
    }
}

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("function {fqfn}: cannot subscribe: {source}")]
    Subscribe { fqfn: String, source: TransportError },
    #[error("function {fqfn}: {refusal}")]
    Unsupported { fqfn: String, refusal: TransportError },
    #[error("function {fqfn}: cannot start an instance thread or process: {source}")]
    Thread { fqfn: String, source: std::io::Error },
    #[error("function {fqfn}: {reason}")]
    Secret { fqfn: String, reason: SecretError },
}

impl StartError {
    /// What went wrong, in a word.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Init(_) => "init",
            Self::Subscribe { .. } | Self::Unsupported { .. } | Self::Thread { .. } => "start",
            Self::Secret { .. } => "secret",
        }
    }
}

/// What every function's instances are wired to.
#[derive(Debug, Clone)]
pub(super) struct Wiring {
    pub transport: Arc<dyn Transport>,
    pub outcomes: Arc<Outcomes>,
    pub events: mpsc::Sender<WorkerEvent>,
    pub backoff: Backoff,
    /// The cluster name every instance's metrics carry.
    pub cluster: String,
    /// Whether calls are timed for the latency metrics (the metrics endpoint is on).
    pub timing: bool,
    /// The worker-wide secrets file's contents, for `worker:` references.
    pub secrets: Option<Arc<WorkerSecrets>>,
    /// The one instance id each function runs here, when not all.
    pub only_instance: Option<u32>,
}
