//! Every count an instance keeps, listed once with its names: in status, in the worker's exit
//! summary, and on the Prometheus endpoint. A new count is one more variant here.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::vocabulary::FailureKind;

/// One thing an instance counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Count {
    Received,
    ProcessedSuccessfully,
    UserExceptions,
    SystemExceptions,
    Outputs,
    Filtered,
    DeadLettered,
    Acked,
    Timeouts,
    Panics,
    BadInput,
    Crashes,
    Restarts,
}

/// Where a count goes on the Prometheus endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub name: &'static str,
    pub help: &'static str,
    /// Also as a `_1min` counter of the last full minute, as Pulsar Functions have it.
    pub one_minute: bool,
}

impl Count {
    pub const ALL: [Self; 13] = [
        Self::Received,
        Self::ProcessedSuccessfully,
        Self::UserExceptions,
        Self::SystemExceptions,
        Self::Outputs,
        Self::Filtered,
        Self::DeadLettered,
        Self::Acked,
        Self::Timeouts,
        Self::Panics,
        Self::BadInput,
        Self::Crashes,
        Self::Restarts,
    ];

    /// Its field in status (`pfn functions status`).
    pub fn status_name(self) -> &'static str {
        match self {
            Self::Received => "received_total",
            Self::ProcessedSuccessfully => "processed_successfully_total",
            Self::UserExceptions => "user_exceptions_total",
            Self::SystemExceptions => "system_exceptions_total",
            Self::Outputs => "outputs_total",
            Self::Filtered => "filtered_total",
            Self::DeadLettered => "dead_lettered_total",
            Self::Acked => "acked_total",
            Self::Timeouts => "timeouts_total",
            Self::Panics => "panics_total",
            Self::BadInput => "bad_input_total",
            Self::Crashes => "crashes_total",
            Self::Restarts => "restarts_total",
        }
    }

    /// Its words in the worker's exit summary, or None when the summary leaves it out.
    pub fn summary_words(self) -> Option<&'static str> {
        match self {
            Self::Received => Some("received"),
            Self::Acked => Some("acked"),
            Self::Outputs => Some("outputs"),
            Self::Filtered => Some("filtered"),
            Self::DeadLettered => Some("dead-lettered"),
            Self::UserExceptions => Some("user exceptions"),
            Self::SystemExceptions => Some("system exceptions"),
            Self::Timeouts => Some("timeouts"),
            Self::Panics => Some("panics"),
            Self::Crashes => Some("crashes"),
            Self::ProcessedSuccessfully | Self::BadInput | Self::Restarts => None,
        }
    }

    /// Its family on the Prometheus endpoint: Pulsar Functions' name where Pulsar has one.
    pub fn exported(self) -> Exported {
        let (name, help, one_minute) = match self {
            Self::Received => ("pulsar_function_received_total", "Messages received", true),
            Self::ProcessedSuccessfully => {
                ("pulsar_function_processed_successfully_total", "Messages processed without error", true)
            }
            Self::UserExceptions => ("pulsar_function_user_exceptions_total", "Calls the function failed", true),
            Self::SystemExceptions => {
                ("pulsar_function_system_exceptions_total", "Inputs failed by the runtime around the call", true)
            }
            Self::Outputs => ("pfn_outputs_total", "Results published to the output topic", false),
            Self::Filtered => ("pfn_filtered_total", "Inputs the function returned nothing for", false),
            Self::DeadLettered => ("pfn_dead_letters_total", "Inputs sent to the dead-letter topic", false),
            Self::Acked => ("pfn_acked_total", "Inputs acknowledged", false),
            Self::Timeouts => ("pfn_timeouts_total", "Calls that ran past the function's timeout", false),
            Self::Panics => ("pfn_panics_total", "Calls that panicked (caught inside the plugin)", false),
            Self::BadInput => ("pfn_bad_input_total", "Payloads that did not decode into the input type", false),
            Self::Crashes => ("pfn_crashes_total", "Calls whose process died under them (process runtime)", false),
            Self::Restarts => ("pfn_instance_restarts_total", "Child processes restarted after they died", false),
        };
        Exported { name, help, one_minute }
    }

    /// What a failed call adds to besides user exceptions.
    fn of_failure(kind: FailureKind) -> Option<Self> {
        match kind {
            FailureKind::Panic => Some(Self::Panics),
            FailureKind::BadInput => Some(Self::BadInput),
            FailureKind::Timeout => Some(Self::Timeouts),
            FailureKind::Crash => Some(Self::Crashes),
            FailureKind::Error | FailureKind::System | FailureKind::Malformed => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A batch's worth of counts, added to an instance's [`Counters`] in one go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; Count::ALL.len()]);

impl Counts {
    pub fn add(&mut self, count: Count, amount: u64) {
        self.0[count.index()] += amount;
    }

    /// Counts a call that failed with `kind`: a user or system exception, and its kind's own count.
    pub fn add_failure(&mut self, kind: FailureKind) {
        self.add(if kind.is_system() { Count::SystemExceptions } else { Count::UserExceptions }, 1);
        if let Some(count) = Count::of_failure(kind) {
            self.add(count, 1);
        }
    }

    pub fn get(&self, count: Count) -> u64 {
        self.0[count.index()]
    }

    /// Every count with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Count, u64)> + '_ {
        Count::ALL.into_iter().map(|count| (count, self.get(count)))
    }
}

impl std::ops::AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, other: &Counts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// An instance's counts since it started, added to from its thread and read from any.
#[derive(Debug, Default)]
pub struct Counters([AtomicU64; Count::ALL.len()]);

impl Counters {
    pub fn add(&self, counts: &Counts) {
        for (counter, value) in self.0.iter().zip(counts.0) {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    pub fn add_one(&self, count: Count) {
        self.0[count.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as they are now.
    pub fn snapshot(&self) -> Counts {
        Counts(std::array::from_fn(|index| self.0[index].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_has_its_own_names() {
        let mut names = std::collections::HashSet::new();
        for (index, count) in Count::ALL.into_iter().enumerate() {
            assert_eq!(count.index(), index, "ALL lists the counts in declaration order");
            assert!(names.insert(count.status_name()));
            assert!(names.insert(count.exported().name));
        }
    }

    #[test]
    fn counters_add_batches() {
        let counters = Counters::default();
        let mut batch = Counts::default();
        batch.add(Count::Received, 3);
        batch.add(Count::Acked, 2);
        counters.add(&batch);
        counters.add_one(Count::Received);
        let now = counters.snapshot();
        assert_eq!((now.get(Count::Received), now.get(Count::Acked), now.get(Count::Panics)), (4, 2, 0));
        let mut failures = Counts::default();
        failures.add_failure(FailureKind::Timeout);
        failures.add_failure(FailureKind::Error);
        assert_eq!((failures.get(Count::UserExceptions), failures.get(Count::Timeouts)), (2, 1));
    }
}
