//! The API gateway (`order-platform gateway`, DESIGN.md §8): the one public
//! entrance in front of the command and query services.
//!
//! Per request, in this order:
//! 1. `X-Request-Id` taken (if well-formed) or generated, W3C `traceparent`
//!    taken (if well-formed) or started; both sent upstream and the request
//!    id answered.
//! 2. CORS (allow-list; preflights are answered here), body size limit.
//! 3. The bearer token verified here ([`order_auth::TokenVerifier`]: OIDC or
//!    the built-in key). A bad token is a 401 problem; no token is a 401 too
//!    (every API route needs one), except for the OpenAPI document.
//! 4. The rate limit of the caller (subject; anonymous or bad token: client
//!    IP), [`ratelimit`]: `RateLimit-Limit`/`-Remaining`/`-Reset` on every
//!    answer, 429 with `Retry-After` beyond the budget.
//! 5. At most `max_in_flight` API requests at once; one more is a 503
//!    `overloaded` at once (never queued), the operational endpoints aside.
//! 6. Routing: `GET`/`HEAD` and the admin routes (`/api/v1/admin/…`, read
//!    side) to the query service, everything else to the command service
//!    ([`proxy`]), with a timeout per kind and retries for idempotent requests
//!    only. An upstream that is down or too slow is a 503
//!    problem with `Retry-After`, never a hang.
//!
//! No business rule lives here: the services check roles and ownership again
//! (they never trust an unauthenticated caller).

mod proxy;
pub mod ratelimit;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use order_auth::{Principal, TokenVerifier};
use order_http::{ApiError, ReadinessCheck};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use proxy::Upstreams;
pub use ratelimit::{Budget, Budgets, Class, Limiter};

/// Everything the gateway needs, already validated.
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub command_url: String,
    pub query_url: String,
    pub verifier: Arc<dyn TokenVerifier>,
    pub budgets: Budgets,
    pub redis_url: Option<String>,
    /// Prefix of the rate-limit keys in Redis (deployments sharing one Redis).
    pub redis_prefix: String,
    pub body_limit: usize,
    /// Deadline of a command (upstream included).
    pub command_timeout: Duration,
    /// Deadline of a query (must exceed the longest consistency wait, 30 s).
    pub query_timeout: Duration,
    /// Retries of an idempotent request whose upstream could not be reached.
    pub retries: u32,
    /// API requests forwarded at once; one more is refused at once (503
    /// `overloaded`, never queued), so a slow service or a flood of requests
    /// cannot pile up connections and memory here.
    pub max_in_flight: usize,
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (the gateway sits behind TLS).
    pub hsts: bool,
    /// Served as they are, with no token and no rate limit: the human-readable
    /// pages (`/`, `/api/docs` and its assets), given by the binary that
    /// embeds them (DESIGN.md §4.6).
    pub pages: Router,
}

/// Shared by every request.
struct Shared {
    verifier: Arc<dyn TokenVerifier>,
    limiter: Limiter,
    upstreams: Upstreams,
    hsts: bool,
}

/// A running gateway. Stops when dropped or shut down.
pub struct Gateway {
    addr: SocketAddr,
    /// The state its requests share (to observe the rate limiter).
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    /// Listens on `config.listen` and serves until stopped.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Gateway> {
        order_http::metrics_handle();
        // Exported from the start, at 0: dashboards and alerts on them have data before
        // the first failure.
        metrics::counter!("order_platform_gateway_auth_failures_total").increment(0);
        metrics::counter!("order_platform_gateway_upstream_retries_total").increment(0);
        let limiter = Limiter::new(
            config.budgets.clone(),
            config.redis_url.as_deref(),
            &config.redis_prefix,
        )
        .map_err(anyhow::Error::msg)?;
        let upstreams = Upstreams::new(&config)?;
        let shared = Arc::new(Shared {
            verifier: config.verifier.clone(),
            limiter,
            upstreams,
            hsts: config.hsts,
        });
        let router = router(shared.clone(), &config);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("listening on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(forget_idle_callers(shared.clone(), stopped.clone()));
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        });
        Ok(Gateway {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether Redis is configured but rate limits are decided in memory now.
    pub fn rate_limit_fallback(&self) -> bool {
        self.shared.limiter.in_fallback()
    }

    /// Serves until `signal`, then stops accepting and drains.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        tokio::select! {
            () = signal => {}
            _ = &mut task => return,
        }
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Keeps the in-memory rate limiter's memory bounded (see [`ratelimit`]) until
/// the gateway stops.
async fn forget_idle_callers(shared: Arc<Shared>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(ratelimit::FORGET_IDLE_EVERY) => shared.limiter.forget_idle(),
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

fn router(shared: Arc<Shared>, config: &GatewayConfig) -> Router {
    let checks: Vec<Arc<dyn ReadinessCheck>> =
        vec![Arc::new(proxy::UpstreamCheck(shared.upstreams.clone()))];
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1", any(forward))
        .route("/api/v1/{*rest}", any(forward))
        .with_state(shared.clone());
    // The in-flight cap of every service. Its deadline only backs up the
    // proxy's own per-kind deadlines (which answer first, `upstream_timeout`).
    let limits = order_http::Limits {
        request_timeout: config.command_timeout.max(config.query_timeout) + Duration::from_secs(5),
        max_in_flight: config.max_in_flight,
    };
    let api = order_http::bounded(api, &limits);
    let cors = cors_layer(&config.cors_origins);
    let routes = api
        .merge(order_http::operational_router(checks))
        .merge(config.pages.clone())
        .fallback(|| async {
            ApiError::not_found("route_not_found", "no such route; see /api/v1/openapi.json")
        })
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(shared, edge_headers));
    order_http::common_layers(routes, config.body_limit)
}

fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let expose = [
        "etag",
        "location",
        "x-consistency-token",
        "x-request-id",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "idempotency-replayed",
    ]
    .map(header::HeaderName::from_static);
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-consistency-token"),
            header::HeaderName::from_static("x-consistency-timeout-ms"),
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("traceparent"),
        ])
        .expose_headers(expose)
        .max_age(Duration::from_secs(600))
}

/// Security headers on every answer, and no server banner.
async fn edge_headers(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.remove(header::SERVER);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if shared.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// The bearer token of a request: `None` without an Authorization header,
/// `Err` for one that is not `Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(()),
    )
}

/// Who is calling: the verified principal, or why not.
async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Principal, ApiError> {
    match bearer(headers) {
        None => Err(ApiError::unauthorized("a bearer token is required")),
        Some(Err(())) => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        )),
        Some(Ok(token)) => shared.verifier.verify(token).await.map_err(|e| {
            metrics::counter!("order_platform_gateway_auth_failures_total").increment(1);
            ApiError::unauthorized(e.to_string())
        }),
    }
}

/// Every API request but the OpenAPI document.
async fn forward(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let principal = authenticate(&shared, request.headers()).await;
    let caller = match &principal {
        Ok(p) => format!("sub:{}", p.subject),
        Err(_) => format!("ip:{}", peer.ip()),
    };
    let decision = shared.limiter.check(principal.as_ref().ok(), &caller).await;
    let mut response = if !decision.admitted {
        let class = shared
            .limiter
            .budgets()
            .for_caller(principal.as_ref().ok())
            .0
            .as_str();
        metrics::counter!("order_platform_gateway_ratelimited_total", "class" => class)
            .increment(1);
        let seconds = ceil_seconds(decision.retry_after).max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {seconds} s"),
        )
        .with_header(header::RETRY_AFTER, &seconds.to_string())
        .into_response()
    } else {
        match principal {
            Err(e) => e.into_response(),
            Ok(_) => shared.upstreams.forward(request, peer).await,
        }
    };
    let headers = response.headers_mut();
    let number = |n: u64| HeaderValue::from(n);
    headers.insert("ratelimit-limit", number(decision.limit.into()));
    headers.insert("ratelimit-remaining", number(decision.remaining.into()));
    headers.insert("ratelimit-reset", number(ceil_seconds(decision.reset)));
    response
}

fn ceil_seconds(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

/// The OpenAPI document of the services behind the gateway (public, like
/// theirs; rate-limited per client IP).
async fn openapi(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let decision = shared
        .limiter
        .check(None, &format!("ip:{}", peer.ip()))
        .await;
    if !decision.admitted {
        let seconds = ceil_seconds(decision.retry_after).max(1);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        )
        .with_header(header::RETRY_AFTER, &seconds.to_string())
        .into_response();
    }
    match shared.upstreams.openapi().await {
        Ok(document) => {
            let mut response = Response::new(Body::from(document));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => ApiError::unavailable(e).into_response(),
    }
}
