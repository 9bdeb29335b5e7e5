//! Operational commands for admins (DESIGN.md §4.5).

use axum::extract::State;
use axum::http::StatusCode;
use order_auth::Role;
use order_http::openapi::{InternalError, Unauthorized, Unavailable};
use order_http::{ApiError, Caller};
use order_read_model::Projector;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router(projector: Arc<Projector>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(rebuild_projection))
        .with_state(projector)
}

/// The answer to a rebuild request.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RebuildStarted {
    /// Always `rebuilding`.
    #[schema(example = "rebuilding")]
    status: String,
}

/// Rebuild the read model from the event store. Queries see it empty and
/// filling again until the projector has caught up; commands are unaffected.
#[utoipa::path(post, path = "/api/v1/admin/projections/rebuild", tag = "admin",
    responses(
        (status = 202, description = "The read model was reset; the projector is replaying the log", body = RebuildStarted),
        Unauthorized,
        (status = 403, description = "Admins only", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable, InternalError,
    ),
    security(("bearer" = []))
)]
async fn rebuild_projection(
    State(projector): State<Arc<Projector>>,
    Caller(caller): Caller,
) -> Result<(StatusCode, axum::Json<RebuildStarted>), ApiError> {
    if !caller.has(Role::Admin) {
        return Err(ApiError::forbidden("only admins may rebuild projections"));
    }
    projector.rebuild().await.map_err(ApiError::unavailable)?;
    tracing::warn!(actor = %caller.subject, "read model rebuild started");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RebuildStarted {
            status: "rebuilding".into(),
        }),
    ))
}
