//! The command side: every `POST`/`DELETE` of DESIGN.md §4.1.
//!
//! A command is handled in one pass of [`CommandService::execute`]:
//! idempotency replay check → load the order (snapshot + newer events) →
//! authorise → `If-Match` → decide → append with `expected_version`. A
//! concurrent writer that appended first makes the append fail with a
//! conflict; without `If-Match` the command is simply decided again against
//! the new state (a few times), so no update is ever lost.

mod routes;
mod schema;

pub use routes::router;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{SubsecRound, Utc};
use order_auth::Principal;
use order_domain::{Command, CommandContext, Order, decide, evolve};
use order_event_store::{
    AppendRequest, CommandMetadata, ConsistencyToken, EventStore, NewEvent, Snapshot, StoreError,
    StoredResponse,
};
use order_http::{ApiError, CONSISTENCY_TOKEN};
use order_read_model::OrderView;
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

/// Layout of the snapshot state this code writes and trusts: the serialized
/// `Order`'s own layout name, so a change to `Order`'s JSON (which the domain's
/// golden test forces to come with a new [`Order::SCHEMA`]) makes every older
/// snapshot ignored rather than misread.
pub const SNAPSHOT_SCHEMA: &str = Order::SCHEMA;

/// Versions between two snapshots unless configured (`--snapshot-every`). Loading an
/// order reads its snapshot and at most this many events less one: at 10, an order of
/// 10,000 events decides in 1.3–1.7× the time of a new one (at 50 it was 3–4×; `cargo
/// bench -p order-command-service --bench long_orders`), for one small upsert per ten
/// versions.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10;

/// How many times a command is re-decided after losing a race, before 409.
const MAX_ATTEMPTS: usize = 4;

/// Called after every successful append (the all-in-one server wakes its projector).
pub type AppendListener = Arc<dyn Fn(ConsistencyToken) + Send + Sync>;

/// Dependencies of the command service.
#[derive(Clone)]
pub struct CommandService {
    pub store: Arc<dyn EventStore>,
    pub on_append: AppendListener,
    /// Write a snapshot every this many versions (0: never).
    pub snapshot_every: u64,
}

/// What the caller wants, before it is checked against the order.
pub(crate) enum Intent {
    Create(Command),
    /// Built from the current order: adding an item needs the order's currency.
    Change {
        name: &'static str,
        kind: ChangeKind,
        build: BuildCommand,
    },
}

/// Builds a change command from the order it applies to.
pub(crate) type BuildCommand = Box<dyn Fn(&Order) -> Result<Command, ApiError> + Send + Sync>;

/// Who may issue which change (DESIGN.md §4.5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// Add/remove items, cancel: the owning customer too.
    OwnerOrStaff,
    /// Approve, reject, ship: ops and admins only.
    StaffOnly,
}

/// The parts of a request that make it "the same request" for idempotency.
pub(crate) struct Fingerprint<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a serde_json::Value,
}

impl CommandService {
    /// Loads an order: the newest trusted snapshot, then the events after it.
    pub async fn load(&self, order_id: Uuid) -> Result<Option<Order>, StoreError> {
        let (snapshot, after_snapshot) = self.store.load_stream(order_id).await?;
        let had_snapshot = snapshot.is_some();
        let trusted = snapshot.and_then(|s| {
            let version = s.version;
            (s.schema == SNAPSHOT_SCHEMA)
                .then(|| serde_json::from_value::<Order>(s.state).ok())
                .flatten()
                .filter(|order| order.id == order_id && order.version == version)
        });
        // A snapshot not trusted (older layout, another order, unreadable) is
        // ignored: the whole stream is read instead.
        let events = match (&trusted, had_snapshot) {
            (None, true) => self.store.read_stream(order_id, 0, None).await?,
            _ => after_snapshot,
        };
        let mut state = trusted;
        for recorded in events {
            let event = recorded.decode()?;
            state = evolve(state, &event);
        }
        Ok(state)
    }

    pub(crate) async fn execute(
        &self,
        caller: &Principal,
        headers: &HeaderMap,
        order_id: Uuid,
        intent: Intent,
        request: Fingerprint<'_>,
    ) -> Result<Response, ApiError> {
        let key = idempotency_key(headers)?;
        let expected = if_match(headers)?;
        let scoped_key = key.map(|k| scope_key(&caller.subject, k));
        let request_hash = fingerprint(&request, expected);
        if let Some(scoped) = &scoped_key
            && let Some(stored) = self.store.find_response(scoped).await?
        {
            return self.replay(stored, &request_hash).await;
        }
        let command_name = match &intent {
            Intent::Create(c) => c.name(),
            Intent::Change { name, .. } => name,
        };
        // The command's span: the parent of its loads and of its append. Names the order
        // by id only (never the customer or the body: DESIGN.md §9).
        let span = tracing::info_span!(
            "command",
            otel.name = %format_args!("command {command_name}"),
            command = command_name,
            order_id = %order_id,
            outcome = tracing::field::Empty,
        );
        let result = self
            .decide_and_append(
                caller,
                headers,
                order_id,
                &intent,
                expected,
                &scoped_key,
                &request_hash,
                key,
            )
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(e) if e.status == StatusCode::CONFLICT => "conflict",
            Err(e) if e.status.is_client_error() => "rejected",
            Err(_) => "error",
        };
        span.record("outcome", outcome);
        metrics::counter!(
            "order_platform_commands_total",
            "command" => command_name,
            "outcome" => outcome
        )
        .increment(1);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_and_append(
        &self,
        caller: &Principal,
        headers: &HeaderMap,
        order_id: Uuid,
        intent: &Intent,
        expected: Option<u64>,
        scoped_key: &Option<String>,
        request_hash: &str,
        key: Option<&str>,
    ) -> Result<Response, ApiError> {
        authorize_role(caller, intent)?;
        // `If-Match` conditions a change on the order's version. A create has no
        // version to match: an existing id is a 409 whatever the header says, and
        // the answer must not reveal that order's version (DESIGN.md §4.5).
        let expected = match intent {
            Intent::Create(_) => None,
            Intent::Change { .. } => expected,
        };
        for attempt in 0..MAX_ATTEMPTS {
            // A create's first attempt does not read the stream: it appends at
            // expected version 0, which the store checks in the same transaction
            // as the insert. If the id is taken, that append is a conflict and
            // the next attempt loads the order and decides as always (409).
            // Saves two database reads per new order.
            let mut state = if attempt == 0 && matches!(intent, Intent::Create(_)) {
                None
            } else {
                self.load(order_id).await?
            };
            // Another customer's order is answered exactly as an unknown one
            // (DESIGN.md §4.5): checked before `If-Match`, so not even the
            // version leaks.
            if let Intent::Change { .. } = intent
                && state
                    .as_ref()
                    .is_some_and(|order| !caller.may_command_for(&order.customer_id))
            {
                state = None;
            }
            if let (Some(expected), Some(order)) = (expected, &state)
                && order.version != expected
            {
                return Err(precondition_failed(order.version));
            }
            let command = match intent {
                Intent::Create(command) => command.clone(),
                Intent::Change { build, .. } => match &state {
                    Some(order) => build(order)?,
                    None => return Err(order_domain::DomainError::OrderNotFound.into()),
                },
            };
            let ctx = CommandContext {
                actor: caller.subject.clone(),
                // Microseconds: the finest instant every event store keeps
                // (PostgreSQL's timestamptz). The answer, snapshots and a later
                // replay of the stored events must all show the same times.
                now: Utc::now().trunc_subsecs(6),
            };
            let events = decide(&command, state.as_ref(), &ctx)?;
            let old_version = state.as_ref().map_or(0, |o| o.version);
            let Some(new_state) = events.iter().fold(state, evolve) else {
                return Err(ApiError::internal("decide produced no order"));
            };
            let status = match command {
                Command::CreateOrder { .. } => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            let body =
                serde_json::to_value(OrderView::from(&new_state)).map_err(ApiError::internal)?;
            let stored = StoredResponse {
                request_hash: request_hash.to_string(),
                status: status.as_u16(),
                response: body.clone(),
            };
            let append_span = tracing::info_span!(
                "event_store.append",
                stream_id = %order_id,
                expected_version = old_version,
                events = events.len(),
            );
            let append = AppendRequest {
                stream_id: order_id,
                expected_version: old_version,
                events: events
                    .iter()
                    .map(|e| NewEvent::from_domain(e, Uuid::now_v7()))
                    .collect(),
                metadata: metadata(headers, key, &append_span),
                idempotency: scoped_key.clone().map(|k| (k, stored)),
            };
            // The last moment a command may still give up on its deadline: after
            // the append, its answer must say what happened.
            if order_http::deadline_passed() {
                return Err(order_http::request_timeout());
            }
            match self.store.append(append).instrument(append_span).await {
                Ok(appended) => {
                    metrics::counter!("order_platform_events_appended_total")
                        .increment(events.len() as u64);
                    (self.on_append)(appended.consistency_token);
                    self.maybe_snapshot(&new_state, old_version).await;
                    let token = appended.consistency_token.to_header(self.store.store_id());
                    let response = respond(status, &body, new_state.version, &token, false);
                    return Ok(response);
                }
                Err(StoreError::Conflict { actual, .. }) if expected.is_some() => {
                    return Err(precondition_failed(actual));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::IdempotencyKeyTaken) => {
                    // A concurrent request with the same key won; answer as it did.
                    let scoped = scoped_key.as_deref().unwrap_or_default();
                    return match self.store.find_response(scoped).await? {
                        Some(stored) => self.replay(stored, request_hash).await,
                        None => Err(ApiError::internal("idempotency record vanished")),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "write_conflict",
            "the order kept changing concurrently; retry the request",
        ))
    }

    async fn replay(
        &self,
        stored: StoredResponse,
        request_hash: &str,
    ) -> Result<Response, ApiError> {
        if stored.request_hash != request_hash {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
            ));
        }
        let status = StatusCode::from_u16(stored.status).map_err(ApiError::internal)?;
        let version = stored.response["version"].as_u64().unwrap_or_default();
        let token = self.store.current_token().await?;
        let token = token.to_header(self.store.store_id());
        Ok(respond(status, &stored.response, version, &token, true))
    }

    async fn maybe_snapshot(&self, order: &Order, old_version: u64) {
        if self.snapshot_every == 0
            || order.version / self.snapshot_every == old_version / self.snapshot_every
        {
            return;
        }
        let Ok(state) = serde_json::to_value(order) else {
            return;
        };
        let snapshot = Snapshot {
            stream_id: order.id,
            version: order.version,
            schema: SNAPSHOT_SCHEMA.into(),
            state,
        };
        // Only an optimisation: a failure costs a longer load later, nothing else.
        if let Err(e) = self.store.save_snapshot(&snapshot).await {
            tracing::warn!(order_id = %order.id, error = %e, "could not save snapshot");
        }
    }
}

fn authorize_role(caller: &Principal, intent: &Intent) -> Result<(), ApiError> {
    use order_auth::Role;
    let allowed = match intent {
        Intent::Create(Command::CreateOrder { customer_id, .. }) => {
            caller.may_command_for(customer_id)
        }
        Intent::Create(_) => false,
        Intent::Change {
            kind: ChangeKind::OwnerOrStaff,
            ..
        } => caller.may_command_any_order() || caller.has(Role::Customer),
        Intent::Change {
            kind: ChangeKind::StaffOnly,
            ..
        } => caller.may_command_any_order(),
    };
    if allowed {
        Ok(())
    } else if matches!(intent, Intent::Create(_)) && caller.has(Role::Customer) {
        Err(ApiError::forbidden(
            "customers may only create orders for themselves: customerId must be your subject",
        ))
    } else {
        Err(ApiError::forbidden("your roles do not allow this command"))
    }
}

fn respond(
    status: StatusCode,
    body: &serde_json::Value,
    version: u64,
    token: &str,
    replayed: bool,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("etag", format!("\"{version}\""));
    set(CONSISTENCY_TOKEN, token.to_string());
    if status == StatusCode::CREATED
        && let Some(id) = body["orderId"].as_str()
    {
        set("location", format!("/api/v1/orders/{id}"));
    }
    if replayed {
        set("idempotency-replayed", "true".into());
    }
    response
}

fn precondition_failed(actual: u64) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "version_mismatch",
        format!("If-Match does not match: the order is at version {actual}"),
    )
    .with_header(header::ETAG, &format!("\"{actual}\""))
}

/// `Idempotency-Key`: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key))
}

/// `If-Match: "<version>"`: one to 19 digits in quotes, a weak `W/` prefix
/// tolerated; exactly [`order_http::openapi::IF_MATCH_PATTERN`]. An empty value
/// is an empty list of entity tags (RFC 9110 §5.6.1): no condition.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    if value.as_bytes().iter().all(|b| *b == b' ' || *b == b'\t') {
        return Ok(None);
    }
    value
        .to_str()
        .ok()
        .map(|v| v.trim_matches([' ', '\t']))
        .map(|v| v.strip_prefix("W/").unwrap_or(v))
        .and_then(|v| v.strip_prefix('"')?.strip_suffix('"'))
        .filter(|digits| (1..=19).contains(&digits.len()))
        .and_then(order_http::parse_digits)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_if_match",
                "If-Match must be an ETag of this API, such as \"3\"",
            )
        })
}

/// Keys are per caller: two callers never see each other's responses.
fn scope_key(subject: &str, key: &str) -> String {
    format!("{}:{subject}:{key}", subject.len())
}

fn fingerprint(request: &Fingerprint<'_>, if_match: Option<u64>) -> String {
    // serde_json maps are sorted, so equal bodies serialise equally.
    let canonical = format!(
        "{}\n{}\n{}\n{:?}",
        request.method, request.path, request.body, if_match
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The metadata stored with the events. Their `traceparent` is the append span's own
/// context when tracing is on, so that the relay's and the projector's spans, which
/// continue from it, hang under the append in the command's trace; else the caller's.
fn metadata(headers: &HeaderMap, key: Option<&str>, append: &tracing::Span) -> CommandMetadata {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 255)
            .map(str::to_string)
    };
    let command_id = Uuid::now_v7();
    CommandMetadata {
        command_id,
        correlation_id: header("x-correlation-id")
            .or_else(|| header("x-request-id"))
            .unwrap_or_else(|| command_id.to_string()),
        traceparent: order_telemetry::traceparent(append)
            .or_else(|| header("traceparent").filter(|t| is_traceparent(t))),
        idempotency_key: key.map(str::to_string),
    }
}

/// W3C trace context: `00-<32 hex>-<16 hex>-<2 hex>`.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}
