//! Health, metrics and the layers every service wears.

use crate::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Latency buckets, in seconds, for every `_seconds` histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Someone else installed a global recorder: keep ours private.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// A dependency `/health/ready` checks.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
    /// Facts reported beside the verdict, up or down (lag, positions).
    async fn detail(&self) -> Option<serde_json::Value> {
        None
    }
}

/// `/health/live`, `/health/ready` and `/metrics`; no authentication.
pub fn operational_router(checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(serde_json::json!({"status": "up"})) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let checks = checks.clone();
                async move { ready(checks).await }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    handle.run_upkeep();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
}

async fn ready(checks: Vec<Arc<dyn ReadinessCheck>>) -> Response {
    let mut report = serde_json::Map::new();
    let mut all_up = true;
    for check in checks {
        let mut status = match check.check().await {
            Ok(()) => serde_json::json!({"status": "up"}),
            Err(reason) => {
                all_up = false;
                serde_json::json!({"status": "down", "reason": reason})
            }
        };
        if let Some(detail) = check.detail().await {
            status["detail"] = detail;
        }
        report.insert(check.name().to_string(), status);
    }
    let status = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let overall = if all_up { "up" } else { "down" };
    (
        status,
        Json(serde_json::json!({"status": overall, "checks": report})),
    )
        .into_response()
}

/// Wraps `router` with the layers every service wears, outermost first:
/// request id (generated or propagated), the request's span (trace context),
/// panic safety net, metrics, body limit.
pub fn common_layers(router: Router, body_limit: usize) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    router
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            read_whole_body(body_limit, request, next)
        }))
        .layer(axum::middleware::from_fn(record_http_metrics))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("handler panicked").into_response()
            },
        ))
        .layer(axum::middleware::from_fn(crate::trace::request_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Records every answer in `order_platform_http_requests_total` and
/// `order_platform_http_request_duration_seconds`, labelled by method, route and
/// status. Every label has a bounded set of values, whatever clients send: a
/// label value is a time series the exporter keeps forever, so a client free to
/// choose one (`curl -X M1`, `-X M2`, … or one path per request) could grow the
/// server's memory without bound.
/// How much of a body over the limit is still read (and dropped) so that the
/// client, still sending, gets to read its 413; past this the connection is closed.
const DRAIN_AT_MOST: usize = 64 * 1024 * 1024;

/// Reads the request body before the handler runs: up to `limit` bytes are
/// handed on; a longer body is read to its end (at most [`DRAIN_AT_MOST`]) and
/// answered 413. Answering while the client is still sending would close the
/// connection on unread input, and the client, busy writing, would often see a
/// reset instead of the answer.
async fn read_whole_body(limit: usize, request: Request, next: Next) -> Response {
    use futures::StreamExt;
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return ApiError::bad_request("unreadable_body", "the request body could not be read")
                .into_response();
        };
        total = total.saturating_add(chunk.len());
        if total <= limit {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_AT_MOST {
            let mut response = crate::extract::too_large().into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    }
    if total > limit {
        return crate::extract::too_large().into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(kept)))
        .await
}

async fn record_http_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let mut response = next.run(request).await;
    // A `StatusCode` is 100–999: bounded by construction.
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("order_platform_http_requests_total", &labels).increment(1);
    metrics::histogram!("order_platform_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The method as a metric label: one of the nine methods of RFC 9110 and
/// RFC 5789, or `other` for any extension method a client makes up.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The route as a metric label: the template the router matched
/// (`/api/v1/orders/{id}`, never the id itself), or `unmatched` for any path
/// no route knows.
fn route_label(matched: Option<&MatchedPath>) -> String {
    matched.map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        for made_up in ["M1", "M2", "PROPFIND", "get", "BREW"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
