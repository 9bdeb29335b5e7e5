//! W3C trace context (`traceparent`) in and out of `tracing` spans.
//!
//! Each hop of a command — HTTP into the gateway, HTTP into the command service, the event
//! store's `traceparent` column, the Kafka header — carries one `traceparent`. A span that
//! continues a trace from such a value becomes the child of the span that wrote it; a span
//! that writes one writes its own context, so the next hop becomes its child in turn.
//!
//! Without an OpenTelemetry layer (no `--otlp-endpoint`) spans have no context of their
//! own: [`traceparent`] is then `None` and callers pass on the value they received, so the
//! trace id still reaches every log line of every process.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span context a `traceparent` value names, if it is a valid one.
fn remote_context(traceparent: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Makes `span` the child of the span `traceparent` names (when it is valid and tracing is
/// on) and records its trace id in the span's `trace_id` field, which the span must
/// declare (`trace_id = tracing::field::Empty`) for the id to reach the log lines.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    let parent = traceparent.and_then(remote_context);
    if let Some(parent) = &parent {
        let _ =
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent.clone()));
    }
    let own = span.context().span().span_context().clone();
    let trace_id = if own.is_valid() {
        Some(own.trace_id())
    } else {
        parent.map(|p| p.trace_id())
    };
    if let Some(trace_id) = trace_id {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// `span`'s own context as a `traceparent`, to hand to the next hop; `None` when tracing
/// is off (then pass on the `traceparent` received, if any).
pub fn traceparent(span: &Span) -> Option<String> {
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            own.trace_id(),
            own.span_id(),
            own.trace_flags().to_u8()
        )
    })
}

/// Links `span` to the span `traceparent` names: for work done for many traces at once
/// (one Elasticsearch `_bulk` for a batch of events), which can have only one parent.
pub fn add_link(span: &Span, traceparent: &str) {
    if let Some(other) = remote_context(traceparent) {
        span.add_link(other);
    }
}

/// A new trace: random trace and parent ids (OpenTelemetry's generator), sampled. For a
/// request that brings no trace context while no exporter runs, so that its log lines, and
/// those of every service it calls, share one trace id.
pub fn new_traceparent() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    format!("00-{}-{}-01", ids.new_trace_id(), ids.new_span_id())
}

/// The trace id (32 hex digits) of a valid `traceparent`.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    remote_context(traceparent).map(|c| c.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_of_a_traceparent_is_its_second_part() {
        let value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(
            trace_id_of(value).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            None
        );
    }

    #[test]
    fn without_an_opentelemetry_layer_a_span_has_no_context_of_its_own() {
        let span = tracing::info_span!("x", trace_id = tracing::field::Empty);
        continue_trace(
            &span,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(traceparent(&span), None);
    }
}
