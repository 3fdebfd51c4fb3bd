//! The answers of status and stats, with the field names of Pulsar Functions' `FunctionStatus`
//! and `FunctionStats`, so that scripts written for `pulsar-admin functions status|stats` read
//! them; pfn's own fields (plugin version, state, reloads, refusals) come beside them.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use serde::{Deserialize, Serialize};

use crate::{
    telemetry::{Count, Counts, InstanceMetrics, instance::Exception},
    worker::stats::{FunctionStatus as WorkerStatus, InstanceStatus, Refusal, Reload},
};

/// `GET …/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    pub num_instances: usize,
    pub num_running: usize,
    pub instances: Vec<InstanceStatusEntry>,
    /// pfn: the function's state (`running`, `waiting for plugin`, ...).
    pub state: String,
    /// pfn: the plugin version the function runs.
    pub plugin_version: Option<String>,
    pub reloads: Vec<Reload>,
    pub refusals: Vec<Refusal>,
}

/// One instance in [`FunctionStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatusEntry {
    pub instance_id: u32,
    pub status: InstanceStatusData,
}

/// Pulsar's `FunctionInstanceStatusData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatusData {
    pub running: bool,
    pub error: String,
    pub num_restarts: u64,
    pub num_received: u64,
    pub num_successfully_processed: u64,
    pub num_user_exceptions: u64,
    pub latest_user_exceptions: Vec<ExceptionInformation>,
    pub num_system_exceptions: u64,
    pub latest_system_exceptions: Vec<ExceptionInformation>,
    /// Milliseconds, over the calls timed (one in 16, while the metrics endpoint is on).
    pub average_latency: f64,
    pub last_invocation_time: i64,
    /// pfn: the plugin version this instance runs.
    pub plugin_version: String,
}

/// Pulsar's `ExceptionInformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionInformation {
    pub exception_string: String,
    pub timestamp_ms: i64,
}

impl From<Exception> for ExceptionInformation {
    fn from(exception: Exception) -> Self {
        Self { exception_string: exception.message, timestamp_ms: exception.at_ms }
    }
}

impl FunctionStatus {
    /// The status of a function from the worker's, with its instances' metrics.
    pub fn of(status: WorkerStatus, metrics: &[(u32, Arc<InstanceMetrics>)]) -> Self {
        let running = status.state == crate::worker::state::FunctionState::Running;
        let instances: Vec<InstanceStatusEntry> = status
            .instances
            .iter()
            .map(|instance| {
                let metrics = metrics.iter().find(|(id, _)| *id == instance.instance_id).map(|(_, metrics)| metrics);
                InstanceStatusEntry {
                    instance_id: instance.instance_id,
                    status: instance_data(instance, metrics, running),
                }
            })
            .collect();
        Self {
            num_instances: instances.len(),
            num_running: instances.iter().filter(|instance| instance.status.running).count(),
            instances,
            state: status.state.to_string(),
            plugin_version: status.version,
            reloads: status.reloads,
            refusals: status.refusals,
        }
    }
}

fn instance_data(
    instance: &InstanceStatus,
    metrics: Option<&Arc<InstanceMetrics>>,
    running: bool,
) -> InstanceStatusData {
    let latest = |user: bool| -> Vec<ExceptionInformation> {
        metrics.map(|metrics| metrics.latest_exceptions(user).into_iter().map(Into::into).collect()).unwrap_or_default()
    };
    InstanceStatusData {
        running: running && instance.healthy,
        error: if instance.healthy { String::new() } else { "a call is past its timeout".to_owned() },
        num_restarts: instance.count(Count::Restarts),
        num_received: instance.count(Count::Received),
        num_successfully_processed: instance.count(Count::ProcessedSuccessfully),
        num_user_exceptions: instance.count(Count::UserExceptions),
        latest_user_exceptions: latest(true),
        num_system_exceptions: instance.count(Count::SystemExceptions),
        latest_system_exceptions: latest(false),
        average_latency: metrics.and_then(|metrics| average_latency(metrics, false)).unwrap_or(0.0),
        last_invocation_time: metrics.map_or(0, |metrics| metrics.last_invocation_ms()),
        plugin_version: instance.version.clone(),
    }
}

/// The average call latency in milliseconds, since the start or over the current minute.
fn average_latency(metrics: &InstanceMetrics, minute: bool) -> Option<f64> {
    metrics.with_latency(|latency| {
        let summary = if minute { &latency.minute } else { &latency.total };
        (summary.count() > 0).then(|| summary.sum().unwrap_or(0.0) / summary.count() as f64)
    })
}

/// `GET …/stats`: Pulsar's `FunctionStats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStats {
    #[serde(flatten)]
    pub totals: StatsData,
    #[serde(rename = "1min")]
    pub one_minute: StatsData,
    pub last_invocation: Option<i64>,
    pub instances: Vec<InstanceStats>,
}

/// The counts of a function or an instance, since the start or over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsData {
    pub received_total: u64,
    pub processed_successfully_total: u64,
    pub system_exceptions_total: u64,
    pub user_exceptions_total: u64,
    pub avg_process_latency: Option<f64>,
}

/// One instance in [`FunctionStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStats {
    pub instance_id: u32,
    pub metrics: InstanceStatsData,
}

/// Pulsar's `FunctionInstanceStatsData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatsData {
    #[serde(flatten)]
    pub totals: StatsData,
    #[serde(rename = "1min")]
    pub one_minute: StatsData,
    pub last_invocation: Option<i64>,
    /// Each user metric's average value since the start.
    pub user_metrics: BTreeMap<String, f64>,
}

impl StatsData {
    fn of(counts: &Counts, latency: Option<f64>) -> Self {
        Self {
            received_total: counts.get(Count::Received),
            processed_successfully_total: counts.get(Count::ProcessedSuccessfully),
            system_exceptions_total: counts.get(Count::SystemExceptions),
            user_exceptions_total: counts.get(Count::UserExceptions),
            avg_process_latency: latency,
        }
    }

    /// The sum of several instances' counts, with the mean of their latencies.
    fn sum<'a>(all: impl Iterator<Item = &'a Self>) -> Self {
        let mut total = Self::of(&Counts::default(), None);
        let mut latencies = Vec::new();
        for data in all {
            total.received_total += data.received_total;
            total.processed_successfully_total += data.processed_successfully_total;
            total.system_exceptions_total += data.system_exceptions_total;
            total.user_exceptions_total += data.user_exceptions_total;
            latencies.extend(data.avg_process_latency);
        }
        total.avg_process_latency =
            (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64);
        total
    }
}

impl FunctionStats {
    /// The stats of a function's instances, from their metrics.
    pub fn of(metrics: &[(u32, Arc<InstanceMetrics>)]) -> Self {
        let now = Instant::now();
        let instances: Vec<InstanceStats> = metrics
            .iter()
            .map(|(id, metrics)| {
                metrics.roll_minute(now);
                let last = metrics.last_invocation_ms();
                let user_metrics = metrics.with_user_metrics(|user| {
                    user.iter()
                        .filter(|(_, summary)| summary.total.count() > 0)
                        .map(|(name, summary)| {
                            (name.clone(), summary.total.sum().unwrap_or(0.0) / summary.total.count() as f64)
                        })
                        .collect()
                });
                InstanceStats {
                    instance_id: *id,
                    metrics: InstanceStatsData {
                        totals: StatsData::of(&metrics.counters.snapshot(), average_latency(metrics, false)),
                        one_minute: StatsData::of(&metrics.minute_counts(), average_latency(metrics, true)),
                        last_invocation: (last > 0).then_some(last),
                        user_metrics,
                    },
                }
            })
            .collect();
        Self {
            totals: StatsData::sum(instances.iter().map(|instance| &instance.metrics.totals)),
            one_minute: StatsData::sum(instances.iter().map(|instance| &instance.metrics.one_minute)),
            last_invocation: instances.iter().filter_map(|instance| instance.metrics.last_invocation).max(),
            instances,
        }
    }
}
