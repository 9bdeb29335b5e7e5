//! The rebuild of the Elasticsearch read model as admin routes of the query service
//! (DESIGN §7: `order-platform rebuild`, and the admin endpoint): `POST` starts one in
//! the background, `GET` says how it goes. The same `EsReadStore::rebuild` as the
//! command line, so queries keep answering throughout and the alias moves atomically.

use axum::extract::State;
use axum::http::StatusCode;
use order_auth::Role;
use order_event_store::EventStore;
use order_http::openapi::{Unauthorized, Unavailable};
use order_http::{ApiError, Caller};
use order_read_model_es::{EsReadStore, RebuildProgress};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Events per `_bulk` of a rebuild started over HTTP (as `order-platform rebuild`).
const BATCH: usize = 5_000;

/// What the routes need: the log to rebuild from, the store to rebuild, and the last
/// (or current) rebuild's state.
#[derive(Clone)]
pub(crate) struct ProjectionAdmin {
    pub events: Arc<dyn EventStore>,
    pub read: Arc<EsReadStore>,
    pub state: Arc<Mutex<RebuildStatus>>,
}

impl ProjectionAdmin {
    pub fn new(events: Arc<dyn EventStore>, read: Arc<EsReadStore>) -> ProjectionAdmin {
        ProjectionAdmin {
            events,
            read,
            state: Arc::new(Mutex::new(RebuildStatus::default())),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, RebuildStatus> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The last rebuild started over HTTP, as `GET /api/v1/admin/projections/rebuild` shows it.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RebuildStatus {
    /// `idle` (none since start), `rebuilding`, `done` or `failed`.
    #[schema(example = "rebuilding")]
    pub state: String,
    /// Events written to the new index so far.
    pub done: u64,
    /// Events in the log (grows if commands arrive during the rebuild).
    pub total: u64,
    /// Events per second so far.
    pub rate: f64,
    /// At the current rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_seconds: Option<u64>,
    /// The index now behind the alias (when done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_index: Option<String>,
    /// The index that served before, kept write-blocked (when done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_index: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(crate) fn router(admin: ProjectionAdmin) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(start_rebuild, rebuild_status))
        .with_state(admin)
}

fn admins_only(caller: &order_auth::Principal) -> Result<(), ApiError> {
    if caller.has(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden("only admins may rebuild projections"))
    }
}

/// Rebuild the Elasticsearch read model from the event store with no downtime: the next
/// index is filled in the background while the current one answers, then the alias moves
/// to it. Follow it with `GET` on the same path.
#[utoipa::path(post, path = "/api/v1/admin/projections/rebuild", tag = "admin",
    responses(
        (status = 202, description = "The rebuild started", body = RebuildStatus),
        Unauthorized,
        (status = 403, description = "Admins only", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild is running already", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable,
    ),
    security(("bearer" = []))
)]
async fn start_rebuild(
    State(admin): State<ProjectionAdmin>,
    Caller(caller): Caller,
) -> Result<(StatusCode, axum::Json<RebuildStatus>), ApiError> {
    admins_only(&caller)?;
    let started = {
        let mut status = admin.status();
        if status.state == "rebuilding" {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "rebuild_running",
                "a rebuild is running already; follow it with GET on this path",
            ));
        }
        *status = RebuildStatus {
            state: "rebuilding".into(),
            ..RebuildStatus::default()
        };
        status.clone()
    };
    tracing::warn!(actor = %caller.subject, "Elasticsearch read model rebuild started");
    tokio::spawn(async move {
        let mut report_progress = |p: &RebuildProgress| {
            let mut status = admin.status();
            status.done = p.done;
            status.total = p.total;
            status.rate = p.rate.round();
            status.remaining_seconds = p.remaining.map(|d| d.as_secs());
        };
        let outcome = admin
            .read
            .rebuild(admin.events.as_ref(), BATCH, &mut report_progress)
            .await;
        let mut status = admin.status();
        match outcome {
            Ok(report) => {
                tracing::warn!(new_index = %report.new_index, events = report.events,
                    "Elasticsearch read model rebuilt");
                status.state = "done".into();
                status.done = report.events;
                status.remaining_seconds = None;
                status.new_index = Some(report.new_index);
                status.old_index = report.old_index;
            }
            Err(e) => {
                tracing::error!(error = %e, "Elasticsearch read model rebuild failed");
                status.state = "failed".into();
                status.error = Some(e.to_string());
            }
        }
    });
    Ok((StatusCode::ACCEPTED, axum::Json(started)))
}

/// How the last rebuild started over HTTP goes (or went).
#[utoipa::path(get, path = "/api/v1/admin/projections/rebuild", tag = "admin",
    responses(
        (status = 200, description = "The last rebuild's state", body = RebuildStatus),
        Unauthorized,
        (status = 403, description = "Admins only", body = order_http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn rebuild_status(
    State(admin): State<ProjectionAdmin>,
    Caller(caller): Caller,
) -> Result<axum::Json<RebuildStatus>, ApiError> {
    admins_only(&caller)?;
    let mut status = admin.status().clone();
    if status.state.is_empty() {
        status.state = "idle".into();
    }
    Ok(axum::Json(status))
}
