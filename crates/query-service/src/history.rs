//! An order's past, straight from the event store: its history one page at a
//! time (`/orders/{id}/events`) and its state at a version or instant
//! (`/orders/{id}/at`), folded from the events a chunk at a time so that a long
//! stream is never held in memory whole.

use crate::{QueryService, may_read_orders, not_found, parse_time, query, with_etag};
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use order_domain::{Order, evolve};
use order_event_store::{EventStore, RecordedEvent};
use order_http::openapi::{
    BadRequest, Forbidden, InternalError, OrderIdParam, OrderNotFound, Unauthorized, Unavailable,
};
use order_http::{ApiError, Caller, OrderIdPath, QueryParams, parse_digits};
use order_read_model::OrderView;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Where `/at` rebuilds the order to.
#[derive(Clone, Copy, Debug)]
enum Point {
    Version(u64),
    Time(DateTime<Utc>),
}

/// The order's state at `point` (`None`: it did not exist yet), folded from
/// its events `chunk` at a time so that a long stream is never held in memory whole. A
/// version past the end gives the current order. `check` sees the order
/// as created (version 1) before anything else is done: an order the caller
/// may not read is refused whatever the point.
async fn state_at(
    events: &dyn EventStore,
    order_id: Uuid,
    point: Point,
    chunk: u64,
    check: impl Fn(&Order) -> Result<(), ApiError>,
) -> Result<Option<Order>, ApiError> {
    let chunk = chunk.max(1);
    let mut state: Option<Order> = None;
    let mut after = 0u64;
    loop {
        let up_to = match point {
            Point::Version(v) => v.min(after.saturating_add(chunk)),
            Point::Time(_) => after.saturating_add(chunk),
        };
        if up_to <= after {
            return Ok(state);
        }
        let batch = events.read_stream(order_id, after, Some(up_to)).await?;
        if after == 0 {
            let first = batch.first().ok_or_else(not_found)?;
            evolve(None, &domain_event(first)?)
                .as_ref()
                .map_or_else(|| Err(not_found()), &check)?;
        }
        let complete = batch.len() as u64 == up_to - after;
        for r in &batch {
            if let Point::Time(t) = point
                && r.occurred_at > t
            {
                return Ok(state);
            }
            state = evolve(state, &domain_event(r)?);
            after = r.version;
        }
        if !complete {
            return Ok(state);
        }
    }
}

/// A stored event as the domain's event, for `evolve` (upcast if stored in an older layout).
pub(crate) fn domain_event(r: &RecordedEvent) -> Result<order_domain::Event, ApiError> {
    r.decode().map_err(ApiError::internal)
}

/// One event of an order's history.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    version: u64,
    global_position: i64,
    occurred_at: DateTime<Utc>,
    actor: String,
    correlation_id: String,
    causation_id: Uuid,
    /// The event's data as stored. Unlike the rest of the API, amounts here are
    /// integers in the currency's minor unit: `"unitPrice": 1250` in a USD order
    /// is 12.50 dollars (the order's bodies say `"12.50"`).
    #[schema(example = json!({"line": {"sku": "MUG-1", "productName": "Blue mug", "quantity": 2, "unitPrice": 1250}, "currency": "USD"}))]
    data: serde_json::Value,
}

/// One page of an order's history.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    order_id: Uuid,
    /// Oldest first: the events with a version greater than `after`, at most `limit` of them.
    events: Vec<HistoryEntry>,
    /// Pass as `after` to get the next page; `null` when this page holds the latest event.
    next_after: Option<u64>,
}

/// Events per history page when `limit` is not given.
pub const DEFAULT_HISTORY_LIMIT: u64 = 100;
/// The largest history page.
pub const MAX_HISTORY_LIMIT: u64 = 1000;
/// How many events `/at` reads from the store at a time while rebuilding.
const REBUILD_CHUNK: u64 = 500;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Events per page: 1–1000, default 100.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only events with a version greater than this: 0 (the default) starts at the
    /// first event; pass the previous page's `nextAfter` to continue.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_u64)]
    after: Option<String>,
}

impl HistoryParams {
    /// `(limit, after)`, validated.
    fn parse(&self) -> Result<(u64, u64), ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_HISTORY_LIMIT,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!(
                            "limit must be an integer from 1 to {MAX_HISTORY_LIMIT}, got {text:?}"
                        ),
                    )
                })?,
        };
        let after = match self.after.as_deref() {
            None => 0,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!(
                            "after must be a version (an integer from 0), such as the nextAfter of the previous page, got {text:?}"
                        ),
                    )
                })?,
        };
        Ok((limit, after))
    }
}

/// The order's event history, oldest first, straight from the event store, one
/// page at a time: follow `nextAfter` until it is `null`.
#[utoipa::path(get, path = "/api/v1/orders/{id}/events", tag = "queries",
    params(OrderIdParam, HistoryParams),
    responses((status = 200, body = History),
        BadRequest, Unauthorized, Forbidden, OrderNotFound, Unavailable, InternalError),
    security(("bearer" = []))
)]
pub(crate) async fn order_events(
    State(service): State<QueryService>,
    Caller(caller): Caller,
    OrderIdPath(id): OrderIdPath,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<axum::Json<History>, ApiError> {
    let (limit, after) = params.parse()?;
    // One event more than the page: whether it exists says if there is a next page.
    let up_to = after.saturating_add(limit + 1).min(i64::MAX as u64);
    let mut recorded = service.events.read_stream(id, after, Some(up_to)).await?;
    service.authorise(&caller, id, recorded.first()).await?;
    let more = recorded.len() as u64 > limit;
    recorded.truncate(limit as usize);
    let next_after = if more {
        recorded.last().map(|r| r.version)
    } else {
        None
    };
    let events = recorded
        .into_iter()
        .map(|r| Ok((domain_event(&r)?, r)))
        .collect::<Result<Vec<_>, ApiError>>()?
        .into_iter()
        .map(|(e, r)| HistoryEntry {
            event_id: r.event_id,
            event_type: r.event_type,
            version: r.version,
            global_position: r.global_position,
            occurred_at: r.occurred_at,
            actor: r.actor,
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            // The decoded event, so clients always see today's layout even for
            // events stored in an older one (upcast on the way out).
            data: e.payload.data(),
        })
        .collect();
    Ok(axum::Json(History {
        order_id: id,
        events,
        next_after,
    }))
}

/// The query of `order_at`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtParams {
    version: Option<String>,
    time: Option<String>,
}

/// The query of `order_at`, as documented.
pub struct AtQuery;
impl IntoParams for AtQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query(
                "version",
                false,
                "Exactly one of version and time (else 400). The order at this version (1 = as created); 404 past its last version",
                serde_json::json!({"type": "integer", "minimum": 1}),
            ),
            query(
                "time",
                false,
                "Exactly one of version and time (else 400). RFC 3339: the order as it was at that instant; 404 if it did not exist yet",
                serde_json::json!({"type": "string", "format": "date-time"}),
            ),
        ]
    }
}

/// The order's state at a past version or time, rebuilt from its events.
///
/// Exactly one of `version` and `time` (400 otherwise): a dependency between
/// parameters that OpenAPI cannot state, so the description says it.
#[utoipa::path(get, path = "/api/v1/orders/{id}/at", tag = "queries",
    params(OrderIdParam, AtQuery),
    responses((status = 200, body = OrderView, headers(("ETag" = String, description = "The order's version, e.g. `\"3\"`"))),
        BadRequest, Unauthorized, Forbidden,
        (status = 404, description = "No such order (or one the caller may not see, answered identically), or it had no such version, or did not exist yet at that time", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable, InternalError),
    security(("bearer" = []))
)]
pub(crate) async fn order_at(
    State(service): State<QueryService>,
    Caller(caller): Caller,
    OrderIdPath(id): OrderIdPath,
    QueryParams(params): QueryParams<AtParams>,
) -> Result<Response, ApiError> {
    let point = match (params.version.as_deref(), params.time.as_deref()) {
        (Some(v), None) => {
            Point::Version(parse_digits(v).filter(|v| *v >= 1).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("version must be a positive integer, got {v:?}"),
                )
            })?)
        }
        (None, Some(t)) => Point::Time(parse_time("time", Some(t))?.unwrap_or_default()),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "give exactly one of version=N or time=RFC3339",
            ));
        }
    };
    // Another customer's order is answered exactly as an unknown one (§4.5).
    may_read_orders(&caller)?;
    let check = |order: &Order| {
        if caller.may_read_for(&order.customer_id) {
            Ok(())
        } else {
            Err(not_found())
        }
    };
    let state = state_at(service.events.as_ref(), id, point, REBUILD_CHUNK, check).await?;
    match (state, point) {
        (Some(order), Point::Version(v)) if order.version == v => Ok(with_etag(
            axum::Json(OrderView::from(&order)),
            order.version,
        )),
        (Some(order), Point::Time(_)) => Ok(with_etag(
            axum::Json(OrderView::from(&order)),
            order.version,
        )),
        // Short of `v`: the stream ended, so this is the current version.
        (state, Point::Version(v)) => Err(ApiError::not_found(
            "version_not_found",
            format!(
                "the order has no version {v}; it is at version {}",
                state.map_or(0, |o| o.version)
            ),
        )),
        (None, Point::Time(_)) => Err(ApiError::not_found(
            "version_not_found",
            "the order did not exist yet at that time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use axum::http::StatusCode;
    use chrono::TimeZone;
    use order_domain::{Currency, EventPayload, Line, replay};
    use order_event_store::{
        AppendRequest, Appended, Backlog, ConsistencyToken, LogBatch, LogCursor, Snapshot, StoreId,
        StoredResponse,
    };
    use std::sync::Mutex;

    /// One stream in memory; remembers the largest read it served.
    struct OneStream {
        id: Uuid,
        events: Vec<RecordedEvent>,
        largest_read: Mutex<usize>,
    }

    fn t(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + second, 0).unwrap()
    }

    fn line(sku: &str) -> Line {
        Line {
            sku: sku.into(),
            product_name: format!("Product {sku}"),
            quantity: 1,
            unit_price: 250,
        }
    }

    impl OneStream {
        /// An order of `len` events: created, then B added and removed in turn,
        /// event `v` occurring at `t(10 v)`.
        fn new(len: u64) -> (OneStream, Vec<order_domain::Event>) {
            let id = Uuid::new_v4();
            let usd = Currency::parse("USD").unwrap();
            let domain: Vec<order_domain::Event> = (1..=len)
                .map(|v| order_domain::Event {
                    payload: match v {
                        1 => EventPayload::OrderCreated {
                            order_id: id,
                            customer_id: "alice".into(),
                            currency: usd,
                            lines: vec![line("A")],
                        },
                        v if v % 2 == 0 => EventPayload::ItemAdded {
                            line: line("B"),
                            currency: usd,
                        },
                        _ => EventPayload::ItemRemoved { sku: "B".into() },
                    },
                    occurred_at: t(10 * v as i64),
                    actor: "alice".into(),
                })
                .collect();
            let events = domain
                .iter()
                .zip(1..)
                .map(|(e, v)| RecordedEvent {
                    event_id: Uuid::new_v4(),
                    stream_id: id,
                    version: v,
                    global_position: v as i64,
                    event_type: e.payload.event_type().into(),
                    schema_version: EventPayload::SCHEMA_VERSION,
                    data: e.payload.data(),
                    occurred_at: e.occurred_at,
                    actor: e.actor.clone(),
                    correlation_id: "test".into(),
                    causation_id: Uuid::new_v4(),
                    traceparent: None,
                    idempotency_key: None,
                })
                .collect();
            let store = OneStream {
                id,
                events,
                largest_read: Mutex::new(0),
            };
            (store, domain)
        }
    }

    #[async_trait]
    impl EventStore for OneStream {
        async fn read_stream(
            &self,
            stream_id: Uuid,
            after: u64,
            up_to: Option<u64>,
        ) -> order_event_store::Result<Vec<RecordedEvent>> {
            let read: Vec<RecordedEvent> = self
                .events
                .iter()
                .filter(|e| e.stream_id == stream_id)
                .filter(|e| e.version > after && up_to.is_none_or(|u| e.version <= u))
                .cloned()
                .collect();
            let mut largest = self.largest_read.lock().unwrap();
            *largest = (*largest).max(read.len());
            Ok(read)
        }
        async fn append(&self, _: AppendRequest) -> order_event_store::Result<Appended> {
            Err(order_event_store::StoreError::Unavailable(
                "read-only".into(),
            ))
        }
        async fn read_log(&self, _: LogCursor, _: usize) -> order_event_store::Result<LogBatch> {
            Err(order_event_store::StoreError::Unavailable(
                "not used by the query side".into(),
            ))
        }
        async fn find_response(
            &self,
            _: &str,
        ) -> order_event_store::Result<Option<StoredResponse>> {
            Ok(None)
        }
        async fn load_snapshot(&self, _: Uuid) -> order_event_store::Result<Option<Snapshot>> {
            Ok(None)
        }
        async fn save_snapshot(&self, _: &Snapshot) -> order_event_store::Result<()> {
            Ok(())
        }
        async fn current_token(&self) -> order_event_store::Result<ConsistencyToken> {
            Ok(ConsistencyToken(0))
        }
        async fn ping(&self) -> order_event_store::Result<()> {
            Ok(())
        }
        async fn backlog(&self, _: LogCursor) -> order_event_store::Result<Backlog> {
            Err(order_event_store::StoreError::Unavailable(
                "not used by the query side".into(),
            ))
        }
        fn store_id(&self) -> StoreId {
            StoreId(Uuid::nil())
        }
        fn kind(&self) -> &'static str {
            "memory"
        }
    }

    fn anyone(_: &Order) -> Result<(), ApiError> {
        Ok(())
    }

    #[tokio::test]
    async fn past_states_are_folded_a_chunk_at_a_time_and_equal_a_full_replay() {
        const CHUNK: u64 = 7;
        let (store, domain) = OneStream::new(45);
        for v in 1..=45u64 {
            let at = state_at(&store, store.id, Point::Version(v), CHUNK, anyone)
                .await
                .unwrap();
            assert_eq!(at, replay(&domain[..v as usize]), "version {v}");
            let at = state_at(
                &store,
                store.id,
                Point::Time(t(10 * v as i64 + 5)),
                CHUNK,
                anyone,
            )
            .await
            .unwrap();
            assert_eq!(at, replay(&domain[..v as usize]), "just after version {v}");
        }
        let past_the_end = state_at(&store, store.id, Point::Version(1000), CHUNK, anyone)
            .await
            .unwrap();
        assert_eq!(past_the_end.map(|o| o.version), Some(45));
        let before = state_at(&store, store.id, Point::Time(t(0)), CHUNK, anyone)
            .await
            .unwrap();
        assert_eq!(before, None, "nothing before the creation");
        assert!(
            *store.largest_read.lock().unwrap() <= CHUNK as usize,
            "no read returned more than a chunk: {}",
            store.largest_read.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn a_refused_caller_is_refused_whatever_the_point_and_unknown_orders_are_404() {
        let (store, _) = OneStream::new(3);
        let refuse = |_: &Order| Err(ApiError::forbidden("not yours"));
        for point in [Point::Version(2), Point::Time(t(0)), Point::Time(t(100))] {
            let e = state_at(&store, store.id, point, 2, refuse)
                .await
                .unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{point:?}");
        }
        let e = state_at(&store, Uuid::new_v4(), Point::Version(1), 2, anyone)
            .await
            .unwrap_err();
        assert_eq!(e.code, "order_not_found");
    }
}
