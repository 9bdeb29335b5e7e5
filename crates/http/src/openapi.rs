//! The parts of the OpenAPI document every service shares: the one `Problem`
//! schema, and the error responses that point at it.
//!
//! A handler lists every status it can answer in its `#[utoipa::path]`:
//! the route-specific ones inline, the common ones by naming a type of this
//! module (`responses((status = 200, …), BadRequest, Unauthorized, …)`). Each
//! of those types is one status whose body is `#/components/schemas/Problem`
//! as `application/problem+json`, with the headers that status carries.
//! [`register`] puts the schema in the document once. The parameters several
//! routes share ([`OrderIdParam`], [`IfMatch`], [`IdempotencyKey`],
//! [`Consistency`]) are here too, with the patterns the server reads them by.

use std::collections::BTreeMap;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document: what every error answer of the API carries.
// (Not in the schema's description: the same type is serialised by `ApiError`,
// so the document and the answers cannot drift apart.)
#[derive(serde::Serialize, ToSchema)]
#[schema(title = "Problem")]
pub struct Problem {
    /// `urn:order-platform:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:order-platform:problem:order_not_found")]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599, example = 404)]
    pub status: u16,
    /// What went wrong, for humans.
    pub detail: String,
    /// Stable, machine-readable reason, e.g. `order_not_found`, `validation_failed`.
    #[schema(pattern = "^[a-z][a-z_]*$", example = "order_not_found")]
    pub code: String,
    /// One entry per invalid field: validation failures (422) and JSON values of
    /// the wrong type (400 `invalid_json`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub errors: Vec<FieldProblem>,
}

/// One invalid field of a request, named by its path on the wire (`items[2].unitPrice`).
#[derive(serde::Serialize, ToSchema)]
pub struct FieldProblem {
    #[schema(example = "items[0].quantity")]
    pub field: String,
    #[schema(example = "must be between 1 and 10000, got 0")]
    pub message: String,
}

/// Adds the `Problem` schema (and what it refers to) to `openapi`'s components.
pub fn register(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(Problem::name().into_owned(), Problem::schema())];
    Problem::schemas(&mut schemas);
    components.schemas.extend(schemas);
}

fn text_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Object::with_type(Type::String))
        .description(Some(description))
        .build()
}

/// One problem response: `status`, `description`, the `Problem` body and `headers`.
fn problem(
    status: u16,
    description: &str,
    headers: &[(&str, &str)],
) -> BTreeMap<String, RefOr<Response>> {
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    for (name, about) in headers {
        response = response.header(*name, text_header(about));
    }
    BTreeMap::from([(status.to_string(), RefOr::T(response.build()))])
}

macro_rules! problem_response {
    ($(#[$doc:meta])* $name:ident, $status:literal, $description:literal $(, $header:literal => $about:literal)* $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem($status, $description, &[$(($header, $about)),*])
            }
        }
    };
}

problem_response!(
    /// 400 for routes with a JSON body, path or query parameters, or command headers.
    BadRequest, 400,
    "Malformed request: body not JSON or a field of the wrong JSON type, an unknown field, a bad path or query parameter, or a malformed If-Match, Idempotency-Key or X-Consistency-Token header"
);
problem_response!(
    /// 401 for every route that needs a token.
    Unauthorized, 401, "No bearer token, or an invalid or expired one",
    "WWW-Authenticate" => "`Bearer realm=\"order-platform\", error=\"invalid_token\", …`"
);
problem_response!(
    /// 403: the caller's roles do not allow the route (never depends on an order).
    Forbidden, 403,
    "The caller's roles do not allow this (the same whatever order the request names)"
);
problem_response!(
    /// 404 on the routes of one order.
    OrderNotFound, 404,
    "No such order, or one the caller may not see (answered identically)"
);
problem_response!(
    /// 409 on commands.
    Conflict, 409,
    "The order's state forbids the command (`code` names the rule), or the order kept changing concurrently"
);
problem_response!(
    /// 412 on conditional commands.
    PreconditionFailed, 412, "If-Match does not match the order's current version",
    "ETag" => "The order's current version, e.g. `\"3\"`"
);
problem_response!(
    /// 413 on routes that read a body.
    PayloadTooLarge, 413, "The body is larger than the configured limit (default 1 MiB)"
);
problem_response!(
    /// 415 on routes that read a JSON body.
    UnsupportedMediaType, 415, "The body is not sent as `Content-Type: application/json`"
);
problem_response!(
    /// 422 on commands that validate their input.
    Unprocessable, 422,
    "Well-formed but invalid: `errors` lists each field (`validation_failed`), or the Idempotency-Key was used with another request (`idempotency_key_reused`)"
);
problem_response!(
    /// 500 on every route: documented because it can happen, never for a client's
    /// mistake (DESIGN.md §4.4); `dev/api_fuzz` fails on any 5xx.
    InternalError, 500,
    "A bug or corrupt stored data, never a client mistake: the cause is logged, not returned"
);
problem_response!(
    /// 503 on every route that reaches a store.
    Unavailable, 503,
    "A dependency is unavailable, or (queries with X-Consistency-Token) the read model did not catch up in time",
    "Retry-After" => "Seconds to wait before retrying"
);

/// A parameter whose schema is written out as JSON Schema (fixed text: a mistake
/// in it fails every test that builds the document).
pub fn parameter(
    name: &str,
    location: ParameterIn,
    required: bool,
    description: &str,
    schema: serde_json::Value,
) -> Parameter {
    let schema: RefOr<Schema> = serde_json::from_value(schema)
        .unwrap_or_else(|e| panic!("the schema of parameter {name}: {e}"));
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// Digits only, as [`crate::parse_digits`] reads them.
pub const DIGITS: &str = "^[0-9]+$";
/// `If-Match: "<version>"`, optionally weak, as the command service reads it
/// (empty: no condition).
pub const IF_MATCH_PATTERN: &str = r#"^(?:(?:W/)?"[0-9]{1,19}")?$"#;
/// `Idempotency-Key`: 1–255 visible ASCII characters (DESIGN.md §4.1).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// `params!(Name => [parameter(…), …])`: a type to name in a route's
/// `params(…)`, standing for those parameters.
#[macro_export]
macro_rules! params {
    ($(#[$doc:meta])* $name:ident => [$($param:expr),* $(,)?]) => {
        $(#[$doc])*
        pub struct $name;

        impl ::utoipa::IntoParams for $name {
            fn into_params(
                _: impl Fn() -> Option<::utoipa::openapi::path::ParameterIn>,
            ) -> Vec<::utoipa::openapi::path::Parameter> {
                vec![$($param),*]
            }
        }
    };
}

params!(
    /// The `{id}` of an order's routes.
    OrderIdParam => [parameter(
        "id", ParameterIn::Path, true, "The order id (a UUID; anything else is 400)",
        serde_json::json!({"type": "string", "format": "uuid"}),
    )]
);
params!(
    /// `If-Match` on the commands that change an order.
    IfMatch => [parameter(
        "If-Match", ParameterIn::Header, false,
        "Run only if the order is at this version (its ETag, e.g. `\"3\"`); otherwise 412",
        serde_json::json!({"type": "string", "pattern": IF_MATCH_PATTERN}),
    )]
);
params!(
    /// `Idempotency-Key` on every command.
    IdempotencyKey => [parameter(
        "Idempotency-Key", ParameterIn::Header, false,
        "Makes retries safe: the same key and request answer as the first time (kept at least 24 hours); the same key with another request is 422",
        serde_json::json!({"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}),
    )]
);
/// `<store id: 32 hex digits>:<position>` (see `order_event_store::ConsistencyToken::to_header`),
/// or empty: no condition.
pub const CONSISTENCY_TOKEN_PATTERN: &str = "^([0-9a-f]{32}:[0-9]{1,19})?$";

params!(
    /// Read-your-writes headers on the queries served from the read model (§4.3).
    Consistency => [
        parameter(
            "X-Consistency-Token", ParameterIn::Header, false,
            "Answer only once the read model has this write: the X-Consistency-Token of a command's answer (503 if it cannot in time; 400 if it comes from another event store)",
            serde_json::json!({"type": "string", "pattern": CONSISTENCY_TOKEN_PATTERN}),
        ),
        parameter(
            "X-Consistency-Timeout-Ms", ParameterIn::Header, false,
            "Longest wait for X-Consistency-Token, in milliseconds (default 5000)",
            serde_json::json!({"type": "integer", "minimum": 0, "maximum": crate::MAX_CONSISTENCY_WAIT_MS}),
        ),
    ]
);

/// The document as served. utoipa 5.5 writes a link's fields in snake case
/// (`operation_id`, `operation_ref`, `request_body`), which no OpenAPI reader
/// knows; they are renamed here to the specification's camel case.
pub fn to_json(openapi: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    let operations = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|methods| methods.values_mut());
    for operation in operations {
        let links = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut)
            .into_iter()
            .flat_map(|responses| responses.values_mut())
            .filter_map(|response| response.get_mut("links"))
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|links| links.values_mut())
            .filter_map(serde_json::Value::as_object_mut);
        for link in links {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_string(), value);
                }
            }
        }
    }
    doc
}
