//! The worker's log filter: the `--log-level` / `PFN_LOG` directives for everything, except a
//! plugin's events while the thread runs a function that has a level of its own, which that
//! level decides (finer or coarser than the worker's).
//!
//! It is a filtering layer in front of the output, as `EnvFilter` itself is, so that
//! `tracing::enabled!` (which a plugin's `log_enabled` asks) sees the same decision as events.

use tracing::{Metadata, Subscriber, subscriber::Interest};
use tracing_subscriber::{
    EnvFilter,
    filter::LevelFilter,
    layer::{Context, Layer},
    registry::LookupSpan,
};

use super::{PLUGIN_TARGET, current_level};

/// The directives, and each function's own level for its plugin's events.
#[derive(Debug)]
pub struct PluginLevelFilter {
    directives: EnvFilter,
}

impl PluginLevelFilter {
    pub fn new(directives: EnvFilter) -> Self {
        Self { directives }
    }
}

fn is_plugin(metadata: &Metadata<'_>) -> bool {
    metadata.target() == PLUGIN_TARGET
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PluginLevelFilter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_plugin(metadata) {
            // Decided per event: it depends on the function the thread runs.
            return Interest::sometimes();
        }
        Layer::<S>::register_callsite(&self.directives, metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        if is_plugin(metadata)
            && let Some(level) = current_level()
        {
            return *metadata.level() <= level;
        }
        Layer::enabled(&self.directives, metadata, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // A function may log finer than the directives allow.
        Some(LevelFilter::TRACE)
    }

    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, cx: Context<'_, S>) {
        Layer::on_new_span(&self.directives, attrs, id, cx);
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, cx: Context<'_, S>) {
        Layer::on_record(&self.directives, id, values, cx);
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Layer::on_enter(&self.directives, id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Layer::on_exit(&self.directives, id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        Layer::on_close(&self.directives, id, cx);
    }
}
