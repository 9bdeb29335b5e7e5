//! What every HTTP service of the platform shares.
//!
//! - [`ApiError`]: the RFC 9457 problem documents of DESIGN.md §4.4.
//! - Extractors that turn every malformed request into one of those
//!   ([`JsonBody`], [`OrderIdPath`], [`QueryParams`]) instead of axum's plain-text rejections;
//!   a JSON value of the wrong type is named by its field ([`from_json_value`]).
//! - [`Caller`]: the authenticated principal, verified on every request.
//! - [`operational_router`]: `/health/live`, `/health/ready`, `/metrics`.
//! - [`openapi`]: the `Problem` schema and the error responses of the OpenAPI document.
//! - [`common_layers`]: request ids, the request's span (W3C trace context), metrics, body
//!   limit, panic safety net.
//! - [`bounded`]: request timeout and load-shedding concurrency limit ([`Limits`]).

mod error;
mod extract;
mod json;
mod limits;
mod observe;
pub mod openapi;
mod trace;

pub use error::ApiError;
pub use extract::{
    Caller, JsonBody, OptionalJsonBody, OrderIdPath, PathParams, QueryParams, Verifier,
    path_segment,
};
pub use json::from_json_value;
pub use limits::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_REQUEST_TIMEOUT, Limits, bounded, deadline_passed,
    request_timeout,
};
pub use observe::{ReadinessCheck, common_layers, metrics_handle, operational_router};

/// Header carrying the read-your-writes token (§4.3).
pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";
/// How long a query may wait for the token, in milliseconds.
pub const CONSISTENCY_TIMEOUT_MS: &str = "x-consistency-timeout-ms";
/// The longest `X-Consistency-Timeout-Ms` a client may ask for.
pub const MAX_CONSISTENCY_WAIT_MS: u64 = 30_000;
/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A header value of ASCII digits only (no sign, no spaces inside), as a number.
/// Values too large for `u64` saturate: a token that far ahead is simply not
/// reached yet, and a timeout that long is out of range either way.
pub fn parse_digits(value: &str) -> Option<u64> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().unwrap_or(u64::MAX))
}
