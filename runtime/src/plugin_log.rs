//! What becomes of a plugin's log events: each function may have its own level, changed while it
//! runs, and a log topic its events are also published to as JSON.
//!
//! A plugin's log callbacks carry no handle on the instance, so the instance a thread is calling
//! into is kept in a thread-local while the call runs ([`enter`]).
//!
//! - [`filter`]: the worker's log filter, which lets a function's own level decide for its
//!   plugin's events.
//! - [`topic`]: the bounded buffer and thread that publish a function's log events.

pub mod filter;
pub mod topic;

use std::{
    cell::Cell,
    ptr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU8, Ordering},
    },
};

use tracing::level_filters::LevelFilter;

use self::topic::{LogEvent, LogTopic};

/// Where a process that hosts one instance for a worker sends its plugin's log events, instead
/// of to its own `tracing` (see [`crate::process`]).
pub trait Forward: Send + Sync {
    /// Whether events at `level` are wanted.
    fn enabled(&self, level: tracing::Level) -> bool;
    fn event(&self, level: tracing::Level, target: &str, message: &str, fields: &[(&str, &str)]);
}

static FORWARD: OnceLock<Box<dyn Forward>> = OnceLock::new();

/// Sends every plugin log event of this process to `forward` from now on (once).
pub fn forward_to(forward: Box<dyn Forward>) {
    let _ = FORWARD.set(forward);
}

/// Where plugin log events go instead of `tracing`, in a process that hosts an instance.
pub fn forwarding() -> Option<&'static dyn Forward> {
    FORWARD.get().map(|forward| &**forward)
}

/// A level as a number: 1 (error) to 5 (trace); what [`FunctionLog::set_level`] stores.
pub fn level_code(level: Option<LevelFilter>) -> u8 {
    match level.and_then(LevelFilter::into_level) {
        Some(tracing::Level::ERROR) => 1,
        Some(tracing::Level::WARN) => 2,
        Some(tracing::Level::INFO) => 3,
        Some(tracing::Level::DEBUG) => 4,
        Some(tracing::Level::TRACE) => 5,
        None => 0,
    }
}

/// The level a number of [`level_code`] stands for.
pub fn level_of_code(code: u8) -> Option<tracing::Level> {
    match code {
        1 => Some(tracing::Level::ERROR),
        2 => Some(tracing::Level::WARN),
        3 => Some(tracing::Level::INFO),
        4 => Some(tracing::Level::DEBUG),
        5 => Some(tracing::Level::TRACE),
        _ => None,
    }
}

/// The `tracing` target of every event a plugin logs.
pub const PLUGIN_TARGET: &str = "pfn::plugin";

/// One function's log settings, shared by its instances.
#[derive(Debug)]
pub struct FunctionLog {
    pub fqfn: String,
    /// 0: the worker's level; 1 (error) to 5 (trace): the function's own.
    level: AtomicU8,
    topic: OnceLock<LogTopic>,
}

impl FunctionLog {
    /// The log of function `fqfn` at `level` (`error` … `trace`; none: the worker's).
    pub fn new(fqfn: String, level: Option<&str>) -> Self {
        let log = Self { fqfn, level: AtomicU8::new(0), topic: OnceLock::new() };
        log.set_level(level);
        log
    }

    /// Changes the function's level at once, for every instance (none: the worker's).
    pub fn set_level(&self, level: Option<&str>) {
        let code = match level.map(str::to_ascii_lowercase).as_deref() {
            Some("error") => 1,
            Some("warn") => 2,
            Some("info") => 3,
            Some("debug") => 4,
            Some("trace") => 5,
            _ => 0,
        };
        self.level.store(code, Ordering::Relaxed);
    }

    /// The function's own level, if it has one.
    pub fn level(&self) -> Option<LevelFilter> {
        match self.level.load(Ordering::Relaxed) {
            1 => Some(LevelFilter::ERROR),
            2 => Some(LevelFilter::WARN),
            3 => Some(LevelFilter::INFO),
            4 => Some(LevelFilter::DEBUG),
            5 => Some(LevelFilter::TRACE),
            _ => None,
        }
    }

    /// Publishes the function's events to `topic` from now on (once; later calls are ignored).
    pub fn attach_topic(&self, topic: LogTopic) {
        let _ = self.topic.set(topic);
    }

    /// Events the log topic's buffer had no room for.
    pub fn dropped(&self) -> u64 {
        self.topic.get().map_or(0, LogTopic::dropped)
    }
}

/// The log of one instance: its function's, and its id.
#[derive(Debug, Clone)]
pub struct InstanceLog {
    pub function: Arc<FunctionLog>,
    pub instance_id: u32,
}

thread_local! {
    /// The instance whose plugin code this thread runs, if any.
    static CURRENT: Cell<*const InstanceLog> = const { Cell::new(ptr::null()) };
}

/// Marks the thread as running `log`'s instance until dropped (then the previous one again).
#[derive(Debug)]
pub struct Entered {
    previous: *const InstanceLog,
}

/// Enters `log`'s instance for the duration of a call into its plugin. `log` must outlive the
/// returned guard (the instance owns both).
pub fn enter(log: Option<&InstanceLog>) -> Entered {
    let pointer = log.map_or(ptr::null(), ptr::from_ref);
    Entered { previous: CURRENT.replace(pointer) }
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.previous);
    }
}

/// Runs `body` with the instance this thread runs plugin code for, if any.
fn with_current<T>(body: impl FnOnce(Option<&InstanceLog>) -> T) -> T {
    let pointer = CURRENT.get();
    // SAFETY: a non-null pointer was set by `enter` from a reference that outlives its guard,
    // and the guard resets it before that reference's owner can go.
    body(unsafe { pointer.as_ref() })
}

/// The level of the function whose plugin this thread runs, when it has its own.
pub fn current_level() -> Option<LevelFilter> {
    with_current(|log| log.and_then(|log| log.function.level()))
}

/// Publishes a plugin event to its function's log topic, if it has one.
pub fn to_topic(level: tracing::Level, message: &str, fields: &[(&str, &str)]) {
    with_current(|log| {
        let Some(log) = log else { return };
        let Some(topic) = log.function.topic.get() else { return };
        topic.offer(LogEvent::new(level, message, fields, &log.function.fqfn, log.instance_id));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_level_is_the_entered_functions_and_changes_at_once() {
        let function = Arc::new(FunctionLog::new("t/n/f".into(), Some("debug")));
        let log = InstanceLog { function: Arc::clone(&function), instance_id: 0 };
        assert_eq!(current_level(), None, "no instance entered");
        {
            let _entered = enter(Some(&log));
            assert_eq!(current_level(), Some(LevelFilter::DEBUG));
            function.set_level(Some("error"));
            assert_eq!(current_level(), Some(LevelFilter::ERROR));
            function.set_level(None);
            assert_eq!(current_level(), None, "the worker's level");
        }
        assert_eq!(current_level(), None, "left");
    }
}
