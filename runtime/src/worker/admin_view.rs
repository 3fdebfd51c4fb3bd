//! What the admin API and `pfn topics` use of a running worker beyond status: the functions of
//! a namespace, a function's spec, its instances' metrics, and the transport.

use std::sync::Arc;

use super::{Topics, TriggerError, WorkerHandle};
use crate::{config::FunctionSpec, io::transport::Transport, sync::lock, telemetry::InstanceMetrics};

impl WorkerHandle {
    /// The transport the functions read and write: `pfn topics` works on it.
    pub fn transport(&self) -> Arc<dyn Transport> {
        match &self.topics {
            Topics::Embedded => Arc::new(Arc::clone(&self.broker)),
            Topics::Pulsar(pulsar) => Arc::new(Arc::clone(pulsar)),
        }
    }

    /// The names of the functions of `tenant/namespace`, in order.
    pub fn names(&self, tenant: &str, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .listed()
            .map(|function| function.spec())
            .filter(|spec| spec.tenant == tenant && spec.namespace == namespace)
            .map(|spec| spec.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The spec function `fqfn` runs.
    pub fn spec(&self, fqfn: &str) -> Result<FunctionSpec, TriggerError> {
        Ok(FunctionSpec::clone(&self.function(fqfn)?.spec()))
    }

    /// The metrics of each of function `fqfn`'s instances, by instance id (none while it does
    /// not run).
    pub fn instance_metrics(&self, fqfn: &str) -> Result<Vec<(u32, Arc<InstanceMetrics>)>, TriggerError> {
        let function = self.function(fqfn)?;
        let instances = lock(&function.instances);
        Ok(instances.iter().map(|control| (control.id, Arc::clone(&control.stats.metrics))).collect())
    }
}
