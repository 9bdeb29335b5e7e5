//! The query side: every `GET` of DESIGN.md §4.2.
//!
//! Lookups, lists, search and stats come from the read model; an order's
//! history and its state at a past version or time come from the event store
//! itself (rebuilt with the domain's `evolve`), so they are always exact.
//! Neither holds a whole stream in memory: the history is served in pages
//! (`limit`, `after` → `nextAfter`) and a past state is folded from the events
//! a chunk at a time.
//! A request carrying `X-Consistency-Token` is answered only once the read
//! model has applied every write the token covers (§4.3).

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use order_auth::Principal;
use order_domain::{OrderStatus, evolve};
use order_event_store::{ConsistencyToken, EventStore, RecordedEvent, TokenError};
use order_http::openapi::{
    BadRequest, Consistency, Forbidden, InternalError, OrderIdParam, OrderNotFound, Unauthorized,
    Unavailable, parameter,
};
use order_http::{
    ApiError, CONSISTENCY_TIMEOUT_MS, CONSISTENCY_TOKEN, Caller, OrderIdPath, QueryParams,
    parse_digits,
};
use order_read_model::{
    OrderFilter, OrderView, Page, PageRequest, Projector, ReadError, ReadStore, SortOrder, Stats,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod history;

use history::domain_event;
pub use history::{
    AtParams, AtQuery, DEFAULT_HISTORY_LIMIT, History, HistoryEntry, HistoryParams,
    MAX_HISTORY_LIMIT,
};

/// Longest search text, in characters.
const MAX_SEARCH_CHARS: usize = 200;
/// How long a query waits for its consistency token when the client does not say.
const DEFAULT_WAIT: Duration = Duration::from_millis(5000);
/// The longest wait a client may ask for.
const MAX_WAIT_MS: u64 = order_http::MAX_CONSISTENCY_WAIT_MS;

/// Reports whether the read model has applied everything a token covers.
#[async_trait]
pub trait Freshness: Send + Sync + 'static {
    /// True once the read model covers `token`; false when `timeout` passes first.
    async fn wait_for(&self, token: ConsistencyToken, timeout: Duration) -> bool;
}

#[async_trait]
impl Freshness for Projector {
    async fn wait_for(&self, token: ConsistencyToken, timeout: Duration) -> bool {
        Projector::wait_for(self, token, timeout).await
    }
}

/// Dependencies of the query service.
#[derive(Clone)]
pub struct QueryService {
    pub read: Arc<dyn ReadStore>,
    pub events: Arc<dyn EventStore>,
    pub freshness: Arc<dyn Freshness>,
}

/// The query routes, under `/api/v1`.
pub fn router(service: QueryService) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(search_orders))
        .routes(routes!(order_stats))
        .routes(routes!(get_order))
        .routes(routes!(history::order_events))
        .routes(routes!(history::order_at))
        .with_state(service)
}

/// The query of list, search and stats, as read. Each route accepts only some of
/// these (the others are 400); what each documents is [`ListQuery`],
/// [`SearchQuery`] and [`StatsQuery`].
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    customer_id: Option<String>,
    status: Option<String>,
    created_from: Option<String>,
    created_to: Option<String>,
    sort: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
}

fn query(name: &str, required: bool, description: &str, schema: serde_json::Value) -> Parameter {
    parameter(name, ParameterIn::Query, required, description, schema)
}

/// The filters of list, search and stats.
fn filters() -> Vec<Parameter> {
    let time = serde_json::json!({"type": "string", "format": "date-time"});
    vec![
        query(
            "customerId",
            false,
            "Only this customer's orders (a customer may name only itself; it sees only its own anyway)",
            serde_json::json!({"type": "string"}),
        ),
        query(
            "status",
            false,
            "Only orders in this status",
            serde_json::json!({"type": "string", "enum": ["CREATED", "APPROVED", "REJECTED", "SHIPPED", "CANCELED"]}),
        ),
        query(
            "createdFrom",
            false,
            "RFC 3339: orders created at or after",
            time.clone(),
        ),
        query("createdTo", false, "RFC 3339: orders created before", time),
    ]
}

/// Sorting and keyset pagination of list and search.
fn paging() -> Vec<Parameter> {
    vec![
        query(
            "sort",
            false,
            "Default `createdAt:desc`",
            serde_json::json!({"type": "string", "enum": ["createdAt:desc", "createdAt:asc"]}),
        ),
        query(
            "limit",
            false,
            "Page size, default 50",
            serde_json::json!({"type": "integer", "minimum": 1, "maximum": 200}),
        ),
        query(
            "cursor",
            false,
            "The `nextCursor` of the previous page, for the same sort; opaque (anything else is 400)",
            serde_json::json!({"type": "string"}),
        ),
    ]
}

/// The query of `GET /orders`.
pub struct ListQuery;
impl IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        [filters(), paging()].concat()
    }
}

/// The query of `GET /orders/search`.
pub struct SearchQuery;
impl IntoParams for SearchQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = vec![query(
            "q",
            true,
            "Words to find (prefixes of words of product names and SKUs, all required), or an exact order or customer id",
            serde_json::json!({
                "type": "string", "minLength": 1, "maxLength": MAX_SEARCH_CHARS,
                // Not only white space (what `str::trim` removes).
                "pattern": r"[^\t\n\u000b\u000c\r\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
            }),
        )];
        params.extend(filters());
        params.extend(paging());
        params
    }
}

/// The query of `GET /orders/stats`.
pub struct StatsQuery;
impl IntoParams for StatsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        filters()
    }
}

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{field} must be an RFC 3339 time such as 2026-01-31T12:00:00Z, got {v:?}"),
                    )
                })
        })
        .transpose()
}

impl ListParams {
    /// The filter, scoped to what `caller` may read.
    fn filter(&self, caller: &Principal) -> Result<OrderFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                OrderStatus::parse(s).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("status must be one of CREATED, APPROVED, REJECTED, SHIPPED, CANCELED, got {s:?}"),
                    )
                })
            })
            .transpose()?;
        let customer_id = if caller.may_read_any_order() {
            self.customer_id.clone()
        } else if caller.has(order_auth::Role::Customer) {
            match &self.customer_id {
                Some(other) if *other != caller.subject => {
                    return Err(ApiError::forbidden(
                        "customers may only read their own orders",
                    ));
                }
                _ => Some(caller.subject.clone()),
            }
        } else {
            return Err(ApiError::forbidden(
                "your roles do not allow reading orders",
            ));
        };
        Ok(OrderFilter {
            customer_id,
            status,
            created_from: parse_time("createdFrom", self.created_from.as_deref())?,
            created_to: parse_time("createdTo", self.created_to.as_deref())?,
            text: None,
        })
    }

    fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.limit.as_deref() {
            None => 50,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!("limit must be an integer from 1 to 200, got {text:?}"),
                    ));
                }
            },
        };
        let sort = match self.sort.as_deref() {
            None | Some("createdAt:desc") => SortOrder::Desc,
            Some("createdAt:asc") => SortOrder::Asc,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("sort must be createdAt:desc or createdAt:asc, got {other:?}"),
                ));
            }
        };
        Ok(PageRequest {
            limit,
            sort,
            cursor: self.cursor.clone(),
        })
    }
}

fn read_error(e: ReadError) -> ApiError {
    match e {
        ReadError::InvalidCursor => ApiError::bad_request(
            "invalid_cursor",
            "cursor is not a nextCursor this API returned for the same sort",
        ),
        ReadError::InvalidQuery(why) => ApiError::bad_request("invalid_query", why),
        ReadError::Unavailable(_) | ReadError::OtherStore { .. } => ApiError::unavailable(e),
        ReadError::Corrupt(_) => ApiError::internal(e),
    }
}

impl QueryService {
    /// Waits until the read model covers the request's consistency token, if any.
    /// Both headers are checked whenever they are sent.
    async fn await_consistency(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let timeout = match headers.get(CONSISTENCY_TIMEOUT_MS) {
            None => DEFAULT_WAIT,
            Some(v) => match v.to_str().ok().and_then(parse_digits) {
                Some(ms) if ms <= MAX_WAIT_MS => Duration::from_millis(ms),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_consistency_timeout",
                        format!(
                            "X-Consistency-Timeout-Ms must be an integer from 0 to {MAX_WAIT_MS}"
                        ),
                    ));
                }
            },
        };
        // An empty header is no condition, as for If-Match (`curl -H 'X-Consistency-Token;'`).
        let Some(token) = headers.get(CONSISTENCY_TOKEN).filter(|t| !t.is_empty()) else {
            return Ok(());
        };
        let token = token
            .to_str()
            .map_err(|_| TokenError::Malformed)
            .and_then(|t| ConsistencyToken::from_header(t, self.events.store_id()))
            .map_err(|e| match e {
                TokenError::Malformed => ApiError::bad_request(
                    "invalid_consistency_token",
                    "X-Consistency-Token must be a token returned by a command",
                ),
                TokenError::OtherStore => ApiError::bad_request(
                    "foreign_consistency_token",
                    "X-Consistency-Token comes from another event store than the one this \
                     service reads; use a token returned by a command of this deployment",
                ),
            })?;
        if self.freshness.wait_for(token, timeout).await {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "consistency_timeout",
                "the read model has not caught up with the consistency token yet; retry",
            )
            .with_header(header::RETRY_AFTER, "1"))
        }
    }

    /// One page of orders matching `filter`, once the read model is fresh enough.
    async fn page(
        &self,
        filter: &OrderFilter,
        params: &ListParams,
        headers: &HeaderMap,
    ) -> Result<axum::Json<Page>, ApiError> {
        let page = params.page()?;
        self.await_consistency(headers).await?;
        let page = self.read.list(filter, &page).await.map_err(read_error)?;
        Ok(axum::Json(page))
    }

    /// Checks `caller` may read order `order_id`, whose first event is `first`
    /// when the caller already read it (saves a query); 404 when there is no such order.
    async fn authorise(
        &self,
        caller: &Principal,
        order_id: Uuid,
        first: Option<&RecordedEvent>,
    ) -> Result<(), ApiError> {
        may_read_orders(caller)?;
        let fetched;
        let first = match first {
            Some(r) if r.version == 1 => r,
            _ => {
                fetched = self.events.read_stream(order_id, 0, Some(1)).await?;
                fetched.first().ok_or_else(not_found)?
            }
        };
        // The customer is fixed at creation: version 1 alone says who owns the order.
        // Another customer's order is answered exactly as an unknown one (§4.5).
        match evolve(None, &domain_event(first)?) {
            Some(order) if caller.may_read_for(&order.customer_id) => Ok(()),
            _ => Err(not_found()),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("order_not_found", "the order does not exist")
}

/// Refuses callers whose roles read no order at all (403: it depends on no order).
fn may_read_orders(caller: &Principal) -> Result<(), ApiError> {
    if caller.may_read_any_order() || caller.has(order_auth::Role::Customer) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "your roles do not allow reading orders",
        ))
    }
}

fn with_etag(body: impl IntoResponse, version: u64) -> Response {
    let mut response = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Get an order from the read model.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "queries",
    params(OrderIdParam, Consistency),
    responses((status = 200, body = OrderView, headers(("ETag" = String, description = "The order's version, e.g. `\"3\"`"))),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn get_order(
    State(service): State<QueryService>,
    Caller(caller): Caller,
    OrderIdPath(id): OrderIdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    may_read_orders(&caller)?;
    service.await_consistency(&headers).await?;
    // Another customer's order is answered exactly as an unknown one (§4.5).
    let order = service
        .read
        .get(id)
        .await
        .map_err(read_error)?
        .filter(|order| caller.may_read_for(&order.customer_id))
        .ok_or_else(not_found)?;
    let version = order.version;
    Ok(with_etag(axum::Json(order), version))
}

/// List orders with filters and keyset pagination.
#[utoipa::path(get, path = "/api/v1/orders", tag = "queries",
    params(ListQuery, Consistency),
    responses((status = 200, body = Page),
        BadRequest, Unauthorized,
        (status = 403, description = "The caller's roles read no orders, or a customer named another customerId", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn list_orders(
    State(service): State<QueryService>,
    Caller(caller): Caller,
    headers: HeaderMap,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<axum::Json<Page>, ApiError> {
    if params.q.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is only accepted by /api/v1/orders/search",
        ));
    }
    let filter = params.filter(&caller)?;
    service.page(&filter, &params, &headers).await
}

/// Full-text search over product names and SKUs, plus exact order and customer ids.
#[utoipa::path(get, path = "/api/v1/orders/search", tag = "queries",
    params(SearchQuery, Consistency),
    responses((status = 200, body = Page),
        BadRequest, Unauthorized,
        (status = 403, description = "The caller's roles read no orders, or a customer named another customerId", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn search_orders(
    State(service): State<QueryService>,
    Caller(caller): Caller,
    headers: HeaderMap,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<axum::Json<Page>, ApiError> {
    let mut filter = params.filter(&caller)?;
    // The length counts what was sent, as the documented `maxLength` does.
    let raw = params.q.as_deref().unwrap_or_default();
    let text = raw.trim();
    if text.is_empty() || raw.chars().count() > MAX_SEARCH_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is required: 1 to 200 characters to search for",
        ));
    }
    filter.text = Some(text.to_string());
    service.page(&filter, &params, &headers).await
}

/// Counts per status, and per currency the order count and the sum of live totals.
#[utoipa::path(get, path = "/api/v1/orders/stats", tag = "queries",
    params(StatsQuery, Consistency),
    responses((status = 200, body = Stats),
        BadRequest, Unauthorized,
        (status = 403, description = "Only analysts, ops and admins read stats", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable, InternalError),
    security(("bearer" = []))
)]
async fn order_stats(
    State(service): State<QueryService>,
    Caller(caller): Caller,
    headers: HeaderMap,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<axum::Json<Stats>, ApiError> {
    if !caller.may_read_any_order() {
        return Err(ApiError::forbidden(
            "stats are for analysts, ops and admins",
        ));
    }
    if params.q.is_some()
        || params.cursor.is_some()
        || params.limit.is_some()
        || params.sort.is_some()
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "stats accept only customerId, status, createdFrom and createdTo",
        ));
    }
    let filter = params.filter(&caller)?;
    service.await_consistency(&headers).await?;
    let stats = service.read.stats(&filter).await.map_err(read_error)?;
    Ok(axum::Json(stats))
}
