//! Applying the functions directory to the running worker: a spec file added creates its
//! function, one changed updates it (see [`UpdatePlan`]), one removed deletes it. A spec that
//! does not validate is refused with every problem named, and what runs is left as it was.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use serde::Serialize;

use super::{FunctionShared, Topics, Worker, delete::SpecFile, functions_dir::SpecChange, update_plan::UpdatePlan};
use crate::{
    config::{FunctionSpec, SpecError},
    loader::Plugin,
    sync::lock,
    verify::Sha256Digest,
};

/// What one spec file came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Applied {
    Created {
        fqfn: String,
    },
    /// How: "restarted", or what applied live.
    Updated {
        fqfn: String,
        how: String,
    },
    Unchanged {
        fqfn: String,
    },
    Deleted {
        fqfn: String,
    },
    /// The spec was refused; the functions run as they were.
    Refused {
        reason: String,
    },
}

impl Worker {
    /// Applies what changed in the functions directory since the last look, and notes what
    /// each changed file came to.
    pub(super) fn follow_functions_dir(&mut self, start: bool) {
        let changes = match self.functions_dir.scan() {
            Ok(changes) => changes,
            Err(error) => {
                let dir = self.functions_dir.path().display().to_string();
                tracing::error!(%dir, %error, "cannot scan the functions directory");
                return;
            }
        };
        for change in changes {
            let path = change.path().to_path_buf();
            match self.apply(&change, start) {
                Some(applied) => drop(self.last_applied.insert(path, applied)),
                None => drop(self.last_applied.remove(&path)),
            }
        }
    }

    /// Applies one change; nothing when a removed file had no function (it was refused, or
    /// the function was deleted first).
    fn apply(&mut self, change: &SpecChange, start: bool) -> Option<Applied> {
        let path = change.path();
        let known = self.handle.listed().find(|function| function.spec_file == path);
        let applied = match (change, known) {
            (SpecChange::Removed(_), None) => {
                lock(&self.handle.spec_errors).remove(path);
                return None;
            }
            (SpecChange::Removed(_), Some(function)) => self.delete_function(&function.fqfn, SpecFile::Gone),
            (_, known) => match read_spec(path) {
                Err(reason) => Applied::Refused { reason },
                Ok(spec) => match known {
                    Some(function) if function.fqfn == spec.fqfn() => self.update(&function, spec),
                    Some(function) => {
                        // The file now names another function: the one it named goes.
                        self.delete_function(&function.fqfn, SpecFile::Gone);
                        self.create(spec, path, start)
                    }
                    None => self.create(spec, path, start),
                },
            },
        };
        let mut errors = lock(&self.handle.spec_errors);
        match &applied {
            Applied::Refused { reason } => {
                tracing::error!(file = %path.display(), %reason, "function spec refused; the functions run as they were");
                errors.insert(path.to_path_buf(), reason.clone());
            }
            _ => drop(errors.remove(path)),
        }
        Some(applied)
    }

    fn delete_function(&mut self, fqfn: &str, spec_file: SpecFile) -> Applied {
        match self.delete(fqfn, spec_file) {
            Ok(deleted) => Applied::Deleted { fqfn: deleted.fqfn },
            Err(error) => Applied::Refused { reason: error.to_string() },
        }
    }

    /// Adds a function; starts it unless the worker is still being set up.
    fn create(&mut self, spec: FunctionSpec, path: &Path, start: bool) -> Applied {
        let fqfn = spec.fqfn();
        if let Some(other) = self.handle.functions.get(&fqfn) {
            let reason = format!("function {fqfn} is defined twice: in {} too", other.spec_file.display());
            return Applied::Refused { reason };
        }
        let shared = self.register(spec, path);
        if start {
            self.start_function(&shared);
        }
        tracing::info!(%fqfn, file = %path.display(), "function created");
        Applied::Created { fqfn }
    }

    /// Makes a function known: in the table, with its subscriptions and its pinned digest.
    fn register(&mut self, spec: FunctionSpec, path: &Path) -> Arc<FunctionShared> {
        // Subscriptions exist from the moment the worker knows the function, as in Pulsar, so
        // that what is published before its plugin is running (or loaded at all) waits for it.
        if let Topics::Embedded = self.handle.topics {
            for topic in &spec.inputs {
                let broker = &self.handle.broker;
                if let Err(error) = broker.create_subscription(topic, &spec.subscription(), spec.subscription_type()) {
                    tracing::error!(fqfn = %spec.fqfn(), %error, "cannot create the function's subscription");
                }
            }
        }
        if let Some(digest) = spec.plugin_sha256.as_deref().and_then(|digest| Sha256Digest::parse(digest).ok()) {
            self.spec_digests.push(digest);
        }
        let store = self.state_store.function(&spec.fqfn());
        let shared = Arc::new(FunctionShared::new(spec, path.to_path_buf(), store));
        self.handle.functions.insert(Arc::clone(&shared));
        shared
    }

    /// Applies a changed spec to a function, as little disturbing it as the change allows.
    fn update(&mut self, function: &Arc<FunctionShared>, spec: FunctionSpec) -> Applied {
        let fqfn = function.fqfn.clone();
        let running = function.spec();
        let plan = UpdatePlan::between(&running, &spec);
        if plan.is_empty() {
            return Applied::Unchanged { fqfn };
        }
        if plan.restart {
            self.restart(function, spec);
        } else if let Err(reason) = self.update_live(function, spec, plan) {
            function.log.set_level(running.log_level.as_deref());
            function.replace_spec(running);
            return Applied::Refused { reason };
        }
        let how = plan.describe();
        tracing::info!(%fqfn, %how, "function updated");
        Applied::Updated { fqfn, how }
    }

    /// Applies a new log level, configuration or parallelism without stopping the function.
    fn update_live(&mut self, function: &FunctionShared, spec: FunctionSpec, plan: UpdatePlan) -> Result<(), String> {
        function.log.set_level(spec.log_level.as_deref());
        function.replace_spec(Arc::new(spec));
        let Some(runner) = self.runners.get_mut(&function.fqfn) else { return Ok(()) };
        if plan.reconfigure {
            runner.reconfigure(&self.wiring).map_err(|error| error.to_string())?;
        }
        match plan.parallelism {
            Some((from, to)) if to > from => {
                let watched = runner.add_instances(from..to, &self.wiring).map_err(|error| error.to_string())?;
                self.watchdog.watch(watched);
            }
            Some((_, to)) => {
                let removed = runner.remove_instances(|id| id >= to, Instant::now() + self.options.grace_period);
                self.watchdog.forget(|watched| removed.controls.iter().any(|c| Arc::ptr_eq(c, &watched.control)));
                if !removed.stuck.is_empty() {
                    tracing::warn!(fqfn = %function.fqfn, stuck = ?removed.stuck, "instances were still in a call when the grace period ran out; their batches were handed back");
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Stops the function's instances after their batches in hand, then starts it again with
    /// `spec`, on the plugin it ran when that still fits the spec.
    fn restart(&mut self, function: &Arc<FunctionShared>, spec: FunctionSpec) {
        if let Some(plugin) = self.stopped.remove(&function.fqfn) {
            // Stopped by request: it takes the new spec and stays stopped, keeping its plugin
            // when that still fits.
            let same_file =
                function.spec().plugin == spec.plugin && function.spec().plugin_sha256 == spec.plugin_sha256;
            let shared = self.register(spec, &function.spec_file);
            shared.set_state(super::state::FunctionState::Stopped);
            let plugin = plugin.filter(|plugin| same_file && shared.spec().accepts(&plugin.version));
            self.stopped.insert(shared.fqfn.clone(), plugin);
            return;
        }
        let plugin = self.stop_function(function).map(|stopped| stopped.plugin);
        let shared = self.register(spec, &function.spec_file);
        let (old, spec) = (function.spec(), shared.spec());
        let same_file = old.plugin == spec.plugin && old.plugin_sha256 == spec.plugin_sha256;
        match plugin.filter(|plugin| same_file && spec.accepts(&plugin.version)) {
            Some(plugin) => {
                let path = PathBuf::from(&spec.plugin);
                self.start(&shared, plugin, &path);
            }
            None => self.start_function(&shared),
        }
    }

    /// Stops a function's instances (up to the grace period) and lets go of them; none when
    /// it was not running.
    pub(super) fn stop_function(&mut self, function: &FunctionShared) -> Option<StoppedRunner> {
        let runner = self.runners.remove(&function.fqfn)?;
        let plugin = runner.plugin.clone();
        runner.request_stop();
        let stuck = runner.join(Instant::now() + self.options.grace_period);
        self.watchdog.forget(|watched| watched.fqfn == function.fqfn);
        function.retire_instances(&stuck);
        if !stuck.is_empty() {
            tracing::warn!(fqfn = %function.fqfn, ?stuck, "instances were still in a call when the grace period ran out; their batches were handed back");
        }
        Some(StoppedRunner { plugin, stuck })
    }

    /// Starts a function that does not run: from its plugin file when the spec names a path,
    /// else with the best plugin of the plugins directory that it accepts.
    pub(super) fn start_function(&mut self, function: &Arc<FunctionShared>) {
        let spec = function.spec();
        if spec.plugin_is_file() {
            self.start_from_path(function);
        } else {
            let known = self.plugins.known();
            let files = self.identify(&known);
            for file in files.iter().filter(|file| file.name == spec.plugin) {
                self.offer(function, file);
            }
        }
    }
}

/// What stopping a running function left.
pub(super) struct StoppedRunner {
    /// The plugin its instances ran.
    pub plugin: Plugin,
    /// The instances still in a call when the grace period ran out (their batches were taken
    /// back).
    pub stuck: Vec<u32>,
}

/// Reads and validates a spec file, its refusal as the worker reports it.
fn read_spec(path: &Path) -> Result<FunctionSpec, String> {
    FunctionSpec::from_file(path).map_err(|error| match error {
        SpecError::Format { path } if path.ends_with(".yaml") || path.ends_with(".yml") => {
            format!("{path}: YAML specs are not supported; use TOML or JSON")
        }
        error @ SpecError::Invalid { .. } => format!("{}: {error}", path.display()),
        error => error.to_string(),
    })
}
