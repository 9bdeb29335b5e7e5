//! Extractors whose rejections are problem documents.

use crate::ApiError;
use crate::json::from_json_value;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use order_auth::{AuthError, Principal, TokenVerifier};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use uuid::Uuid;

/// The token verifier, installed as a request extension by the server.
#[derive(Clone)]
pub struct Verifier(pub Arc<dyn TokenVerifier>);

/// The authenticated caller. Rejects with 401 when the bearer token is missing or invalid.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(Verifier(verifier)) = parts.extensions.get::<Verifier>().cloned() else {
            return Err(ApiError::internal("no token verifier installed"));
        };
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        match verifier.verify(token).await {
            Ok(principal) => Ok(Caller(principal)),
            Err(e) => {
                metrics::counter!("order_platform_auth_failures_total", "reason" => reason(&e))
                    .increment(1);
                Err(ApiError::unauthorized(e.to_string()))
            }
        }
    }
}

fn reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::Malformed => "malformed",
        AuthError::Expired => "expired",
        AuthError::NotYetValid => "not_yet_valid",
        AuthError::BadSignature => "bad_signature",
        AuthError::WrongAudience => "wrong_audience",
        AuthError::WrongIssuer => "wrong_issuer",
        AuthError::WrongAlgorithm => "wrong_algorithm",
        AuthError::UnknownKey => "unknown_key",
        AuthError::Key { .. } | AuthError::NoKey { .. } => "key",
    }
}

/// A JSON request body. Not JSON or wrong types → 400, too large → 413,
/// missing `Content-Type: application/json` → 415. A value of the wrong type
/// is named by its path with what it must be (`items[0].quantity must be an
/// integer, not the string "2"`, also in the problem's `errors`), as
/// [`from_json_value`] does for a body read as a `serde_json::Value` first.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Read as a JSON value first (syntax, size and content type), then typed
        // with the path of the field that does not fit.
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => from_json_value(&value).map(JsonBody),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
        }
        JsonRejection::JsonDataError(e) => ApiError::bad_request("invalid_json", e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("invalid_json", e.body_text()),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// A JSON object body that may also be absent (empty): then it is `{}`.
/// For commands whose body has only optional fields (`approve`, `cancel`).
pub struct OptionalJsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                _ => ApiError::bad_request("invalid_body", e.body_text()),
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(serde_json::json!({})));
        }
        if !is_json {
            return Err(unsupported_media_type());
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJsonBody)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body must be JSON, sent with Content-Type: application/json",
    )
}

pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than the configured limit",
    )
}

/// The `{id}` path segment as an order id; anything but a UUID → 400.
pub struct OrderIdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Path(params)) => {
                let id = params
                    .iter()
                    .find(|(k, _)| k == "id")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                Uuid::parse_str(id).map(OrderIdPath).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_order_id",
                        format!("order id must be a UUID, got {id:?}"),
                    )
                })
            }
            Err(e) => Err(path_rejection(e)),
        }
    }
}

fn path_rejection(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

/// A named path segment as text, e.g. the `{sku}` of `DELETE .../items/{sku}`.
pub fn path_segment(parts: &[(String, String)], name: &str) -> Option<String> {
    parts
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// All path parameters; malformed percent-encoding → 400.
pub struct PathParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathParams(p))
            .map_err(path_rejection)
    }
}

/// Query parameters; unknown or malformed ones → 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e: QueryRejection| ApiError::bad_request("invalid_query", e.body_text()))
    }
}
