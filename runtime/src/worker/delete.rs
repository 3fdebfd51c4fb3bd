//! Deleting a function from a running worker: its instances stop, its subscription is deleted
//! when its spec says `cleanup_subscription` (the default, as in Pulsar), and its spec file is
//! removed so that the function does not come back when the worker restarts.

use serde::{Deserialize, Serialize};

use super::Worker;
use crate::{config::FunctionSpec, io::transport::TransportError};

/// What deleting a function did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub fqfn: String,
    /// The function's subscription.
    pub subscription: String,
    /// Whether the subscription was deleted; otherwise it keeps its position and backlog.
    pub subscription_deleted: bool,
    /// What could not be done, each with why; the function is deleted all the same.
    pub warnings: Vec<String>,
}

/// Why a function could not be deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteError {
    #[error("no function {0} in this worker")]
    NoSuchFunction(String),
    #[error("the worker is shutting down")]
    ShuttingDown,
}

/// What becomes of a deleted function's spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SpecFile {
    /// Removed, so that the function does not come back when the worker restarts.
    Remove,
    /// Already gone: its removal is what deletes the function.
    Gone,
}

impl Worker {
    /// Deletes function `fqfn`: stops its instances (up to the grace period), detaches their
    /// consumers, deletes its subscription if asked to, and removes its spec file.
    pub(super) fn delete(&mut self, fqfn: &str, spec_file: SpecFile) -> Result<Deleted, DeleteError> {
        let shared = self.handle.functions.get(fqfn).filter(|shared| !shared.is_deleted());
        let shared = shared.ok_or_else(|| DeleteError::NoSuchFunction(fqfn.to_owned()))?;
        let mut warnings = Vec::new();
        self.stopped.remove(fqfn);
        if let Some(stopped) = self.stop_function(&shared)
            && !stopped.stuck.is_empty()
        {
            warnings.push(format!(
                "instances {:?} were still in a call when the grace period ran out; what their batches come to \
                 is discarded, and their inputs are left to the broker",
                stopped.stuck
            ));
        }
        let spec = shared.spec();
        let subscription_deleted = spec.cleanup_subscription
            && match self.delete_subscription(&spec) {
                Ok(()) => true,
                Err(error) => {
                    warnings.push(format!("subscription kept: {error}"));
                    false
                }
            };
        if spec_file == SpecFile::Remove
            && let Err(error) = std::fs::remove_file(&shared.spec_file)
        {
            warnings.push(format!(
                "cannot remove the spec file {}: {error}; the function comes back when the worker restarts",
                shared.spec_file.display()
            ));
        }
        shared.mark_deleted();
        self.handle.functions.remove(fqfn);
        let subscription = spec.subscription();
        tracing::info!(fqfn = %shared.fqfn, %subscription, subscription_deleted, "function deleted");
        for warning in &warnings {
            tracing::warn!(fqfn = %shared.fqfn, %warning, "deleting the function did not do everything");
        }
        Ok(Deleted { fqfn: shared.fqfn.clone(), subscription, subscription_deleted, warnings })
    }

    /// Deletes the function's subscription through a consumer of its own (its instances'
    /// consumers are detached by now).
    fn delete_subscription(&self, spec: &FunctionSpec) -> Result<(), TransportError> {
        self.wiring.transport.subscribe(&spec.subscription_request())?.unsubscribe()
    }
}
