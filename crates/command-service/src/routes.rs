//! HTTP routes of the command side, with their OpenAPI descriptions.
//!
//! Bodies are read as JSON values first (malformed JSON → 400), then typed
//! (wrong JSON types → 400 naming the field, e.g. `items[0].quantity must be an
//! integer`, also in the problem's `errors`), then validated by the domain (missing or invalid
//! values → 422 with every field error). Unknown fields are wrong shapes (400).
//!
//! Each handler's `#[utoipa::path]` lists every status it can answer; the
//! request body schemas are in `schema.rs`, as strict as the server.

use crate::{ChangeKind, CommandService, Fingerprint, Intent};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use order_domain::{Command, LineInput, validate_line};
use order_http::openapi::{
    BadRequest, Conflict, Forbidden, IdempotencyKey, IfMatch, InternalError, OrderIdParam,
    OrderNotFound, PayloadTooLarge, PreconditionFailed, Unauthorized, Unavailable, Unprocessable,
    UnsupportedMediaType,
};
use order_http::{
    ApiError, Caller, JsonBody, OptionalJsonBody, OrderIdPath, PathParams, path_segment,
};
use order_read_model::OrderView;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The command routes, under `/api/v1`.
pub fn router(service: CommandService) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_order))
        .routes(routes!(add_item))
        .routes(routes!(remove_item))
        .routes(routes!(approve_order))
        .routes(routes!(reject_order))
        .routes(routes!(ship_order))
        .routes(routes!(cancel_order))
        .with_state(service)
}

/// One order line as sent by clients. Its schema is in `schema.rs`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemBody {
    sku: Option<String>,
    product_name: Option<String>,
    quantity: Option<Quantity>,
    unit_price: Option<String>,
}

/// A quantity as JSON Schema's `integer` means it: `2` and `2.0` alike.
/// Anything else (a fraction, a string) is a wrong type: 400.
struct Quantity(i64);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        use serde::de::{Error, Unexpected};
        use serde_json::Value;
        let number = match Value::deserialize(d)? {
            Value::Number(n) => n,
            other => {
                let got = match &other {
                    Value::String(s) => Unexpected::Str(s),
                    Value::Bool(b) => Unexpected::Bool(*b),
                    Value::Array(_) => Unexpected::Seq,
                    Value::Object(_) => Unexpected::Map,
                    _ => Unexpected::Unit,
                };
                return Err(D::Error::invalid_type(got, &"an integer"));
            }
        };
        if let Some(n) = number.as_i64() {
            return Ok(Quantity(n));
        }
        match number.as_f64() {
            // Integral and within i64: the cast is exact. Out-of-range values
            // saturate, and validation then refuses them as out of 1..=10000.
            Some(f) if f.fract() == 0.0 => Ok(Quantity(f as i64)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid type: {number}, expected an integer"
            ))),
        }
    }
}

impl From<ItemBody> for LineInput {
    fn from(b: ItemBody) -> LineInput {
        LineInput {
            sku: b.sku,
            product_name: b.product_name,
            quantity: b.quantity.map(|q| q.0),
            unit_price: b.unit_price,
        }
    }
}

/// The body of `POST /orders`. Its schema is in `schema.rs`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrderBody {
    customer_id: Option<String>,
    currency: Option<String>,
    items: Option<Vec<ItemBody>>,
    order_id: Option<Uuid>,
}

/// The optional body of approve and cancel.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<String>,
}

/// The body of reject.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    reason: Option<String>,
}

/// The body of ship.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShipBody {
    tracking_number: Option<String>,
    carrier: Option<String>,
}

fn typed<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    order_http::from_json_value(value)
}

async fn run(
    service: &CommandService,
    caller: &Caller,
    parts: &Parts,
    order_id: Uuid,
    body: &serde_json::Value,
    intent: Intent,
) -> Result<Response, ApiError> {
    let request = Fingerprint {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        body,
    };
    service
        .execute(&caller.0, &parts.headers, order_id, intent, request)
        .await
}

fn change(
    name: &'static str,
    kind: ChangeKind,
    build: impl Fn(&order_domain::Order) -> Result<Command, ApiError> + Send + Sync + 'static,
) -> Intent {
    Intent::Change {
        name,
        kind,
        build: Box::new(build),
    }
}

/// Create an order.
///
/// The `201` answer links to every route that takes the new order's id.
#[utoipa::path(post, path = "/api/v1/orders", tag = "commands",
    request_body(content = CreateOrderBody, content_type = "application/json"),
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Created: the order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.",
            body = OrderView,
            headers(
                ("Location" = String, description = "`/api/v1/orders/{orderId}`"),
                ("ETag" = String, description = "The order's version, e.g. `\"1\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write (read-your-writes)"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            ),
            links(
                ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/orderId")))),
                ("GetOrderEvents" = (operation_id = "order_events", parameters(("id" = "$response.body#/orderId")))),
                ("GetOrderAtVersion" = (operation_id = "order_at", parameters(("id" = "$response.body#/orderId"), ("version" = "$response.body#/version")))),
                ("AddItem" = (operation_id = "add_item", parameters(("id" = "$response.body#/orderId")))),
                ("RemoveItem" = (operation_id = "remove_item", parameters(("id" = "$response.body#/orderId"), ("sku" = "$response.body#/items/0/sku")))),
                ("ApproveOrder" = (operation_id = "approve_order", parameters(("id" = "$response.body#/orderId")))),
                ("RejectOrder" = (operation_id = "reject_order", parameters(("id" = "$response.body#/orderId")))),
                ("ShipOrder" = (operation_id = "ship_order", parameters(("id" = "$response.body#/orderId")))),
                ("CancelOrder" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/orderId")))),
            ),
        ),
        BadRequest, Unauthorized,
        (status = 403, description = "Analysts may not command; customers may only create orders whose customerId is their own subject", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An order with this orderId exists (whoever owns it, whatever If-Match says; nothing else is said about it)", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        PayloadTooLarge, UnsupportedMediaType, Unprocessable, Unavailable, InternalError,
    ),
    security(("bearer" = []))
)]
async fn create_order(
    State(service): State<CommandService>,
    caller: Caller,
    parts: Parts,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let dto: CreateOrderBody = typed(&body)?;
    let order_id = dto.order_id.unwrap_or_else(Uuid::now_v7);
    let mut missing = Vec::new();
    for (field, present) in [
        ("customerId", dto.customer_id.is_some()),
        ("currency", dto.currency.is_some()),
        ("items", dto.items.is_some()),
    ] {
        if !present {
            missing.push(order_domain::FieldError::new(field, "is required"));
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    let items: Vec<LineInput> = dto
        .items
        .unwrap_or_default()
        .into_iter()
        .map(Into::into)
        .collect();
    let command = Command::create_order(
        order_id,
        dto.customer_id.as_deref().unwrap_or_default(),
        dto.currency.as_deref().unwrap_or_default(),
        &items,
    )
    .map_err(ApiError::validation)?;
    run(
        &service,
        &caller,
        &parts,
        order_id,
        &body,
        Intent::Create(command),
    )
    .await
}

/// Add an item (merges into an existing line of the same SKU, name and price).
#[utoipa::path(post, path = "/api/v1/orders/{id}/items", tag = "commands",
    request_body(content = ItemBody, content_type = "application/json"),
    params(OrderIdParam, IfMatch, IdempotencyKey),
    responses((status = 200, description = "The order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.", body = OrderView,
            headers(
                ("ETag" = String, description = "The order's new version, e.g. `\"2\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            )),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Conflict, PreconditionFailed,
        PayloadTooLarge, UnsupportedMediaType, Unprocessable, Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn add_item(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    parts: Parts,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let input: LineInput = typed::<ItemBody>(&body)?.into();
    let intent = change("AddItem", ChangeKind::OwnerOrStaff, move |order| {
        let line = validate_line(&input, order.currency, "").map_err(ApiError::validation)?;
        Ok(Command::AddItem { line })
    });
    run(&service, &caller, &parts, id, &body, intent).await
}

/// Remove the line of a SKU. The last line cannot be removed.
#[utoipa::path(delete, path = "/api/v1/orders/{id}/items/{sku}", tag = "commands",
    params(OrderIdParam, ("sku" = String, Path, description = "The SKU of the line to remove"),
        IfMatch, IdempotencyKey),
    responses((status = 200, description = "The order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.", body = OrderView,
            headers(
                ("ETag" = String, description = "The order's new version, e.g. `\"2\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            )),
        BadRequest, Unauthorized, Forbidden,
        (status = 404, description = "No such order (or one the caller may not see, answered identically), or no line with that SKU", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Conflict, PreconditionFailed,
        (status = 422, description = "The Idempotency-Key was used with another request", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn remove_item(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    PathParams(params): PathParams,
    parts: Parts,
) -> Result<Response, ApiError> {
    let sku = path_segment(&params, "sku").unwrap_or_default();
    let intent = change("RemoveItem", ChangeKind::OwnerOrStaff, move |_| {
        Ok(Command::RemoveItem { sku: sku.clone() })
    });
    let body = serde_json::Value::Null;
    run(&service, &caller, &parts, id, &body, intent).await
}

/// Approve an order (ops, admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/approve", tag = "commands",
    request_body(content = ReasonBody, content_type = "application/json", description = "Optional: may be empty"),
    params(OrderIdParam, IfMatch, IdempotencyKey),
    responses((status = 200, description = "The order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.", body = OrderView,
            headers(
                ("ETag" = String, description = "The order's new version, e.g. `\"2\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            ),
            links(
                ("ShipOrder" = (operation_id = "ship_order", parameters(("id" = "$response.body#/orderId")))),
            )),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Conflict, PreconditionFailed,
        PayloadTooLarge, UnsupportedMediaType, Unprocessable, Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn approve_order(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    parts: Parts,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let dto: ReasonBody = typed(&body)?;
    let reason = Command::optional_reason(dto.reason.as_deref()).map_err(ApiError::validation)?;
    let intent = change("ApproveOrder", ChangeKind::StaffOnly, move |_| {
        Ok(Command::ApproveOrder {
            reason: reason.clone(),
        })
    });
    run(&service, &caller, &parts, id, &body, intent).await
}

/// Reject an order with a reason (ops, admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/reject", tag = "commands",
    request_body(content = RejectBody, content_type = "application/json"),
    params(OrderIdParam, IfMatch, IdempotencyKey),
    responses((status = 200, description = "The order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.", body = OrderView,
            headers(
                ("ETag" = String, description = "The order's new version, e.g. `\"2\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            )),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Conflict, PreconditionFailed,
        PayloadTooLarge, UnsupportedMediaType, Unprocessable, Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn reject_order(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    parts: Parts,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let dto: RejectBody = typed(&body)?;
    let command = Command::reject(dto.reason.as_deref()).map_err(ApiError::validation)?;
    let intent = change("RejectOrder", ChangeKind::StaffOnly, move |_| {
        Ok(command.clone())
    });
    run(&service, &caller, &parts, id, &body, intent).await
}

/// Ship an approved order (ops, admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/ship", tag = "commands",
    request_body(content = ShipBody, content_type = "application/json"),
    params(OrderIdParam, IfMatch, IdempotencyKey),
    responses((status = 200, description = "The order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.", body = OrderView,
            headers(
                ("ETag" = String, description = "The order's new version, e.g. `\"2\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            )),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Conflict, PreconditionFailed,
        PayloadTooLarge, UnsupportedMediaType, Unprocessable, Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn ship_order(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    parts: Parts,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let dto: ShipBody = typed(&body)?;
    let command = Command::ship(dto.tracking_number.as_deref(), dto.carrier.as_deref())
        .map_err(ApiError::validation)?;
    let intent = change("ShipOrder", ChangeKind::StaffOnly, move |_| {
        Ok(command.clone())
    });
    run(&service, &caller, &parts, id, &body, intent).await
}

/// Cancel an order that is not shipped, rejected or canceled.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "commands",
    request_body(content = ReasonBody, content_type = "application/json", description = "Optional: may be empty"),
    params(OrderIdParam, IfMatch, IdempotencyKey),
    responses((status = 200, description = "The order as the write side now knows it. A repeat with the same Idempotency-Key and request answers the same.", body = OrderView,
            headers(
                ("ETag" = String, description = "The order's new version, e.g. `\"2\"`"),
                ("X-Consistency-Token" = String, description = "Send it with a query to read this write"),
                ("Idempotency-Replayed" = String, description = "`true` when this is the stored answer to an earlier identical request"),
            )),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Conflict, PreconditionFailed,
        PayloadTooLarge, UnsupportedMediaType, Unprocessable, Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn cancel_order(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    parts: Parts,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let dto: ReasonBody = typed(&body)?;
    let reason = Command::optional_reason(dto.reason.as_deref()).map_err(ApiError::validation)?;
    let intent = change("CancelOrder", ChangeKind::OwnerOrStaff, move |_| {
        Ok(Command::CancelOrder {
            reason: reason.clone(),
        })
    });
    run(&service, &caller, &parts, id, &body, intent).await
}
