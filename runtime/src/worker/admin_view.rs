//! What the admin API reads of a running worker beyond status: the functions of a namespace,
//! a function's spec, and its instances' metrics.

use std::sync::Arc;

use super::{TriggerError, WorkerHandle};
use crate::{config::FunctionSpec, sync::lock, telemetry::InstanceMetrics};

impl WorkerHandle {
    /// The names of the functions of `tenant/namespace`, in order.
    pub fn names(&self, tenant: &str, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .listed()
            .filter(|function| function.spec.tenant == tenant && function.spec.namespace == namespace)
            .map(|function| function.spec.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The spec function `fqfn` runs.
    pub fn spec(&self, fqfn: &str) -> Result<FunctionSpec, TriggerError> {
        Ok(self.function(fqfn)?.spec.clone())
    }

    /// The metrics of each of function `fqfn`'s instances, by instance id (none while it does
    /// not run).
    pub fn instance_metrics(&self, fqfn: &str) -> Result<Vec<(u32, Arc<InstanceMetrics>)>, TriggerError> {
        let function = self.function(fqfn)?;
        let instances = lock(&function.instances);
        Ok(instances.iter().map(|control| (control.id, Arc::clone(&control.stats.metrics))).collect())
    }
}
