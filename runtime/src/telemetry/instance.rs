//! What one function instance measures: its counts, when it last ran, how long its calls take,
//! the user metrics its function records, and how many inputs wait for their commit.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use metrics_util::storage::Summary;

use super::{
    count::{Counters, Counts},
    exposition::{Exposition, Kind},
};
use crate::sync::lock;

/// How long a one-minute window lasts.
pub const MINUTE: Duration = Duration::from_secs(60);

/// The labels Pulsar Functions put on every instance's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLabels {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
    pub instance_id: u32,
    pub cluster: String,
}

/// The labels of a function's metrics, as Pulsar Functions name them.
pub fn function_labels(tenant: &str, namespace: &str, name: &str, cluster: &str) -> Vec<(&'static str, String)> {
    vec![
        ("tenant", tenant.to_owned()),
        ("namespace", namespace.to_owned()),
        ("name", name.to_owned()),
        ("cluster", cluster.to_owned()),
        ("fqfn", crate::vocabulary::fqfn(tenant, namespace, name)),
    ]
}

impl InstanceLabels {
    /// The labels as name/value pairs: the function's, and `instance_id`.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = function_labels(&self.tenant, &self.namespace, &self.name, &self.cluster);
        pairs.push(("instance_id", self.instance_id.to_string()));
        pairs
    }
}

/// A summary since the start, and one of the current minute.
#[derive(Debug)]
pub struct Windowed {
    pub total: Summary,
    pub minute: Summary,
}

impl Default for Windowed {
    fn default() -> Self {
        Self { total: Summary::with_defaults(), minute: Summary::with_defaults() }
    }
}

impl Windowed {
    fn add(&mut self, value: f64) {
        self.total.add(value);
        self.minute.add(value);
    }
}

/// The one-minute window: when it began and the counts then.
#[derive(Debug)]
struct Minute {
    began: Instant,
    counts_then: Counts,
}

/// One instance's measurements.
#[derive(Debug)]
pub struct InstanceMetrics {
    pub labels: InstanceLabels,
    pub counters: Counters,
    /// When the instance last finished a batch, in milliseconds since the Unix epoch (0: never).
    last_invocation_ms: AtomicI64,
    /// Inputs processed and waiting for their outputs' receipts and their state writes.
    pub waiting_inputs: AtomicU64,
    latency_ms: Mutex<Windowed>,
    user: Mutex<BTreeMap<String, Windowed>>,
    minute: Mutex<Minute>,
    /// The latest failures of calls (user) and around them (system), newest last.
    latest_user_exceptions: Mutex<VecDeque<Exception>>,
    latest_system_exceptions: Mutex<VecDeque<Exception>>,
}

/// How many of the latest exceptions an instance keeps, as Pulsar Functions does.
pub const LATEST_EXCEPTIONS: usize = 10;

/// A failure kept for status: what it said, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl InstanceMetrics {
    pub fn new(labels: InstanceLabels) -> Self {
        Self {
            labels,
            counters: Counters::default(),
            last_invocation_ms: AtomicI64::new(0),
            waiting_inputs: AtomicU64::new(0),
            latency_ms: Mutex::new(Windowed::default()),
            user: Mutex::new(BTreeMap::new()),
            minute: Mutex::new(Minute { began: Instant::now(), counts_then: Counts::default() }),
            latest_user_exceptions: Mutex::default(),
            latest_system_exceptions: Mutex::default(),
        }
    }

    /// Keeps a failure among the latest ones: of the function's call (`user`) or around it.
    pub fn note_exception(&self, user: bool, message: &str) {
        let at_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis()))
            .unwrap_or(i64::MAX);
        let latest = if user { &self.latest_user_exceptions } else { &self.latest_system_exceptions };
        let mut latest = lock(latest);
        if latest.len() == LATEST_EXCEPTIONS {
            latest.pop_front();
        }
        latest.push_back(Exception { message: message.to_owned(), at_ms });
    }

    /// The latest failures, oldest first: of the function's calls (`user`) or around them.
    pub fn latest_exceptions(&self, user: bool) -> Vec<Exception> {
        let latest = if user { &self.latest_user_exceptions } else { &self.latest_system_exceptions };
        lock(latest).iter().cloned().collect()
    }

    /// Notes that the instance ran just now.
    pub fn invoked_now(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
        self.last_invocation_ms.store(i64::try_from(now).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn last_invocation_ms(&self) -> i64 {
        self.last_invocation_ms.load(Ordering::Relaxed)
    }

    /// Records how long one call took.
    pub fn observe_latency(&self, took: Duration) {
        lock(&self.latency_ms).add(took.as_secs_f64() * 1000.0);
    }

    /// Records one value of the function's metric `name` (`record_metric`).
    pub fn record_user_metric(&self, name: &str, value: f64) {
        let mut user = lock(&self.user);
        match user.get_mut(name) {
            Some(summary) => summary.add(value),
            None => user.entry(name.to_owned()).or_default().add(value),
        }
    }

    /// Starts a new one-minute window when the current one is a minute old: the minute's
    /// summaries are emptied and its counts start again from the totals now.
    pub fn roll_minute(&self, now: Instant) {
        let mut minute = lock(&self.minute);
        if now.duration_since(minute.began) < MINUTE {
            return;
        }
        *minute = Minute { began: now, counts_then: self.counters.snapshot() };
        lock(&self.latency_ms).minute = Summary::with_defaults();
        for summary in lock(&self.user).values_mut() {
            summary.minute = Summary::with_defaults();
        }
    }

    /// The counts since the current one-minute window began.
    pub fn minute_counts(&self) -> Counts {
        let then = lock(&self.minute).counts_then;
        let now = self.counters.snapshot();
        let mut since = Counts::default();
        for ((count, total), (_, before)) in now.iter().zip(then.iter()) {
            since.add(count, total.saturating_sub(before));
        }
        since
    }

    /// Reads the latency summaries.
    pub fn with_latency<T>(&self, read: impl FnOnce(&Windowed) -> T) -> T {
        read(&lock(&self.latency_ms))
    }

    /// Reads the user metrics' summaries, by name.
    pub fn with_user_metrics<T>(&self, read: impl FnOnce(&BTreeMap<String, Windowed>) -> T) -> T {
        read(&lock(&self.user))
    }
}

impl InstanceMetrics {
    /// Adds this instance's samples to a scrape, starting a new one-minute window first when
    /// the current one is a minute old.
    pub fn expose(&self, exposition: &mut Exposition, now: Instant) {
        self.roll_minute(now);
        let labels = self.labels.pairs();
        let (counts, minute) = (self.counters.snapshot(), self.minute_counts());
        for (count, value) in counts.iter() {
            let exported = count.exported();
            exposition.sample(exported.name, exported.help, Kind::Counter, &labels, value);
            if exported.one_minute {
                let name = format!("{}_1min", exported.name);
                exposition.sample(&name, exported.help, Kind::Counter, &labels, minute.get(count));
            }
        }
        let last = self.last_invocation_ms();
        exposition.sample(
            LAST_INVOCATION,
            "When the instance last ran (ms since the epoch)",
            Kind::Gauge,
            &labels,
            last,
        );
        let waiting = self.waiting_inputs.load(Ordering::Relaxed);
        exposition.sample(WAITING, "Inputs waiting for their receipts and state writes", Kind::Gauge, &labels, waiting);
        self.with_latency(|latency| {
            exposition.summary(LATENCY, LATENCY_HELP, &labels, &latency.total);
            exposition.summary(LATENCY_1MIN, LATENCY_HELP, &labels, &latency.minute);
        });
        self.with_user_metrics(|user| {
            for (name, summary) in user {
                let mut labels = labels.clone();
                labels.push(("metric", name.clone()));
                exposition.summary(USER_METRIC, "Values the function recorded", &labels, &summary.total);
            }
        });
    }
}

const LAST_INVOCATION: &str = "pulsar_function_last_invocation";
const WAITING: &str = "pfn_inputs_waiting_for_receipts";
const LATENCY: &str = "pulsar_function_process_latency_ms";
const LATENCY_1MIN: &str = "pulsar_function_process_latency_ms_1min";
const LATENCY_HELP: &str = "Call latency in ms (one call in 16 is timed)";
const USER_METRIC: &str = "pulsar_function_user_metric_";

impl crate::context::MetricRecorder for InstanceMetrics {
    fn record(&self, name: &str, value: f64) {
        self.record_user_metric(name, value);
    }

    fn record_restart(&self, cause: &str) {
        self.counters.add_one(super::Count::Restarts);
        self.note_exception(false, cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::count::Count;

    fn labels() -> InstanceLabels {
        InstanceLabels {
            tenant: "t".into(),
            namespace: "n".into(),
            name: "f".into(),
            instance_id: 2,
            cluster: "c".into(),
        }
    }

    #[test]
    fn the_minute_window_counts_from_its_start() {
        let metrics = InstanceMetrics::new(labels());
        metrics.counters.add_one(Count::Received);
        metrics.observe_latency(Duration::from_millis(3));
        metrics.record_user_metric("size", 10.0);
        assert_eq!(metrics.minute_counts().get(Count::Received), 1);
        metrics.roll_minute(Instant::now() + MINUTE);
        metrics.counters.add_one(Count::Received);
        assert_eq!(metrics.minute_counts().get(Count::Received), 1);
        assert_eq!(metrics.counters.snapshot().get(Count::Received), 2);
        assert_eq!(metrics.with_latency(|latency| (latency.total.count(), latency.minute.count())), (1, 0));
        assert_eq!(metrics.with_user_metrics(|user| user["size"].total.count()), 1);
        assert_eq!(labels().pairs()[4], ("fqfn", "t/n/f".to_owned()));
        assert_eq!(labels().pairs()[5], ("instance_id", "2".to_owned()));
    }
}
