//! Logs and traces of every process (DESIGN.md §9), set up once at start-up.
//!
//! - Logs are always JSON lines on stderr ([`json_logs`]): one object per event with
//!   `timestamp`, `level`, `target`, `span`, the event's fields, and — taken from the
//!   enclosing spans — `request_id` and `trace_id`, so that a line can be found from a
//!   request id a client reports or from a trace in Jaeger.
//! - Traces are exported over OTLP/HTTP (protobuf) only when an endpoint is configured
//!   (`--otlp-endpoint`); otherwise no OpenTelemetry layer is installed at all and a span
//!   costs what a `tracing` span costs. Sampling is parent-based: a request whose caller
//!   decided (the `traceparent` flags) keeps that decision, a new trace is sampled with
//!   `--trace-sample-ratio`.
//! - Trace context crosses process boundaries as W3C `traceparent` ([`context`]): HTTP
//!   headers, the event store's `traceparent` column, the Kafka header of the same name.
//!
//! What the logs never carry: request headers (the `Authorization` token), bodies, or any
//! order data; spans and events name orders by id only.

mod context;
mod json_logs;
mod verbosity;

pub use context::{add_link, continue_trace, new_traceparent, trace_id_of, traceparent};
pub use json_logs::JsonLogs;
use verbosity::Verbosity;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// What a process asks of [`init`].
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// `service.name` of the spans (`order-platform-gateway`, …): Jaeger groups by it.
    pub service_name: String,
    /// The OTLP/HTTP endpoint; `None` exports nothing. A base URL
    /// (`http://collector:4318`) gets the traces path `/v1/traces` appended; a URL with a
    /// path is used as it is.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled, 0.0 to 1.0.
    pub sample_ratio: f64,
    /// Level of logs and spans unless `RUST_LOG` says otherwise (`info`).
    pub level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--otlp-endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("--trace-sample-ratio must be between 0.0 and 1.0, not {0}")]
    Ratio(f64),
}

/// The running exporter, if any. [`Telemetry::shutdown`] flushes the spans still queued:
/// call it on graceful exit, or the last requests' spans are lost.
#[must_use = "call shutdown() on exit to flush the last spans"]
pub struct Telemetry {
    /// Set only with an endpoint; also installed as the `tracing-opentelemetry` tracer.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued (waiting at most a few seconds) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}

/// How long [`Telemetry::shutdown`] waits for the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the process's subscriber: JSON logs on stderr, plus span export when
/// `config.otlp_endpoint` is set. A second call (tests starting several services in one
/// process) leaves the first subscriber in place and exports nothing more.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    init_with_writer(config, std::io::stderr)
}

/// [`init`], with log lines written to `writer` (tests capture them).
pub fn init_with_writer<W>(config: &TelemetryConfig, writer: W) -> Result<Telemetry, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    if !(0.0..=1.0).contains(&config.sample_ratio) {
        return Err(TelemetryError::Ratio(config.sample_ratio));
    }
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(config, endpoint)?),
        None => None,
    };
    // PostgreSQL's notices (`relation … already exists, skipping` from the migrations at
    // every start) are kept out unless they are warnings.
    let logs = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},sqlx::postgres::notice=warn", config.level))
    });
    let tracer = provider.as_ref().map(|p| p.tracer("order-platform"));
    let installed =
        tracing::subscriber::set_global_default(subscriber(logs, writer, tracer)).is_ok();
    if !installed && let Some(provider) = provider {
        // Nothing would feed it; do not leave its thread running.
        let _ = provider.shutdown();
        return Ok(Telemetry { provider: None });
    }
    Ok(Telemetry { provider })
}

/// The layers of every process: what is recorded ([`Verbosity`]), log lines, and spans to
/// the tracer when there is one.
fn subscriber<W>(
    logs: tracing_subscriber::EnvFilter,
    writer: W,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(Verbosity { logs })
        .with(JsonLogs::new(writer))
        .with(tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t)))
}

fn tracer_provider(
    config: &TelemetryConfig,
    endpoint: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TelemetryError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(config.sample_ratio))
        .with_resource(resource)
        .build())
}

/// Parent-based: a trace the caller sampled (or not) stays so; a new one is sampled with
/// probability `ratio`, decided by its trace id so that every service agrees.
fn sampler(ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
}

/// The URL spans are posted to: `endpoint` + `/v1/traces` when `endpoint` is a bare base
/// URL (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read), else `endpoint` itself.
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let refuse = |reason: &str| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| refuse("use an http:// or https:// URL, e.g. http://127.0.0.1:4318"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(refuse("the URL has no host, e.g. http://127.0.0.1:4318"));
    }
    if path.trim_end_matches('/').is_empty() {
        Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    } else {
        Ok(endpoint.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_after_a_bare_enabled_check_is_still_traced_even_with_quiet_logs() {
        let provider = SdkTracerProvider::builder().build();
        let logs = tracing_subscriber::EnvFilter::new("warn");
        let subscriber = subscriber(logs, std::io::sink, Some(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            // What sqlx does before logging each query.
            let _ = tracing::enabled!(tracing::Level::DEBUG);
            let span = tracing::info_span!("event_store.append");
            assert!(traceparent(&span).is_some(), "the span has a trace context");
        });
    }

    #[test]
    fn a_new_trace_follows_the_ratio_and_a_continued_one_its_callers_decision() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler(0.0))
            .build();
        let logs = tracing_subscriber::EnvFilter::new("info");
        let subscriber = subscriber(logs, std::io::sink, Some(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let new = tracing::info_span!("new", trace_id = tracing::field::Empty);
            continue_trace(&new, None);
            let flags = traceparent(&new).unwrap();
            assert!(flags.ends_with("-00"), "ratio 0: not sampled, {flags}");
            let called = tracing::info_span!("called", trace_id = tracing::field::Empty);
            let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            continue_trace(&called, Some(caller));
            let own = traceparent(&called).unwrap();
            assert!(
                own.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{own}"
            );
            assert!(own.ends_with("-01"), "the caller sampled it: {own}");
        });
    }

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example.com/custom/traces").unwrap(),
            "https://otel.example.com/custom/traces"
        );
        assert!(traces_url("127.0.0.1:4318").is_err());
        assert!(traces_url("http:///v1/traces").is_err());
    }
}
