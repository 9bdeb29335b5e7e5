//! HTTP routes of the command side, with their OpenAPI descriptions.
//!
//! Bodies are read as JSON values first (malformed JSON → 400), then typed
//! (wrong JSON types → 400), then validated by the domain (missing or invalid
//! values → 422 with every field error).

use crate::{ChangeKind, CommandService, Fingerprint, Intent};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use order_domain::{Command, LineInput, validate_line};
use order_http::{
    ApiError, Caller, JsonBody, OptionalJsonBody, OrderIdPath, PathParams, path_segment,
};
use order_read_model::OrderView;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
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

/// One order line as sent by clients.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    /// 1–64 characters, unique within the order.
    #[schema(example = "SKU-1")]
    sku: Option<String>,
    /// 1–200 characters.
    #[schema(example = "Blue mug")]
    product_name: Option<String>,
    /// 1–10 000.
    #[schema(example = 2)]
    quantity: Option<i64>,
    /// Decimal string in the order's currency, > 0, no more fraction digits than it has.
    #[schema(example = "12.50")]
    unit_price: Option<String>,
}

impl From<ItemBody> for LineInput {
    fn from(b: ItemBody) -> LineInput {
        LineInput {
            sku: b.sku,
            product_name: b.product_name,
            quantity: b.quantity,
            unit_price: b.unit_price,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderBody {
    /// The owning customer; customers may only use their own subject.
    customer_id: Option<String>,
    /// ISO 4217 code known to the platform.
    #[schema(example = "USD")]
    currency: Option<String>,
    /// 1 to 100 lines with distinct SKUs.
    items: Option<Vec<ItemBody>>,
    /// Optional client-chosen id; generated when absent.
    order_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct ReasonBody {
    reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
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
    serde_json::from_value(value.clone())
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
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
#[utoipa::path(post, path = "/api/v1/orders", tag = "commands",
    request_body = CreateOrderBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and request return the first response."),
    ),
    responses(
        (status = 201, description = "Created; `Location`, `ETag` and `X-Consistency-Token` headers", body = OrderView),
        (status = 400, description = "Malformed JSON or wrong types"),
        (status = 401, description = "Missing or invalid token"),
        (status = 403, description = "Not allowed"),
        (status = 409, description = "An order with this id exists"),
        (status = 422, description = "Invalid fields, or idempotency key reused"),
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
    request_body = ItemBody,
    params(("id" = Uuid, Path, description = "Order id"),
        ("If-Match" = Option<String>, Header, description = "Expected version, e.g. \"3\""),
        ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404), (status = 409), (status = 412), (status = 422)),
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
    params(("id" = Uuid, Path), ("sku" = String, Path),
        ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404, description = "Unknown order or SKU"), (status = 409), (status = 412)),
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
    request_body(content = ReasonBody, description = "Optional; may be empty"),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 403), (status = 404), (status = 409), (status = 412)),
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
    request_body = ReasonBody,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 403), (status = 404), (status = 409), (status = 412), (status = 422)),
    security(("bearer" = []))
)]
async fn reject_order(
    State(service): State<CommandService>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    parts: Parts,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let dto: ReasonBody = typed(&body)?;
    let command = Command::reject(dto.reason.as_deref()).map_err(ApiError::validation)?;
    let intent = change("RejectOrder", ChangeKind::StaffOnly, move |_| {
        Ok(command.clone())
    });
    run(&service, &caller, &parts, id, &body, intent).await
}

/// Ship an approved order (ops, admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/ship", tag = "commands",
    request_body = ShipBody,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 403), (status = 404), (status = 409), (status = 412), (status = 422)),
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
    request_body(content = ReasonBody, description = "Optional; may be empty"),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 403), (status = 404), (status = 409), (status = 412)),
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
