//! What a plugin's own copy of std and tracing needs to talk to the host: a panic hook that
//! keeps the panic's message and location for the error value (and sends it to the host's log
//! at debug level) instead of printing it to stderr, and a `tracing` subscriber that forwards
//! events to the host's log.

use std::{
    any::Any,
    cell::RefCell,
    fmt::Write as _,
    sync::{Once, OnceLock},
};

use abi_stable::std_types::{RSlice, RStr};
use tracing_core::{
    Event, Interest, Level, LevelFilter, Metadata, Subscriber,
    field::{Field, Visit},
    span,
};

use tracing_log::NormalizeEvent;

use crate::ffi::{FfiContext, HostVtableRef, LogLevel, Property};

thread_local! {
    /// The message of the last panic on this thread, with its location.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOST: OnceLock<HostVtableRef> = OnceLock::new();
/// The host's `log_record`, when the host has it (interface 1.2 and later).
static LOG_RECORD: OnceLock<Option<LogRecordFn>> = OnceLock::new();
static INSTALL: Once = Once::new();

type LogRecordFn = extern "C" fn(LogLevel, RStr<'_>, RStr<'_>, RSlice<'_, Property<'_>>);

/// Installs the panic hook and the log bridge, once per loaded plugin.
pub(crate) fn install(ctx: &FfiContext) {
    INSTALL.call_once(|| {
        let _ = HOST.set(ctx.vtable);
        let _ = LOG_RECORD.set(ctx.callbacks().log_record());
        std::panic::set_hook(Box::new(|info| {
            let message = match info.location() {
                Some(at) => format!("{} at {}:{}", payload_text(info.payload()), at.file(), at.line()),
                None => payload_text(info.payload()).to_owned(),
            };
            if let Some(host) = HOST.get()
                && (host.log_enabled())(LogLevel::Debug)
            {
                (host.log())(LogLevel::Debug, RStr::from_str("panic"), RStr::from_str(&message));
            }
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
        }));
        let _ = tracing::subscriber::set_global_default(HostLog);
        // `log` records of the plugin (its own, or its dependencies') become `tracing` events.
        let _ = tracing_log::LogTracer::init();
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "panic with a non-string payload"
    }
}

/// The message of a caught panic: the hook's text (with location) if it ran, else the payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| payload_text(payload).to_owned())
}

fn log_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Forwards the plugin's `tracing` events to the host; spans are the host's, not the plugin's.
struct HostLog;

/// An event's message and its other fields, each formatted as text.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Fields {
    /// `message key=value ...`, for a host without `log_record`.
    fn as_text(&self) -> String {
        let mut text = self.message.clone();
        for (name, value) in &self.others {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{name}={value}");
        }
        text
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name().starts_with("log.") {
            // Where a `log` record came from: its target is the event's, the rest is noise.
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others.push((field.name(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name().starts_with("log.") {
            return;
        }
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

impl Subscriber for HostLog {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        HOST.get().is_some_and(|host| (host.log_enabled())(log_level(metadata.level())))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        None
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(host) = HOST.get() else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        // A `log` record's level and target, rather than those of the bridge's callsite.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let (level, target) = (log_level(metadata.level()), RStr::from_str(metadata.target()));
        match LOG_RECORD.get().copied().flatten() {
            Some(log_record) => {
                let others: Vec<Property<'_>> = fields
                    .others
                    .iter()
                    .map(|(name, value)| Property { key: RStr::from_str(name), value: RStr::from_str(value) })
                    .collect();
                log_record(level, target, RStr::from_str(&fields.message), RSlice::from_slice(&others));
            }
            None => (host.log())(level, target, RStr::from_str(&fields.as_text())),
        }
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
