//! Timeouts: a thread that looks at every watched instance's call in progress and, when one
//! runs past the function's `timeout_ms`, reports it, fails the message (it is redelivered per
//! the retry policy, to another instance where there is one), hands the rest of the instance's
//! batch back to the subscription, and marks the instance unhealthy until the call returns.
//! A plugin call cannot be interrupted; it only stops blocking anything else.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::{control::InstanceControl, instance_loop::Backoff};
use crate::{
    sync::lock,
    telemetry::Counts,
    vocabulary::{Failure, FailureKind},
};

/// One instance under watch.
#[derive(Debug)]
pub(super) struct Watched {
    pub fqfn: String,
    pub timeout: Duration,
    pub backoff: Backoff,
    pub control: Arc<InstanceControl>,
    /// The call last seen and when it was first seen.
    seen: Option<(u64, Instant)>,
}

impl Watched {
    pub fn new(fqfn: String, timeout: Duration, backoff: Backoff, control: Arc<InstanceControl>) -> Self {
        Self { fqfn, timeout, backoff, control, seen: None }
    }

    fn check(&mut self, now: Instant) {
        let Some(call) = self.control.watch.current() else {
            self.seen = None;
            return;
        };
        match self.seen {
            Some((sequence, since)) if sequence == call.sequence => {
                if now.duration_since(since) >= self.timeout {
                    self.time_out(call);
                    // Reported once per call: remember it as seen far in the future.
                    self.seen = Some((sequence, now + Duration::from_secs(365 * 24 * 3600)));
                }
            }
            _ => self.seen = Some((call.sequence, now)),
        }
    }

    fn time_out(&self, call: super::control::CallInProgress) {
        let control = &self.control;
        let mut revoked = lock(&control.commit);
        if !control.watch.still_in(call.sequence) {
            return;
        }
        *revoked = true;
        control.revoked.store(true, Ordering::Release);
        let mut counts = Counts::default();
        counts.add_failure(FailureKind::Timeout);
        control.stats.add(&counts);
        control.stats.healthy.store(false, Ordering::Release);
        let timeout_ms = self.timeout.as_millis();
        control.source.nack(
            call.tag,
            self.backoff.after(call.redelivery_count),
            &Failure::new(FailureKind::Timeout, format!("call ran past {timeout_ms} ms")),
        );
        control.source.detach();
        tracing::warn!(
            fqfn = %self.fqfn,
            instance = control.id,
            message_id = %call.message_id,
            timeout_ms,
            "call timed out; message failed and redelivered per policy; instance unhealthy until the call returns"
        );
    }
}

/// How often the watchdog looks, for the shortest timeout it enforces.
fn tick_for(shortest: Duration) -> Duration {
    (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

/// The timeout watchdog: its thread starts with the first instance watched and looks as often
/// as the shortest timeout among those watched needs.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    watched: Arc<Mutex<Vec<Watched>>>,
    /// The tick, in microseconds.
    tick: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Watches `instances` too.
    pub fn watch(&mut self, instances: Vec<Watched>) {
        let Some(shortest) = instances.iter().map(|instance| instance.timeout).min() else { return };
        let tick = u64::try_from(tick_for(shortest).as_micros()).unwrap_or(u64::MAX);
        self.tick.fetch_min(tick, Ordering::AcqRel);
        lock(&self.watched).extend(instances);
        if self.thread.is_none() {
            self.tick.store(tick, Ordering::Release);
            self.thread = self.spawn();
        }
    }

    /// Stops watching the instances `unwatch` picks.
    pub fn forget(&self, unwatch: impl Fn(&Watched) -> bool) {
        lock(&self.watched).retain(|instance| !unwatch(instance));
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the timeout watchdog panicked");
        }
    }

    fn spawn(&self) -> Option<thread::JoinHandle<()>> {
        let (watched, tick, stop) = (Arc::clone(&self.watched), Arc::clone(&self.tick), Arc::clone(&self.stop));
        let spawned = thread::Builder::new().name("pfn-watchdog".into()).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                thread::sleep(Duration::from_micros(tick.load(Ordering::Acquire)));
                let now = Instant::now();
                for instance in lock(&watched).iter_mut() {
                    instance.check(now);
                }
            }
        });
        match spawned {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::error!(%error, "cannot start the timeout watchdog; timeouts are not enforced");
                None
            }
        }
    }
}
