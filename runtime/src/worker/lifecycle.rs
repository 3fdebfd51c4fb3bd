//! Stopping, starting and restarting a function, or one of its instances, on a running worker,
//! as Pulsar's `functions stop|start|restart` do. A stopped function keeps its subscription
//! (what is published waits for it) and its plugin, and is not started by a plugin scan.

use std::{sync::mpsc, time::Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Worker, WorkerEvent, WorkerHandle, state::FunctionState};

/// What to do to a function or an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
}

/// Why a start, stop or restart was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LifecycleError {
    #[error("no function {0} in this worker")]
    NoSuchFunction(String),
    #[error("function {fqfn} has no instance {instance} (parallelism {parallelism})")]
    NoSuchInstance { fqfn: String, instance: u32, parallelism: u32 },
    #[error("function {fqfn} is not running ({state}): start it first")]
    NotRunning { fqfn: String, state: String },
    #[error("function {fqfn} could not start: {reason}")]
    Start { fqfn: String, reason: String },
    #[error("the worker is shutting down")]
    ShuttingDown,
}

impl WorkerHandle {
    /// Starts, stops or restarts function `fqfn`, or only its instance `instance`; answers
    /// once done (a stop waits for the instances to drain, up to the grace period).
    pub fn lifecycle(&self, fqfn: &str, instance: Option<u32>, action: Lifecycle) -> Result<String, LifecycleError> {
        if self.function(fqfn).is_err() {
            return Err(LifecycleError::NoSuchFunction(fqfn.to_owned()));
        }
        let (reply, answer) = mpsc::channel();
        let event = WorkerEvent::Lifecycle { fqfn: fqfn.to_owned(), instance, action, reply };
        self.events.send(event).map_err(|_| LifecycleError::ShuttingDown)?;
        answer.recv().map_err(|_| LifecycleError::ShuttingDown)?
    }
}

impl Worker {
    pub(super) fn lifecycle(
        &mut self,
        fqfn: &str,
        instance: Option<u32>,
        action: Lifecycle,
    ) -> Result<String, LifecycleError> {
        let function = self.handle.function(fqfn).map_err(|_| LifecycleError::NoSuchFunction(fqfn.to_owned()))?;
        let Some(id) = instance else {
            if matches!(action, Lifecycle::Stop | Lifecycle::Restart) {
                let plugin = self.stop_function(&function).map(|stopped| stopped.plugin);
                // A function stopped before keeps the plugin it had then.
                let kept = self.stopped.remove(fqfn).flatten();
                self.stopped.insert(fqfn.to_owned(), plugin.or(kept));
            }
            if action == Lifecycle::Stop {
                function.set_state(FunctionState::Stopped);
                tracing::info!(%fqfn, "function stopped");
                return Ok(format!("stopped {fqfn}"));
            }
            if self.runners.contains_key(fqfn) {
                return Ok(format!("{fqfn} is running already"));
            }
            match self.stopped.remove(fqfn).flatten() {
                Some(plugin) => {
                    let path = std::path::PathBuf::from(&function.spec().plugin);
                    self.start(&function, plugin, &path);
                }
                None => self.start_function(&function),
            }
            return match function.state() {
                FunctionState::Failed(reason) => Err(LifecycleError::Start { fqfn: fqfn.to_owned(), reason }),
                state => {
                    tracing::info!(%fqfn, ?action, "function started by request");
                    Ok(format!("{} {fqfn} ({state})", if action == Lifecycle::Start { "started" } else { "restarted" }))
                }
            };
        };
        let parallelism = function.spec().parallelism;
        if id >= parallelism {
            return Err(LifecycleError::NoSuchInstance { fqfn: fqfn.to_owned(), instance: id, parallelism });
        }
        let not_running = || LifecycleError::NotRunning { fqfn: fqfn.to_owned(), state: function.state().to_string() };
        let runner = self.runners.get_mut(fqfn).ok_or_else(not_running)?;
        if matches!(action, Lifecycle::Stop | Lifecycle::Restart) {
            let removed = runner.remove_instances(|running| running == id, Instant::now() + self.options.grace_period);
            self.watchdog
                .forget(|watched| removed.controls.iter().any(|c| std::sync::Arc::ptr_eq(c, &watched.control)));
        }
        if matches!(action, Lifecycle::Start | Lifecycle::Restart) {
            let watched = runner
                .add_instances(id..id + 1, &self.wiring)
                .map_err(|error| LifecycleError::Start { fqfn: fqfn.to_owned(), reason: error.to_string() })?;
            self.watchdog.watch(watched);
        }
        let done = match action {
            Lifecycle::Start => "started",
            Lifecycle::Stop => "stopped",
            Lifecycle::Restart => "restarted",
        };
        tracing::info!(%fqfn, instance = id, "instance {done} by request");
        Ok(format!("{done} {fqfn} instance {id}"))
    }
}
