//! Counters of a function and its instances, named as Pulsar Functions name its metrics.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use serde::Serialize;

use crate::sync::lock;

/// One instance's counters; the instance adds a batch's worth at a time.
#[derive(Debug, Default)]
pub struct InstanceStats {
    pub received: AtomicU64,
    pub processed_successfully: AtomicU64,
    pub user_exceptions: AtomicU64,
    pub system_exceptions: AtomicU64,
    pub outputs: AtomicU64,
    pub filtered: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub acked: AtomicU64,
    pub timeouts: AtomicU64,
    pub healthy: AtomicBool,
    /// The plugin version this instance runs.
    pub version: Mutex<String>,
}

/// A batch's worth of counts, added to [`InstanceStats`] in one go.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchCounts {
    pub received: u64,
    pub processed_successfully: u64,
    pub user_exceptions: u64,
    pub system_exceptions: u64,
    pub outputs: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    pub acked: u64,
}

impl InstanceStats {
    pub fn new(version: &str) -> Self {
        Self { healthy: AtomicBool::new(true), version: Mutex::new(version.to_owned()), ..Self::default() }
    }

    pub fn add(&self, counts: &BatchCounts) {
        let pairs = [
            (&self.received, counts.received),
            (&self.processed_successfully, counts.processed_successfully),
            (&self.user_exceptions, counts.user_exceptions),
            (&self.system_exceptions, counts.system_exceptions),
            (&self.outputs, counts.outputs),
            (&self.filtered, counts.filtered),
            (&self.dead_lettered, counts.dead_lettered),
            (&self.acked, counts.acked),
        ];
        for (counter, value) in pairs {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    pub fn snapshot(&self, instance_id: u32) -> InstanceStatus {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        InstanceStatus {
            instance_id,
            version: lock(&self.version).clone(),
            healthy: self.healthy.load(Ordering::Relaxed),
            received_total: read(&self.received),
            processed_successfully_total: read(&self.processed_successfully),
            user_exceptions_total: read(&self.user_exceptions),
            system_exceptions_total: read(&self.system_exceptions),
            outputs_total: read(&self.outputs),
            filtered_total: read(&self.filtered),
            dead_lettered_total: read(&self.dead_lettered),
            acked_total: read(&self.acked),
            timeouts_total: read(&self.timeouts),
        }
    }
}

/// What `pfn functions status` shows of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    pub instance_id: u32,
    pub version: String,
    pub healthy: bool,
    pub received_total: u64,
    pub processed_successfully_total: u64,
    pub user_exceptions_total: u64,
    pub system_exceptions_total: u64,
    pub outputs_total: u64,
    pub filtered_total: u64,
    pub dead_lettered_total: u64,
    pub acked_total: u64,
    pub timeouts_total: u64,
}

/// A reload that was refused, kept for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refusal {
    pub file: String,
    pub version: Option<String>,
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
