//! One span per API request, continuing the caller's trace.
//!
//! The span is the parent of everything the request does (the command, the append, the
//! call to an upstream service) and carries the two ids every log line inside the request
//! shows: `request_id` (the `X-Request-Id` set or kept by the outer layer) and `trace_id`.
//! Its parent is the `traceparent` the caller sent (the gateway's span for a service
//! behind it), so with `--otlp-endpoint` the services' spans join the gateway's trace.
//! Without an exporter, a request that brings no valid `traceparent` is given a new one
//! here (in its headers too), so its log lines carry a trace id and any service it calls
//! (the gateway's upstream) logs the same one. With an exporter the span's own context
//! starts the trace instead: a made-up parent would never reach the trace store.
//!
//! The span ends with one access-log line (method, route template, status, duration).
//!
//! `/health/*` and `/metrics` get no span: probes and scrapes every few seconds would
//! fill the trace store with traces nobody asked for.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

pub(crate) async fn request_span(mut request: Request, next: Next) -> Response {
    let Some(Incoming {
        request_id,
        traceparent,
        method,
        route,
    }) = Incoming::of(&request)
    else {
        return next.run(request).await;
    };
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        request_id = %request_id,
        trace_id = Empty,
    );
    order_telemetry::continue_trace(&span, traceparent.as_deref());
    let has_context = traceparent
        .as_deref()
        .is_some_and(|t| order_telemetry::trace_id_of(t).is_some());
    if !has_context
        && order_telemetry::traceparent(&span).is_none()
        && let Ok(started) = HeaderValue::from_str(&order_telemetry::new_traceparent())
    {
        order_telemetry::continue_trace(&span, started.to_str().ok());
        request.headers_mut().insert("traceparent", started);
    }
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    // The access log: one line per API request, inside the span so that it carries the
    // request and trace ids. Route template and status only: no path (order ids), no
    // headers (tokens), no body (customer data).
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = %route,
            status = status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        )
    });
    response
}

/// What the span needs from the request, copied out before the request moves on.
struct Incoming {
    request_id: String,
    traceparent: Option<String>,
    method: axum::http::Method,
    /// The route template, never the path: ids in span names would make every request
    /// a span name of its own.
    route: String,
}

impl Incoming {
    /// `None` for the operational endpoints, which get no span.
    fn of(request: &Request) -> Option<Incoming> {
        let path = request.uri().path();
        if path.starts_with("/health/") || path == "/metrics" {
            return None;
        }
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Some(Incoming {
            request_id: header("x-request-id").unwrap_or_default(),
            traceparent: header("traceparent"),
            method: request.method().clone(),
            route: request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", |p| p.as_str())
                .to_string(),
        })
    }
}
