//! Problem details (RFC 9457) for every error the API returns.

use crate::openapi::{FieldProblem, PROBLEM_JSON, Problem};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use order_domain::{DomainError, FieldError};
use order_event_store::StoreError;

/// An error answer: status, stable `code`, human `detail`, optional field errors and headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 422 with one entry per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> ApiError {
        let detail = match errors.as_slice() {
            [one] => format!("{} {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        ApiError {
            errors,
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            )
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        let detail = detail.into();
        let challenge = format!(
            "Bearer realm=\"order-platform\", error=\"invalid_token\", error_description=\"{}\"",
            detail.replace('"', "'")
        );
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
            .with_header(header::WWW_AUTHENTICATE, &challenge)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 503: a dependency is unavailable. The cause is logged, not returned.
    pub fn unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "dependency unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency of the service is unavailable; retry later",
        )
        .with_header(header::RETRY_AFTER, "1")
    }

    /// 500: a bug. The cause is logged, not returned.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to handle the request",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        let status = match &e {
            DomainError::Validation(_) | DomainError::AmountOverflow => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            DomainError::OrderNotFound | DomainError::SkuNotFound { .. } => StatusCode::NOT_FOUND,
            DomainError::OrderAlreadyExists
            | DomainError::InvalidStatus { .. }
            | DomainError::LastLine
            | DomainError::TooManyLines
            | DomainError::SkuConflict { .. }
            | DomainError::QuantityLimit { .. } => StatusCode::CONFLICT,
        };
        match e {
            DomainError::Validation(errors) => ApiError::validation(errors),
            other => ApiError::new(status, other.code(), other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!("urn:order-platform:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_string(),
            errors: self
                .errors
                .into_iter()
                .map(|e| FieldProblem {
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// The one mapping of event-store failures to answers. Conflicts and taken
/// idempotency keys are normally handled by the command service before they get
/// here (retry, replay); what is left is a 409, a 503 or a bug.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "write_conflict",
                "the order kept changing concurrently; retry the request",
            ),
            StoreError::IdempotencyKeyTaken => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a concurrent request with this Idempotency-Key is being processed; retry",
            ),
            StoreError::Unavailable(_) => ApiError::unavailable(e),
            StoreError::Corrupt(_) => ApiError::internal(e),
        }
    }
}
