//! Forwarding to the command and query services over HTTP.
//!
//! - `GET`/`HEAD` go to the query service, everything else to the command
//!   service, each with its own deadline (a query may wait up to 30 s for
//!   read-your-writes; a command should not take that long). The admin routes
//!   (`/api/v1/admin/…`: projection rebuild, dead letters) belong to the read
//!   side, so they go to the query service whatever their method.
//! - Request bodies are read whole, up to the body limit (413 beyond): they
//!   are small, and a retry needs them again. Response bodies are streamed.
//! - Retries: only for idempotent requests (`GET`/`HEAD`, or a command with an
//!   `Idempotency-Key`, which the command service deduplicates), only when
//!   the upstream gave no answer (connection refused, or closed or reset
//!   before a response began; never after an answer, never on a timeout), at most `retries`
//!   times, and only while the shared retry budget allows: each request adds
//!   a fifth of a retry to it, each retry spends one, so retries stay a small
//!   fraction of the traffic when an upstream is down and cannot multiply it.
//! - Hop-by-hop headers are dropped both ways; `X-Request-Id`, `traceparent`
//!   and `X-Forwarded-For` are sent upstream; the upstream's `Server` banner is
//!   dropped.
//! - An upstream that is down or too slow: 503 problem with `Retry-After`.

use crate::GatewayConfig;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use order_http::{ApiError, ReadinessCheck};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The two upstreams and how to reach them. Cheap to clone.
#[derive(Clone)]
pub struct Upstreams(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    command: String,
    query: String,
    command_timeout: Duration,
    query_timeout: Duration,
    body_limit: usize,
    retries: u32,
    /// Retries available now (see the module header). Written by every request.
    retry_budget: Mutex<f64>,
    /// The merged OpenAPI document and when it was fetched.
    openapi: Mutex<Option<(Instant, Bytes)>>,
}

const RETRY_BUDGET_MAX: f64 = 10.0;
const RETRY_DEPOSIT: f64 = 0.2;
const OPENAPI_CACHE: Duration = Duration::from_secs(60);

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

impl Upstreams {
    pub fn new(config: &GatewayConfig) -> anyhow::Result<Upstreams> {
        for (flag, url) in [
            ("--command-url", &config.command_url),
            ("--query-url", &config.query_url),
        ] {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("{flag} {url:?} is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("{flag} {url:?} must be an http:// or https:// URL");
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Upstreams(Arc::new(Inner {
            http,
            command: config.command_url.trim_end_matches('/').to_string(),
            query: config.query_url.trim_end_matches('/').to_string(),
            command_timeout: config.command_timeout,
            query_timeout: config.query_timeout,
            body_limit: config.body_limit,
            retries: config.retries,
            retry_budget: Mutex::new(RETRY_BUDGET_MAX),
            openapi: Mutex::new(None),
        })))
    }

    /// Sends `request` to its upstream and answers with the upstream's answer.
    pub async fn forward(&self, request: Request, peer: SocketAddr) -> Response {
        let inner = &self.0;
        let (parts, body) = request.into_parts();
        let is_query = matches!(parts.method, Method::GET | Method::HEAD);
        let idempotent = is_query || parts.headers.contains_key("idempotency-key");
        let read_side = is_query || parts.uri.path().starts_with("/api/v1/admin/");
        let (base, timeout) = if read_side {
            (&inner.query, inner.query_timeout)
        } else {
            (&inner.command, inner.command_timeout)
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = format!("{base}{path}");
        let body = match axum::body::to_bytes(body, inner.body_limit).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the configured limit",
                )
                .into_response();
            }
        };
        let headers = upstream_headers(&parts.headers, peer);
        self.deposit();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let sent = inner
                .http
                .request(parts.method.clone(), &url)
                .headers(headers.clone())
                .body(body.clone())
                .send();
            match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(response)) => return downstream(response),
                Ok(Err(e)) => {
                    // No answer at all: refused, or the connection closed or
                    // reset before a response began (a restarting service). Safe
                    // to send again only because the request is idempotent.
                    let unreached = e.is_connect() || (e.is_request() && !e.is_timeout());
                    if unreached && idempotent && attempt < inner.retries && self.withdraw() {
                        attempt += 1;
                        metrics::counter!("order_platform_gateway_upstream_retries_total")
                            .increment(1);
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                        continue;
                    }
                    tracing::warn!(error = %e, %url, "upstream unreachable");
                    return upstream_unavailable(
                        "upstream_unavailable",
                        "the service behind the gateway is unavailable; retry later",
                    );
                }
                Err(_) => {
                    return upstream_unavailable(
                        "upstream_timeout",
                        if idempotent {
                            "the service behind the gateway did not answer in time; retry later"
                        } else {
                            "the service behind the gateway did not answer in time; the command \
                             may or may not have been applied: retry with an Idempotency-Key"
                        },
                    );
                }
            }
        }
    }

    fn deposit(&self) {
        let mut budget = self
            .0
            .retry_budget
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *budget = (*budget + RETRY_DEPOSIT).min(RETRY_BUDGET_MAX);
    }

    fn withdraw(&self) -> bool {
        let mut budget = self
            .0
            .retry_budget
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *budget >= 1.0 {
            *budget -= 1.0;
            true
        } else {
            false
        }
    }

    /// The services' OpenAPI documents, merged (paths and schemas of both),
    /// cached for a minute.
    pub async fn openapi(&self) -> Result<Bytes, String> {
        if let Some((at, doc)) = self
            .0
            .openapi
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && at.elapsed() < OPENAPI_CACHE
        {
            return Ok(doc.clone());
        }
        let fetch = |base: String| -> BoxFuture<'_, Result<serde_json::Value, String>> {
            Box::pin(async move {
                let url = format!("{base}/api/v1/openapi.json");
                let response = self
                    .0
                    .http
                    .get(&url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{url}: HTTP {}", response.status()));
                }
                response.json().await.map_err(|e| format!("{url}: {e}"))
            })
        };
        let mut document = fetch(self.0.query.clone()).await?;
        if self.0.command != self.0.query {
            let other = fetch(self.0.command.clone()).await?;
            merge(&mut document, &other);
        }
        describe_the_gateway(&mut document);
        let bytes = Bytes::from(serde_json::to_vec(&document).map_err(|e| e.to_string())?);
        *self.0.openapi.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), bytes.clone()));
        Ok(bytes)
    }
}

/// Adds the paths and components (schemas, responses, parameters, security
/// schemes…) of `other` that `document` lacks: the gateway's document is the
/// query service's plus the command service's.
fn merge(document: &mut serde_json::Value, other: &serde_json::Value) {
    let add = |mine: &mut serde_json::Value, theirs: &serde_json::Value| {
        if let (Some(mine), Some(theirs)) = (mine.as_object_mut(), theirs.as_object()) {
            for (k, v) in theirs {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    };
    add(&mut document["paths"], &other["paths"]);
    if let Some(sections) = other["components"].as_object() {
        for (section, theirs) in sections {
            let mine = &mut document["components"][section];
            if mine.is_null() {
                *mine = serde_json::json!({});
            }
            add(mine, theirs);
        }
    }
}

/// Says in the document what the gateway itself may answer to any API
/// request, besides what the services answer.
fn describe_the_gateway(document: &mut serde_json::Value) {
    const GATEWAY: &str = "Through the gateway, any API request may also be answered 429 \
        `rate_limited` (see Retry-After and the RateLimit-Limit, -Remaining and -Reset headers \
        on every answer), 503 `upstream_unavailable` or `upstream_timeout` (a service behind \
        it is down or too slow; Retry-After), or 503 `overloaded` (the gateway is at its \
        in-flight limit).";
    let description = document["info"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !description.contains(GATEWAY) {
        document["info"]["description"] =
            serde_json::Value::String(format!("{description}\n\n{GATEWAY}").trim().to_string());
    }
}

fn upstream_unavailable(code: &'static str, detail: &str) -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
        .with_header(header::RETRY_AFTER, "1")
        .into_response()
}

/// The headers sent upstream: the client's, minus hop-by-hop ones, plus the
/// request id, the trace context and the client address.
fn upstream_headers(incoming: &HeaderMap, peer: SocketAddr) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in incoming {
        if HOP_BY_HOP.contains(&name.as_str())
            || name == header::CONTENT_LENGTH
            || name == "x-forwarded-for"
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let forwarded_for = match incoming
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    // With tracing on, the upstream continues from the gateway's own request span (so
    // the service's span is its child); without, the context the request carries passes
    // through (the client's, or the one `order_http`'s request span gave it).
    let traceparent = order_telemetry::traceparent(&tracing::Span::current()).or_else(|| {
        incoming
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| valid_traceparent(v))
            .map(str::to_string)
    });
    headers.remove("traceparent");
    if let Some(value) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(HeaderName::from_static("traceparent"), value);
    }
    headers
}

/// `00-<32 hex trace id, not all zero>-<16 hex parent id, not all zero>-<2 hex flags>`.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// The upstream's answer as ours: status, headers minus hop-by-hop ones and
/// the server banner, body streamed.
fn downstream(response: reqwest::Response) -> Response {
    let status = response.status();
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) || name == header::SERVER {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let body = Body::from_stream(response.bytes_stream().map_err(std::io::Error::other));
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Ready when both upstreams answer their liveness probe.
pub struct UpstreamCheck(pub Upstreams);

#[async_trait::async_trait]
impl ReadinessCheck for UpstreamCheck {
    fn name(&self) -> &'static str {
        "upstreams"
    }
    async fn check(&self) -> Result<(), String> {
        for base in [&self.0.0.command, &self.0.0.query] {
            let url = format!("{base}/health/live");
            let response = self
                .0
                .0
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{url}: HTTP {}", response.status()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_kept_when_valid_and_dropped_when_malformed() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid_traceparent(valid));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", HeaderValue::from_static(valid));
        incoming.insert("x-request-id", HeaderValue::from_static("r-1"));
        incoming.insert("connection", HeaderValue::from_static("close"));
        incoming.insert("host", HeaderValue::from_static("api.example.com"));
        incoming.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        let out = upstream_headers(&incoming, peer);
        assert_eq!(out["traceparent"], valid);
        assert_eq!(out["x-request-id"], "r-1");
        assert_eq!(out["x-forwarded-for"], "192.0.2.1, 10.1.2.3");
        assert!(out.get("connection").is_none() && out.get("host").is_none());

        // A malformed one is not passed on (the request span replaces it before this).
        incoming.insert("traceparent", HeaderValue::from_static("garbage"));
        assert!(
            upstream_headers(&incoming, peer)
                .get("traceparent")
                .is_none()
        );
        assert!(valid_traceparent(&order_telemetry::new_traceparent()));
    }

    #[test]
    fn documents_merge_paths_and_schemas() {
        let mut a = serde_json::json!({"paths": {"/a": {}}, "components": {"schemas": {"A": {}}}});
        let b = serde_json::json!({"paths": {"/b": {}, "/a": {"x": 1}}, "components": {"schemas": {"B": {}}}});
        merge(&mut a, &b);
        assert_eq!(a["paths"].as_object().unwrap().len(), 2);
        assert_eq!(
            a["paths"]["/a"],
            serde_json::json!({}),
            "the first one's wins"
        );
        assert!(a["components"]["schemas"]["B"].is_object());

        // Every component section, including ones the first document lacks.
        let mut c = serde_json::json!({"paths": {}, "components": {"schemas": {}}});
        let d = serde_json::json!({"paths": {}, "components": {
            "responses": {"NotFound": {}}, "parameters": {"IfMatch": {}}}});
        merge(&mut c, &d);
        assert!(c["components"]["responses"]["NotFound"].is_object(), "{c}");
        assert!(c["components"]["parameters"]["IfMatch"].is_object(), "{c}");
    }
}
