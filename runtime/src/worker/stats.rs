//! What status shows of a function and its instances. The counts come from each instance's
//! [`InstanceMetrics`], which the Prometheus endpoint reads too.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;

use crate::{
    sync::lock,
    telemetry::{Count, Counts, InstanceMetrics},
};

/// One instance's measurements, health and version.
#[derive(Debug)]
pub struct InstanceStats {
    pub metrics: Arc<InstanceMetrics>,
    pub healthy: AtomicBool,
    /// The plugin version this instance runs.
    pub version: Mutex<String>,
}

impl InstanceStats {
    pub fn new(version: &str, metrics: Arc<InstanceMetrics>) -> Self {
        Self { metrics, healthy: AtomicBool::new(true), version: Mutex::new(version.to_owned()) }
    }

    /// Adds a batch's worth of counts.
    pub fn add(&self, counts: &Counts) {
        self.metrics.counters.add(counts);
    }

    pub fn snapshot(&self, instance_id: u32) -> InstanceStatus {
        let counts = self.metrics.counters.snapshot();
        InstanceStatus {
            instance_id,
            version: lock(&self.version).clone(),
            healthy: self.healthy.load(Ordering::Relaxed),
            counts: counts.iter().map(|(count, value)| (count.status_name().to_owned(), value)).collect(),
        }
    }
}

/// What `pfn functions status` shows of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    pub instance_id: u32,
    pub version: String,
    pub healthy: bool,
    /// Every [`Count`], by its status name (`received_total`, ...).
    #[serde(flatten)]
    pub counts: BTreeMap<String, u64>,
}

impl InstanceStatus {
    /// The value of `count`.
    pub fn count(&self, count: Count) -> u64 {
        self.counts.get(count.status_name()).copied().unwrap_or(0)
    }
}

/// A reload that was refused, kept for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refusal {
    pub file: String,
    pub version: Option<String>,
    /// What was wrong, in a word (`checksum`, `abi_version`, `init`, ...).
    pub kind: String,
    pub reason: String,
}

/// A reload that happened, kept for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Reload {
    pub from: String,
    pub to: String,
    pub file: String,
    /// The growth of the worker's resident memory across the load and init, in KiB.
    pub memory_cost_kib: Option<u64>,
    pub rolled_back: Option<String>,
}

/// What `pfn functions status` shows of one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FunctionStatus {
    pub fqfn: String,
    pub plugin: String,
    pub state: super::state::FunctionState,
    pub version: Option<String>,
    pub inputs: Vec<String>,
    pub output: Option<String>,
    pub instances: Vec<InstanceStatus>,
    pub reloads: Vec<Reload>,
    pub refusals: Vec<Refusal>,
}
