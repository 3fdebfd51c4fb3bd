//! What the state store measures: operations by kind with their latency, per function, and the
//! group commits with theirs, per worker.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics_util::storage::Summary;

use super::exposition::{Exposition, Kind, Labels};
use crate::sync::lock;

/// A state operation, as the context offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOp {
    Get,
    Put,
    Delete,
    Incr,
    GetCounter,
    List,
    DeletePrefix,
}

impl StateOp {
    const ALL: [Self; 7] =
        [Self::Get, Self::Put, Self::Delete, Self::Incr, Self::GetCounter, Self::List, Self::DeletePrefix];

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Incr => "incr_counter",
            Self::GetCounter => "get_counter",
            Self::List => "list",
            Self::DeletePrefix => "delete_prefix",
        }
    }
}

/// One function's state operations.
#[derive(Debug)]
pub struct StateOpMetrics {
    counts: [AtomicU64; StateOp::ALL.len()],
    latency_ms: Mutex<Vec<Summary>>,
}

impl Default for StateOpMetrics {
    fn default() -> Self {
        Self {
            counts: Default::default(),
            latency_ms: Mutex::new(StateOp::ALL.iter().map(|_| Summary::with_defaults()).collect()),
        }
    }
}

impl StateOpMetrics {
    pub fn record(&self, op: StateOp, took: Duration) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(summary) = lock(&self.latency_ms).get_mut(op as usize) {
            summary.add(took.as_secs_f64() * 1000.0);
        }
    }

    /// Adds the function's samples, labelled `labels` and `op`, to a scrape.
    pub fn expose(&self, exposition: &mut Exposition, labels: Labels<'_>) {
        let latencies = lock(&self.latency_ms);
        for (op, latency) in StateOp::ALL.into_iter().zip(latencies.iter()) {
            let mut labels = labels.to_vec();
            labels.push(("op", op.as_str().to_owned()));
            let count = self.counts[op as usize].load(Ordering::Relaxed);
            exposition.sample("pfn_state_operations_total", "State operations", Kind::Counter, &labels, count);
            exposition.summary("pfn_state_operation_latency_ms", "State operation latency in ms", &labels, latency);
        }
    }
}

/// The store's group commits.
#[derive(Debug)]
pub struct FlushMetrics {
    flushes: AtomicU64,
    latency_ms: Mutex<Summary>,
}

impl Default for FlushMetrics {
    fn default() -> Self {
        Self { flushes: AtomicU64::new(0), latency_ms: Mutex::new(Summary::with_defaults()) }
    }
}

impl FlushMetrics {
    pub fn record(&self, took: Duration) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        lock(&self.latency_ms).add(took.as_secs_f64() * 1000.0);
    }

    pub fn expose(&self, exposition: &mut Exposition, labels: Labels<'_>) {
        let flushes = self.flushes.load(Ordering::Relaxed);
        exposition.sample(
            "pfn_state_flushes_total",
            "Group commits of the state store",
            Kind::Counter,
            labels,
            flushes,
        );
        let help = "Group commit latency in ms, fsync included";
        exposition.summary("pfn_state_flush_latency_ms", help, labels, &lock(&self.latency_ms));
    }
}
