//! Bounds on the work one server takes on, so that a flood or a stuck
//! dependency degrades into quick, explicit refusals instead of a growing pile
//! of requests that each hold memory, a socket and perhaps a database
//! connection:
//!
//! - **A deadline per request.** A request still unanswered after
//!   [`Limits::request_timeout`] is abandoned (its handler future is dropped)
//!   and answered `503` with code `request_timeout`. 503 rather than 504: this
//!   server is not a gateway, and 503 is what every other "not now" of this API
//!   answers (DESIGN.md §4.4). A command's events commit atomically, so an
//!   abandoned command is either wholly applied or not at all; a client that
//!   cannot tell retries with the same `Idempotency-Key`.
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
use axum::http::{StatusCode, header};
use std::time::Duration;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use tower::timeout::TimeoutLayer;
use tower::timeout::error::Elapsed;
use tower::{BoxError, ServiceBuilder};

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
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
        .layer(TimeoutLayer::new(limits.request_timeout));
    router.layer(layers)
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
    } else if error.is::<Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the request took longer than the server's request timeout and was abandoned; \
             a command was either wholly applied or not at all: retry it with the same \
             Idempotency-Key to find out",
        )
    } else {
        ApiError::internal(error)
    }
}
