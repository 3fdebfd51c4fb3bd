//! One function in the worker: its instances' threads, the plugin they run, and swapping it.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    WorkerEvent,
    control::{InstanceControl, Swap},
    instance_loop::{Backoff, InstanceLoop, LoopSettings},
    outcomes::Outcomes,
    spec_follow::SpecSeen,
    state::FunctionState,
    stats::{FunctionStatus, Refusal, Reload},
    watchdog::Watched,
};
use crate::{
    config::FunctionSpec,
    context::{FunctionIdentity, Services},
    execute::Policy,
    instance::{InitError, PluginInstance},
    io::transport::{Transport, TransportError},
    loader::Plugin,
    plugin_log::{FunctionLog, topic::LogTopic},
    secrets::{SecretError, Secrets, WorkerSecrets},
    state::{FunctionStore, StateSlot},
    sync::lock,
    telemetry::{InstanceLabels, InstanceMetrics},
};

/// What a function shares with status requests.
#[derive(Debug)]
pub struct FunctionShared {
    pub spec: FunctionSpec,
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
    /// When its spec file was last seen changed.
    pub(super) spec_seen: SpecSeen,
}

impl FunctionShared {
    pub fn new(spec: FunctionSpec, spec_file: PathBuf, store: FunctionStore) -> Self {
        let log = Arc::new(FunctionLog::new(spec.fqfn(), spec.log_level.as_deref()));
        let spec_seen = SpecSeen::default();
        if let Ok(modified) = std::fs::metadata(&spec_file).and_then(|metadata| metadata.modified()) {
            spec_seen.note(modified);
        }
        Self {
            store,
            fqfn: spec.fqfn(),
            spec,
            spec_file,
            deleted: AtomicBool::new(false),
            state: Mutex::new(FunctionState::WaitingForPlugin),
            version: Mutex::new(None),
            instances: Mutex::new(Vec::new()),
            reloads: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            log,
            spec_seen,
        }
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
        FunctionStatus {
            fqfn: self.fqfn.clone(),
            plugin: self.spec.plugin.clone(),
            state: self.state(),
            version: lock(&self.version).clone(),
            inputs: self.spec.inputs.clone(),
            output: self.spec.output.clone(),
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
    #[error("function {fqfn}: cannot start instance thread: {source}")]
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
}

/// A running function.
#[derive(Debug)]
pub(super) struct FunctionRunner {
    pub shared: Arc<FunctionShared>,
    pub plugin: Plugin,
    /// The version before the last upgrade, kept for a rollback.
    pub previous: Option<Plugin>,
    controls: Vec<Arc<InstanceControl>>,
    threads: Vec<JoinHandle<()>>,
    /// The function's secrets, resolved when it started, for the instances of new versions too.
    secrets: Arc<Secrets>,
}

/// Creates one instance of `plugin` per instance id of the function, each with its services.
fn instantiate_all(
    spec: &FunctionSpec,
    plugin: &Plugin,
    services: &[Services],
) -> Result<Vec<PluginInstance>, InitError> {
    (0..spec.parallelism).zip(services).map(|(id, services)| instantiate(spec, plugin, id, services)).collect()
}

/// Creates instance `id` of `plugin`, with `services`.
fn instantiate(
    spec: &FunctionSpec,
    plugin: &Plugin,
    id: u32,
    services: &Services,
) -> Result<PluginInstance, InitError> {
    plugin.instantiate(FunctionIdentity::for_spec(spec, id), services.clone())
}

/// The services of an instance: its control's state slot and metrics, and the function's secrets.
fn services_of(control: &InstanceControl, secrets: &Arc<Secrets>, log: &Arc<FunctionLog>) -> Services {
    Services {
        state: Some(Arc::clone(&control.state)),
        metrics: Some(Arc::clone(&control.stats.metrics)),
        secrets: Some(Arc::clone(secrets)),
        log: Some(Arc::clone(log)),
    }
}

impl FunctionRunner {
    /// Initialises every instance, then subscribes each one and starts its thread.
    pub fn start(
        shared: Arc<FunctionShared>,
        plugin: Plugin,
        index: usize,
        wiring: &Wiring,
    ) -> Result<(Self, Vec<Watched>), StartError> {
        let spec = &shared.spec;
        let fqfn = shared.fqfn.clone();
        if let Err(refusal) = wiring.transport.offers(spec.processing_guarantees) {
            return Err(StartError::Unsupported { fqfn, refusal });
        }
        let secrets = Secrets::resolve(&spec.secrets, wiring.secrets.as_deref(), |name| std::env::var(name).ok())
            .map_err(|reason| StartError::Secret { fqfn: fqfn.clone(), reason })?
            .shared();
        let parts: Vec<(Arc<StateSlot>, Arc<InstanceMetrics>)> = (0..spec.parallelism)
            .map(|id| {
                let labels = InstanceLabels {
                    tenant: spec.tenant.clone(),
                    namespace: spec.namespace.clone(),
                    name: spec.name.clone(),
                    instance_id: id,
                    cluster: wiring.cluster.clone(),
                };
                (Arc::new(StateSlot::new(shared.store.clone())), Arc::new(InstanceMetrics::new(labels)))
            })
            .collect();
        let services: Vec<Services> = parts
            .iter()
            .map(|(slot, metrics)| Services {
                state: Some(Arc::clone(slot)),
                metrics: Some(Arc::clone(metrics)),
                secrets: Some(Arc::clone(&secrets)),
                log: Some(Arc::clone(&shared.log)),
            })
            .collect();
        let instances = instantiate_all(spec, &plugin, &services)?;
        let settings = Arc::new(LoopSettings {
            fqfn: fqfn.clone(),
            function: index,
            output: spec.output.clone(),
            forward_properties: spec.forward_source_message_property,
            mark_outputs: wiring.transport.marks_outputs(),
            dead_letter_topic: spec.dead_letter(),
            policy: Policy { guarantees: spec.processing_guarantees, max_message_retries: spec.max_message_retries },
            timeouts: spec.timeout_ms.is_some(),
            nack_backoff: wiring.backoff,
            timing: wiring.timing,
        });
        let mut controls = Vec::new();
        let mut threads = Vec::new();
        let mut watched = Vec::new();
        let request = spec.subscription_request();
        let sink = wiring.transport.sink(spec.producer_settings());
        if let Some(topic) = &spec.log_topic {
            let log_topic = LogTopic::start(&fqfn, topic.clone(), Arc::clone(&sink))
                .map_err(|source| StartError::Thread { fqfn: fqfn.clone(), source })?;
            shared.log.attach_topic(log_topic);
        }
        for ((id, instance), (slot, metrics)) in (0..).zip(instances).zip(parts) {
            let source = wiring
                .transport
                .subscribe(&request)
                .map_err(|source| StartError::Subscribe { fqfn: fqfn.clone(), source })?;
            let control = Arc::new(InstanceControl::new(id, source, &plugin.info.version, slot, metrics));
            if let Some(timeout_ms) = spec.timeout_ms {
                let timeout = Duration::from_millis(timeout_ms);
                watched.push(Watched::new(fqfn.clone(), timeout, wiring.backoff, Arc::clone(&control)));
            }
            let instance_loop = InstanceLoop::new(
                Arc::clone(&control),
                instance,
                Arc::clone(&settings),
                Arc::clone(&sink),
                Arc::clone(&wiring.outcomes),
                wiring.events.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("pfn-{}-{id}", spec.name))
                .spawn(move || instance_loop.run())
                .map_err(|source| StartError::Thread { fqfn: fqfn.clone(), source })?;
            controls.push(control);
            threads.push(thread);
        }
        *lock(&shared.instances) = controls.clone();
        *lock(&shared.version) = Some(plugin.info.version.clone());
        shared.set_state(FunctionState::Running);
        tracing::info!(fqfn = %shared.fqfn, version = %plugin.info.version, instances = controls.len(), "function started");
        Ok((Self { shared, plugin, previous: None, controls, threads, secrets }, watched))
    }

    /// Initialises an instance of `plugin` per instance, then leaves each one to be switched
    /// to at its instance's next message boundary. Nothing changes if any init fails.
    pub fn upgrade(&mut self, plugin: Plugin, probation: Option<u32>) -> Result<(), InitError> {
        let services: Vec<Services> =
            self.controls.iter().map(|control| services_of(control, &self.secrets, &self.shared.log)).collect();
        let instances = instantiate_all(&self.shared.spec, &plugin, &services)?;
        for (control, instance) in self.controls.iter().zip(instances) {
            // A swap the instance had not taken yet is superseded by this one.
            drop(control.offer_swap(Swap { instance, probation }));
        }
        *lock(&self.shared.version) = Some(plugin.info.version.clone());
        self.previous = Some(std::mem::replace(&mut self.plugin, plugin));
        Ok(())
    }

    /// Puts every instance back on the previous version after instance `reporter` rolled
    /// itself back from `from`. Returns false when `from` is not the running version (the
    /// rollback was already done for another instance's report).
    pub fn roll_back(&mut self, reporter: u32, from: &str) -> bool {
        if self.plugin.info.version != from {
            return false;
        }
        let Some(previous) = self.previous.take() else { return false };
        for control in &self.controls {
            if control.id == reporter || control.take_swap().is_some() {
                continue;
            }
            if *lock(&control.stats.version) != from {
                continue;
            }
            match instantiate(
                &self.shared.spec,
                &previous,
                control.id,
                &services_of(control, &self.secrets, &self.shared.log),
            ) {
                Ok(instance) => drop(control.offer_swap(Swap { instance, probation: None })),
                Err(error) => {
                    tracing::error!(fqfn = %self.shared.fqfn, instance = control.id, %error, "rollback init failed; instance stays on the new version")
                }
            }
        }
        *lock(&self.shared.version) = Some(previous.info.version.clone());
        self.plugin = previous;
        true
    }

    /// Asks every instance to stop after its batch in hand.
    pub fn request_stop(&self) {
        for control in &self.controls {
            control.request_stop();
        }
    }

    /// Waits for the instances to stop, until `deadline`. Returns the ids still running.
    pub fn join(self, deadline: Instant) -> Vec<u32> {
        let mut stuck = Vec::new();
        for (control, thread) in self.controls.iter().zip(self.threads) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                if thread.join().is_err() {
                    tracing::error!(fqfn = %self.shared.fqfn, instance = control.id, "instance thread panicked");
                }
            } else {
                stuck.push(control.id);
            }
        }
        self.shared.set_state(if stuck.is_empty() { FunctionState::Stopped } else { FunctionState::Stopping });
        stuck
    }
}
