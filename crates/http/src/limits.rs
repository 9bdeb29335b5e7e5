//! Bounds on the work one server takes on, so that a flood or a stuck
//! dependency degrades into quick, explicit refusals instead of a growing pile
//! of requests that each hold memory, a socket and perhaps a database
//! connection:
//!
//! - **A deadline per request.** A query still unanswered after
//!   [`Limits::request_timeout`] is abandoned (its handler future is dropped)
//!   and answered `503` with code `request_timeout`. 503 rather than 504: this
//!   server is not a gateway, and 503 is what every other "not now" of this API
//!   answers (DESIGN.md §4.4). A command is never cut off: once its events may
//!   commit, the answer must say what happened (DESIGN.md §5: no error after a
//!   commit). So a command only carries its deadline ([`deadline_passed`]) and
//!   the command service refuses with `request_timeout` if the deadline has
//!   passed *before* it appends; the append itself is bounded by the event
//!   store's own timeouts.
//! - **A cap on requests in flight, with load shedding.** At most
//!   [`Limits::max_in_flight`] requests run at once; one more is refused at
//!   once with `503`, code `overloaded` and `Retry-After: 1`. Nothing waits in
//!   a queue: a queue in front of a saturated server only turns overload into
//!   timeouts.
//!
//! Both come from tower (`TimeoutLayer`, `GlobalConcurrencyLimitLayer`,
//! `LoadShedLayer`); this module only chooses their order and turns their
//! errors into problem documents. [`bounded`] wraps the routes it is given and
//! nothing else: the server applies it to the API and leaves `/health/*` and
//! `/metrics` outside, so a saturated server still says how it is doing.

use crate::ApiError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::time::Instant;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, ServiceBuilder};

tokio::task_local! {
    /// When the request being handled must be answered by.
    static DEADLINE: Instant;
}

/// Whether the request being handled has run past its deadline (`false`
/// outside [`bounded`] routes). The command service asks before it appends.
pub fn deadline_passed() -> bool {
    DEADLINE
        .try_with(|deadline| Instant::now() >= *deadline)
        .unwrap_or(false)
}

/// The answer to a request that ran out of time before anything was changed.
pub fn request_timeout() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        "the request took longer than the server's request timeout and was abandoned; \
         nothing was changed: retry it",
    )
    .with_header(header::RETRY_AFTER, "1")
}

/// Default [`Limits::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Limits::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;

/// How much work the server accepts at once, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest a request may run before it is answered `request_timeout`.
    pub request_timeout: Duration,
    /// Requests that may run at once across every bounded route; one more is shed.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Wraps every route of `router` (its fallback included) with the deadline and
/// the shared in-flight cap of `limits`.
///
/// Outermost first: the error handler, the load shedder (refuses when the cap
/// is reached instead of waiting for a slot), the cap itself (one semaphore
/// for all routes: axum layers each route separately, so a per-route limit
/// would multiply the cap by the number of routes), then the deadline, which
/// so starts only once the request holds a slot.
pub fn bounded(router: Router, limits: &Limits) -> Router {
    let layers = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refusal))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight));
    let timeout = limits.request_timeout;
    router
        .layer(axum::middleware::from_fn(move |request, next| {
            with_deadline(timeout, request, next)
        }))
        .layer(layers)
}

/// Queries are cut off at the deadline; commands carry it (see the module docs).
async fn with_deadline(timeout: Duration, request: Request, next: Next) -> Response {
    let deadline = Instant::now() + timeout;
    let safe = request.method().is_safe();
    let run = DEADLINE.scope(deadline, next.run(request));
    if !safe {
        return run.await;
    }
    match tokio::time::timeout_at(deadline, run).await {
        Ok(response) => response,
        Err(_) => request_timeout().into_response(),
    }
}

/// The problem document for a request the layers of [`bounded`] refused.
async fn refusal(error: BoxError) -> ApiError {
    if error.is::<Overloaded>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is handling as many requests as it is configured to; retry shortly",
        )
        .with_header(header::RETRY_AFTER, "1")
    } else {
        ApiError::internal(error)
    }
}
