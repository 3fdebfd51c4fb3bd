//! A thread at the lowest scheduling priority for the worker's heavy, rare work: reading,
//! hashing, copying and opening plugin files. On a machine whose CPUs are all busy running
//! function instances, that work then waits for them instead of pausing them.

use std::{
    sync::mpsc::{self, Sender},
    thread::JoinHandle,
};

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures one at a time on a thread with the lowest priority (nice 19).
#[derive(Debug)]
pub(super) struct LowPriority {
    jobs: Sender<Job>,
    thread: Option<JoinHandle<()>>,
}

impl LowPriority {
    /// Starts the thread. If the priority cannot be lowered, the work still runs, at normal
    /// priority, and a warning says so.
    pub(super) fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("pfn-loader".into()).spawn(move || {
            if let Err(error) = lower_this_threads_priority() {
                tracing::warn!(%error, "plugin loads run at normal priority");
            }
            for job in queue {
                job();
            }
        })?;
        Ok(Self { jobs, thread: Some(thread) })
    }

    /// Runs `job` on the low-priority thread and waits for its result. Runs it here if that
    /// thread is gone (it only ends early when a job panicked).
    pub(super) fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> T {
        let (answer, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || drop(answer.send(job())));
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            job();
        }
        result.recv().unwrap_or_else(|_| std::panic::resume_unwind(Box::new("a plugin load panicked")))
    }
}

impl Drop for LowPriority {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.jobs = mpsc::channel().0;
        if let Some(thread) = self.thread.take() {
            drop(thread.join());
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(tid) = libc::id_t::try_from(tid) else { return Err(std::io::Error::other("negative thread id")) };
    // SAFETY: on Linux, PRIO_PROCESS with a thread id sets that one thread's nice value; the
    // call reads no memory of ours.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() -> std::io::Result<()> {
    Err(std::io::Error::other("per-thread priority is only set on Linux"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_on_a_lowered_thread_and_returns_their_results() {
        let low = LowPriority::start().expect("thread starts");
        let name = low.run(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name.as_deref(), Some("pfn-loader"));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: getpriority with PRIO_PROCESS and 0 reads the calling thread's nice value.
            let nice = low.run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
            assert_eq!(nice, 19);
        }
        assert_eq!(low.run(|| 2 + 2), 4);
    }
}
