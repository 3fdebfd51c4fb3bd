//! A running function: one thread per instance, the plugin they run, and changing either while
//! the function runs (a new version, a new configuration, more or fewer instances).

use std::{
    collections::BTreeMap,
    ops::Range,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    control::{InstanceControl, Swap},
    function::{FunctionShared, StartError, Wiring},
    instance_loop::{BATCH, CHILD_BATCH, InstanceLoop, LoopSettings},
    state::FunctionState,
    watchdog::Watched,
};
use crate::{
    config::FunctionSpec,
    context::{FunctionIdentity, Services},
    execute::Policy,
    hosted::{Hosting, Instance},
    instance::InitError,
    io::transport::Sink,
    loader::Plugin,
    plugin_log::topic::LogTopic,
    secrets::Secrets,
    state::StateSlot,
    sync::lock,
    telemetry::{InstanceLabels, InstanceMetrics},
    vocabulary::Runtime,
};

/// One instance's thread and what it shares with the worker.
#[derive(Debug)]
struct RunningInstance {
    control: Arc<InstanceControl>,
    thread: JoinHandle<()>,
}

/// A new instance, initialised but not yet subscribed.
struct Prepared {
    id: u32,
    instance: Instance,
    slot: Arc<StateSlot>,
    metrics: Arc<InstanceMetrics>,
}

/// Instances taken out of a running function.
#[derive(Debug, Default)]
pub(super) struct Removed {
    /// Their controls, for the watchdog to forget.
    pub controls: Vec<Arc<InstanceControl>>,
    /// Those still in a call when the deadline passed; their batches were taken back.
    pub stuck: Vec<u32>,
}

/// A running function.
#[derive(Debug)]
pub(super) struct FunctionRunner {
    pub shared: Arc<FunctionShared>,
    pub plugin: Plugin,
    /// The version before the last upgrade, kept for a rollback.
    pub previous: Option<Plugin>,
    instances: BTreeMap<u32, RunningInstance>,
    /// The function's secrets, resolved when its spec was last applied.
    secrets: Arc<Secrets>,
    /// Where its instances run.
    hosting: Hosting,
    settings: Arc<LoopSettings>,
    sink: Arc<dyn Sink>,
}

impl FunctionRunner {
    /// Initialises every instance, then subscribes each one and starts its thread.
    pub fn start(
        shared: Arc<FunctionShared>,
        plugin: Plugin,
        wiring: &Wiring,
    ) -> Result<(Self, Vec<Watched>), StartError> {
        let spec = shared.spec();
        let fqfn = shared.fqfn.clone();
        if let Err(refusal) = wiring.transport.offers(spec.processing_guarantees) {
            return Err(StartError::Unsupported { fqfn, refusal });
        }
        let secrets = resolve_secrets(&spec, wiring)?;
        let sink = wiring.transport.sink(spec.producer_settings());
        let settings = Arc::new(loop_settings(&spec, wiring));
        let timeout = spec.timeout_ms.map(Duration::from_millis);
        let hosting = Hosting::of(spec.runtime, spec.resources, timeout)
            .map_err(|source| StartError::Thread { fqfn: fqfn.clone(), source })?;
        let mut runner =
            Self { shared, plugin, previous: None, instances: BTreeMap::new(), secrets, hosting, settings, sink };
        let prepared = runner.prepare(&spec, &here(0..spec.parallelism, wiring), wiring)?;
        if let Some(topic) = &spec.log_topic {
            let log_topic = LogTopic::start(&fqfn, topic.clone(), Arc::clone(&runner.sink))
                .map_err(|source| StartError::Thread { fqfn: fqfn.clone(), source })?;
            runner.shared.log.attach_topic(log_topic);
        }
        let watched = match runner.spawn(&spec, prepared, wiring) {
            Ok(watched) => watched,
            Err(error) => {
                runner.request_stop();
                runner.shared.retire_instances(&[]);
                return Err(error);
            }
        };
        let version = runner.plugin.info.version.clone();
        *lock(&runner.shared.version) = Some(version.clone());
        runner.shared.set_state(FunctionState::Running);
        tracing::info!(%fqfn, %version, instances = runner.instances.len(), "function started");
        Ok((runner, watched))
    }

    /// Starts instances `ids` of the current plugin and spec (ids already running are left alone).
    pub fn add_instances(&mut self, ids: Range<u32>, wiring: &Wiring) -> Result<Vec<Watched>, StartError> {
        let spec = self.shared.spec();
        let ids: Vec<u32> = here(ids, wiring).into_iter().filter(|id| !self.instances.contains_key(id)).collect();
        let prepared = self.prepare(&spec, &ids, wiring)?;
        self.spawn(&spec, prepared, wiring)
    }

    /// Stops the instances whose id is in `ids` after their batch in hand, waits for them until
    /// `deadline`, and detaches their consumers: what they had not acknowledged goes to the
    /// other consumers of the subscription.
    pub fn remove_instances(&mut self, ids: impl Fn(u32) -> bool, deadline: Instant) -> Removed {
        let leaving: Vec<u32> = self.instances.keys().copied().filter(|id| ids(*id)).collect();
        let leaving: Vec<RunningInstance> = leaving.iter().filter_map(|id| self.instances.remove(id)).collect();
        for instance in &leaving {
            instance.control.request_stop();
        }
        let mut removed = Removed::default();
        for RunningInstance { control, thread } in leaving {
            if !self.wait_for(&control, thread, deadline) {
                control.take_back_batch();
                removed.stuck.push(control.id);
            }
            control.source.detach();
            removed.controls.push(control);
        }
        self.publish_instances();
        removed
    }

    /// Initialises each instance anew with the function's current spec (user config, secrets)
    /// and leaves it to be switched to at the instance's next message boundary. Nothing changes
    /// if a secret cannot be resolved or any init fails.
    pub fn reconfigure(&mut self, wiring: &Wiring) -> Result<(), StartError> {
        let spec = self.shared.spec();
        let secrets = resolve_secrets(&spec, wiring)?;
        let instances = self.instantiate_running(&spec, &self.plugin, &secrets)?;
        self.secrets = secrets;
        self.offer_swaps(instances, None);
        Ok(())
    }

    /// Initialises an instance of `plugin` per instance, then leaves each one to be switched
    /// to at its instance's next message boundary. Nothing changes if any init fails.
    pub fn upgrade(&mut self, plugin: Plugin, probation: Option<u32>) -> Result<(), InitError> {
        let instances = self.instantiate_running(&self.shared.spec(), &plugin, &self.secrets)?;
        self.offer_swaps(instances, probation);
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
        let spec = self.shared.spec();
        for control in self.instances.values().map(|running| &running.control) {
            if control.id == reporter || control.take_swap().is_some() {
                continue;
            }
            if *lock(&control.stats.version) != from {
                continue;
            }
            let services = services_of(control, &self.secrets, &self.shared);
            match self.hosting.instantiate(&previous, FunctionIdentity::for_spec(&spec, control.id), services) {
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
        for running in self.instances.values() {
            running.control.request_stop();
        }
    }

    /// Waits for the instances to stop, until `deadline`. Returns the ids still running.
    pub fn join(mut self, deadline: Instant) -> Vec<u32> {
        let mut stuck = Vec::new();
        for RunningInstance { control, thread } in std::mem::take(&mut self.instances).into_values() {
            if !self.wait_for(&control, thread, deadline) {
                stuck.push(control.id);
            }
        }
        self.shared.set_state(if stuck.is_empty() { FunctionState::Stopped } else { FunctionState::Stopping });
        stuck
    }

    /// Waits until `deadline` for an instance's thread to end; whether it did.
    fn wait_for(&self, control: &InstanceControl, thread: JoinHandle<()>, deadline: Instant) -> bool {
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !thread.is_finished() {
            return false;
        }
        if thread.join().is_err() {
            tracing::error!(fqfn = %self.shared.fqfn, instance = control.id, "instance thread panicked");
        }
        true
    }

    /// Creates instances `ids` of the plugin, each with a new state slot and metrics.
    fn prepare(&self, spec: &FunctionSpec, ids: &[u32], wiring: &Wiring) -> Result<Vec<Prepared>, InitError> {
        ids.iter()
            .map(|&id| {
                let labels = InstanceLabels {
                    tenant: spec.tenant.clone(),
                    namespace: spec.namespace.clone(),
                    name: spec.name.clone(),
                    instance_id: id,
                    cluster: wiring.cluster.clone(),
                };
                let slot = Arc::new(StateSlot::new(self.shared.store.clone()));
                let metrics = Arc::new(InstanceMetrics::new(labels));
                let services = Services {
                    state: Some(slot.clone()),
                    metrics: Some(metrics.clone()),
                    secrets: Some(Arc::clone(&self.secrets)),
                    log: Some(Arc::clone(&self.shared.log)),
                };
                let instance =
                    self.hosting.instantiate(&self.plugin, FunctionIdentity::for_spec(spec, id), services)?;
                Ok(Prepared { id, instance, slot, metrics })
            })
            .collect()
    }

    /// Subscribes each prepared instance and starts its thread.
    fn spawn(
        &mut self,
        spec: &FunctionSpec,
        prepared: Vec<Prepared>,
        wiring: &Wiring,
    ) -> Result<Vec<Watched>, StartError> {
        let fqfn = &self.shared.fqfn;
        let request = spec.subscription_request();
        let mut watched = Vec::new();
        let mut spawned = Ok(());
        for Prepared { id, instance, slot, metrics } in prepared {
            let source = match wiring.transport.subscribe(&request) {
                Ok(source) => source,
                Err(source) => {
                    spawned = Err(StartError::Subscribe { fqfn: fqfn.clone(), source });
                    break;
                }
            };
            let control = Arc::new(InstanceControl::new(id, source, &self.plugin.info.version, slot, metrics));
            let instance_loop = InstanceLoop::new(
                Arc::clone(&control),
                instance,
                Arc::clone(&self.settings),
                Arc::clone(&self.sink),
                Arc::clone(&wiring.outcomes),
                wiring.events.clone(),
            );
            let thread =
                std::thread::Builder::new().name(format!("pfn-{}-{id}", spec.name)).spawn(move || instance_loop.run());
            let thread = match thread {
                Ok(thread) => thread,
                Err(source) => {
                    control.source.detach();
                    spawned = Err(StartError::Thread { fqfn: fqfn.clone(), source });
                    break;
                }
            };
            if let Some(timeout_ms) = spec.timeout_ms.filter(|_| self.settings.timeouts) {
                let timeout = Duration::from_millis(timeout_ms);
                watched.push(Watched::new(fqfn.clone(), timeout, wiring.backoff, Arc::clone(&control)));
            }
            self.instances.insert(id, RunningInstance { control, thread });
        }
        self.publish_instances();
        spawned.map(|()| watched)
    }

    /// Shows status the instances that run now.
    fn publish_instances(&self) {
        let controls = self.instances.values().map(|running| Arc::clone(&running.control)).collect();
        *lock(&self.shared.instances) = controls;
    }

    /// Leaves each of `instances` (one per running instance, in id order) to be switched to at
    /// its instance's next message boundary.
    fn offer_swaps(&self, instances: Vec<Instance>, probation: Option<u32>) {
        for (running, instance) in self.instances.values().zip(instances) {
            // A swap the instance had not taken yet is superseded by this one.
            drop(running.control.offer_swap(Swap { instance, probation }));
        }
    }

    /// A new instance of `plugin` for each running instance, with `secrets`.
    fn instantiate_running(
        &self,
        spec: &FunctionSpec,
        plugin: &Plugin,
        secrets: &Arc<Secrets>,
    ) -> Result<Vec<Instance>, InitError> {
        let controls = self.instances.values().map(|running| &running.control);
        controls
            .map(|control| {
                let services = services_of(control, secrets, &self.shared);
                self.hosting.instantiate(plugin, FunctionIdentity::for_spec(spec, control.id), services)
            })
            .collect()
    }
}

/// The ids of `ids` that run in this worker: all, or the one it was told to run.
fn here(ids: Range<u32>, wiring: &Wiring) -> Vec<u32> {
    ids.filter(|id| wiring.only_instance.is_none_or(|only| only == *id)).collect()
}

/// The function's secrets, resolved from its spec.
fn resolve_secrets(spec: &FunctionSpec, wiring: &Wiring) -> Result<Arc<Secrets>, StartError> {
    Secrets::resolve(&spec.secrets, wiring.secrets.as_deref(), |name| std::env::var(name).ok())
        .map(Secrets::shared)
        .map_err(|reason| StartError::Secret { fqfn: spec.fqfn(), reason })
}

/// What every instance of a function run with `spec` shares.
fn loop_settings(spec: &FunctionSpec, wiring: &Wiring) -> LoopSettings {
    LoopSettings {
        fqfn: spec.fqfn(),
        output: spec.output.clone(),
        forward_properties: spec.forward_source_message_property,
        mark_outputs: wiring.transport.marks_outputs(),
        dead_letter_topic: spec.dead_letter(),
        retry_topic: spec.retry_topic(),
        policy: Policy { guarantees: spec.processing_guarantees, max_message_retries: spec.max_message_retries },
        // The process runtime kills an overrunning call's child itself.
        timeouts: spec.timeout_ms.is_some() && spec.runtime == Runtime::Thread,
        nack_backoff: wiring.backoff,
        timing: wiring.timing,
        batch: if spec.runtime == Runtime::Process { CHILD_BATCH } else { BATCH },
    }
}

/// The services of an instance: its control's state slot and metrics, the function's secrets
/// and log.
fn services_of(control: &InstanceControl, secrets: &Arc<Secrets>, shared: &FunctionShared) -> Services {
    Services {
        state: Some(control.state.clone()),
        metrics: Some(control.stats.metrics.clone()),
        secrets: Some(Arc::clone(secrets)),
        log: Some(Arc::clone(&shared.log)),
    }
}
