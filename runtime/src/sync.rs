//! Small synchronisation helpers shared by the worker's threads.

use std::{
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

/// Locks `mutex`, taking the data even if a thread panicked while holding it: every structure
/// guarded this way is left consistent between statements, so a panic elsewhere must not stop
/// the worker from draining and shutting down.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A wake-up flag for one waiter: notifications while nobody waits are remembered, and cost no
/// system call.
#[derive(Debug, Default)]
pub struct Notify {
    state: Mutex<NotifyState>,
    wakeup: Condvar,
}

#[derive(Debug, Default)]
struct NotifyState {
    pending: bool,
    waiting: bool,
}

impl Notify {
    /// Wakes the waiter, or makes its next wait return at once.
    pub fn notify(&self) {
        let mut state = lock(&self.state);
        state.pending = true;
        if state.waiting {
            self.wakeup.notify_one();
        }
    }

    /// Waits until notified or until `deadline`, and clears the notification.
    pub fn wait_until(&self, deadline: Instant) {
        let mut state = lock(&self.state);
        while !state.pending {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state.waiting = true;
            state = self.wakeup.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
            state.waiting = false;
        }
        state.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[test]
    fn a_notification_before_the_wait_is_kept() {
        let notify = Notify::default();
        notify.notify();
        let started = Instant::now();
        notify.wait_until(started + Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_waiter_is_woken_by_another_thread() {
        let notify = Arc::new(Notify::default());
        let waker = Arc::clone(&notify);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.notify();
        });
        let started = Instant::now();
        notify.wait_until(started + Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(30));
        thread.join().expect("waker thread");
    }
}
