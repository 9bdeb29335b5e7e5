//! What the query service answers before it has reached PostgreSQL and Elasticsearch: it
//! listens at once, so that an orchestrator's probes get an answer that names what it is
//! waiting for, and hands every request to the full application once that exists.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use order_http::ApiError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use tower::ServiceExt;

/// The start-up phase, shared by the connecting task (writer) and the server (reader).
#[derive(Default)]
pub(super) struct Phase {
    /// The full application, set once every dependency it needs at start was reached.
    app: OnceLock<Router>,
    /// Per dependency not reached yet (`/health/ready` names), why (the last error).
    waiting: Mutex<BTreeMap<&'static str, String>>,
}

impl Phase {
    pub(super) fn new(waiting_for: &[&'static str]) -> Arc<Phase> {
        let phase = Phase::default();
        for name in waiting_for {
            phase.wait(name, "not reached yet".into());
        }
        Arc::new(phase)
    }

    /// Records why `dependency` is not reached yet.
    pub(super) fn wait(&self, dependency: &'static str, why: String) {
        self.lock().insert(dependency, why);
    }

    pub(super) fn reached(&self, dependency: &'static str) {
        self.lock().remove(dependency);
    }

    /// From now on every request goes to `app`.
    pub(super) fn started(&self, app: Router) {
        let _ = self.app.set(app);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The router the server runs from the start.
    pub(super) fn router(self: &Arc<Phase>) -> Router {
        Router::new().fallback(delegate).with_state(self.clone())
    }
}

async fn delegate(State(phase): State<Arc<Phase>>, request: Request) -> Response {
    if let Some(app) = phase.app.get() {
        return match app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let waiting = phase.lock().clone();
    match request.uri().path() {
        "/health/live" => axum::Json(serde_json::json!({"status": "up"})).into_response(),
        "/health/ready" => {
            let checks: serde_json::Map<String, serde_json::Value> = waiting
                .iter()
                .map(|(name, why)| {
                    let reason = format!("connecting: {why}");
                    (
                        name.to_string(),
                        serde_json::json!({"status": "down", "reason": reason}),
                    )
                })
                .collect();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "down", "checks": checks})),
            )
                .into_response()
        }
        _ => {
            let names: Vec<&str> = waiting.keys().copied().collect();
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the query service is starting: waiting for {}",
                    names.join(", ")
                ),
            )
            .with_header(axum::http::header::RETRY_AFTER, "1")
            .into_response()
        }
    }
}
