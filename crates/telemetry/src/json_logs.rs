//! The log format: one JSON object per line, flat, with the request and trace ids of the
//! spans the event happened in.
//!
//! A layer of its own rather than `tracing_subscriber::fmt().json()`: that format nests
//! the ids under `span`/`spans`, only for the innermost span or as a list, so a search for
//! `request_id` would have to know which span declared it. Here every line inside a
//! request carries `request_id` and `trace_id` at the top level, whichever span logged.

use serde_json::{Map, Value};
use std::fmt::Debug;
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Writes every event as a JSON line to what `make_writer` makes.
pub struct JsonLogs<W> {
    make_writer: W,
}

impl<W> JsonLogs<W> {
    pub fn new(make_writer: W) -> Self {
        JsonLogs { make_writer }
    }
}

/// The ids a span declared (`request_id`, `trace_id`), kept in its extensions so that
/// events inside it need not format the span's other fields.
#[derive(Default, Clone)]
struct Correlation {
    request_id: Option<String>,
    trace_id: Option<String>,
}

impl Visit for Correlation {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "request_id" => self.request_id = Some(value.to_string()),
            "trace_id" => self.trace_id = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if matches!(field.name(), "request_id" | "trace_id") {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

impl Correlation {
    fn is_empty(&self) -> bool {
        self.request_id.is_none() && self.trace_id.is_none()
    }
}

/// An event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
}

impl<S, W> Layer<S> for JsonLogs<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = Correlation::default();
        attrs.record(&mut found);
        if !found.is_empty()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(found);
        }
    }

    /// `trace_id` is often recorded after creation (once the parent is known).
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<Correlation>() {
            Some(known) => values.record(known),
            None => {
                let mut found = Correlation::default();
                values.record(&mut found);
                if !found.is_empty() {
                    extensions.insert(found);
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        // Inner spans win: a relay span's trace id over nothing, a request's over none.
        let mut ids = Correlation::default();
        if let Some(scope) = ctx.event_scope(event) {
            let mut innermost = None;
            for span in scope.from_root() {
                if let Some(found) = span.extensions().get::<Correlation>() {
                    ids.request_id = found.request_id.clone().or(ids.request_id);
                    ids.trace_id = found.trace_id.clone().or(ids.trace_id);
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        if let Some(id) = ids.request_id {
            line.insert("request_id".into(), id.into());
        }
        if let Some(id) = ids.trace_id {
            line.insert("trace_id".into(), id.into());
        }
        event.record(&mut Fields(&mut line));
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        // A log line that cannot be written is dropped: logging must not fail a request.
        let _ = self
            .make_writer
            .make_writer_for(metadata)
            .write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_inside_a_request_carries_its_request_and_trace_ids_at_the_top_level() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLogs::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                "http.request",
                request_id = "r-1",
                trace_id = tracing::field::Empty
            );
            request.record("trace_id", "0af7651916cd43dd8448eb211c80319c");
            let _in_request = request.enter();
            let _in_command = tracing::info_span!("command", command = "CreateOrder").entered();
            tracing::info!(attempt = 2, "appended");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(line["span"], "command");
        assert_eq!(line["message"], "appended");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["level"], "INFO");
    }
}
