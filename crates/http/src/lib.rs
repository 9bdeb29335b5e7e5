//! What every HTTP service of the platform shares.
//!
//! - [`ApiError`]: the RFC 9457 problem documents of DESIGN.md §4.4.
//! - Extractors that turn every malformed request into one of those
//!   ([`JsonBody`], [`OrderIdPath`], [`QueryParams`]) instead of axum's plain-text rejections.
//! - [`Caller`]: the authenticated principal, verified on every request.
//! - [`operational_router`]: `/health/live`, `/health/ready`, `/metrics`.
//! - [`common_layers`]: request ids, metrics, body limit, panic safety net.
//! - [`bounded`]: request timeout and load-shedding concurrency limit ([`Limits`]).

mod error;
mod extract;
mod limits;
mod observe;

pub use error::ApiError;
pub use extract::{
    Caller, JsonBody, OptionalJsonBody, OrderIdPath, PathParams, QueryParams, Verifier,
    path_segment,
};
pub use limits::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_REQUEST_TIMEOUT, Limits, bounded, deadline_passed,
    request_timeout,
};
pub use observe::{ReadinessCheck, common_layers, metrics_handle, operational_router};

/// Header carrying the read-your-writes token (§4.3).
pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";
/// How long a query may wait for the token, in milliseconds.
pub const CONSISTENCY_TIMEOUT_MS: &str = "x-consistency-timeout-ms";
/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
