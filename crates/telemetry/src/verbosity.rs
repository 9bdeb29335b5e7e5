//! What is recorded at all: INFO spans always, events as `RUST_LOG` (or the default
//! level) says.
//!
//! One global filter rather than a filter per layer (logs, traces). Per-layer filters
//! keep a thread-local verdict between `enabled` and the span or event that follows;
//! a bare `tracing::enabled!` check, as sqlx makes before logging each query, leaves a
//! verdict behind that the next span on that thread then inherits, so the append span
//! after a PostgreSQL query silently vanished from the traces. A global filter has no
//! such state.
//!
//! Spans stay on when the logs are quieter (`RUST_LOG=warn`): they are the traces, and
//! they carry the request and trace ids of whatever lines are still logged.

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub(crate) struct Verbosity {
    /// The log level directives; also consulted for spans below INFO (`RUST_LOG=debug`).
    pub(crate) logs: EnvFilter,
}

/// A span of level INFO or more severe: requests, commands, appends, publishes.
fn info_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && *metadata.level() <= tracing::Level::INFO
}

impl<S> Layer<S> for Verbosity
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if info_span(metadata) {
            return Interest::always();
        }
        Layer::<S>::register_callsite(&self.logs, metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        info_span(metadata) || Layer::<S>::enabled(&self.logs, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&self.logs).map(|hint| hint.max(LevelFilter::INFO))
    }

    // The directives may depend on span fields (`[request{id=7}]=debug`): let the
    // filter see the spans as it would on its own.
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.logs.on_new_span(attrs, id, ctx)
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.logs.on_record(id, values, ctx)
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.logs.on_enter(id, ctx)
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.logs.on_exit(id, ctx)
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.logs.on_close(id, ctx)
    }
}
