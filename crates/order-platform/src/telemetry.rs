//! `--otlp-endpoint` and `--trace-sample-ratio`, shared by every service subcommand,
//! and the start of each process's logs and traces (`order-telemetry`).

use crate::cli::UsageError;
use clap::Args;
pub use order_telemetry::Telemetry;

#[derive(Args, Clone, Debug, Default)]
pub struct TelemetryArgs {
    /// Export traces over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318 (Jaeger,
    /// an OpenTelemetry Collector); traces go to its /v1/traces. Unset: no traces are
    /// exported (logs still carry trace and request ids).
    #[arg(long, env = "ORDER_PLATFORM_OTLP_ENDPOINT", value_name = "URL",
        value_parser = parse_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces exported, 0.0 to 1.0 (a request that arrives with a
    /// `traceparent` keeps its caller's decision). Only with --otlp-endpoint.
    #[arg(long, env = "ORDER_PLATFORM_TRACE_SAMPLE_RATIO", default_value_t = 1.0,
        value_parser = parse_ratio, value_name = "RATIO")]
    pub trace_sample_ratio: f64,
}

pub fn parse_endpoint(text: &str) -> Result<String, String> {
    order_telemetry::traces_url(text.trim())
        .map(|_| text.trim().to_string())
        .map_err(|e| e.to_string())
}

pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!(
            "`{text}` is not a ratio: use a number from 0.0 (no new trace exported) to 1.0 \
             (every trace), e.g. 0.1"
        )),
    }
}

/// JSON logs on stderr and, with an endpoint, span export as `service` (its Jaeger name).
/// Call [`Telemetry::shutdown`] on exit to flush the last spans.
pub fn start(args: &TelemetryArgs, service: &str) -> anyhow::Result<Telemetry> {
    let config = order_telemetry::TelemetryConfig {
        service_name: service.to_string(),
        otlp_endpoint: args.otlp_endpoint.clone(),
        sample_ratio: args.trace_sample_ratio,
        level: "info".to_string(),
    };
    let telemetry = order_telemetry::init(&config).map_err(|e| UsageError(e.to_string()))?;
    if let Some(endpoint) = &args.otlp_endpoint
        && telemetry.exporting()
    {
        tracing::info!(%endpoint, sample_ratio = args.trace_sample_ratio, "exporting traces");
    }
    Ok(telemetry)
}

/// Logs only, at `level`: the one-shot admin commands (`rebuild`, `verify`).
pub fn logs_only(level: &str) {
    let config = order_telemetry::TelemetryConfig {
        service_name: "order-platform".to_string(),
        otlp_endpoint: None,
        sample_ratio: 1.0,
        level: level.to_string(),
    };
    let _ = order_telemetry::init(&config);
}
