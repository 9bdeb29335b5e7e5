//! What every HTTP service process of the platform shares, whichever routes it
//! serves (`serve`: all of them; `command-service`: the commands): whose tokens
//! it trusts, the OpenAPI document made from its routes, and the layers around
//! them (deadline and in-flight cap on the API, operational endpoints outside
//! them, problem documents for unknown routes and methods).

use crate::OidcArgs;
use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use order_auth::{LocalSigningKey, TokenVerifier};
use order_http::{ApiError, Limits, ReadinessCheck, Verifier};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContactBuilder, LicenseBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// The verifier of a process that does not own a data dir (`gateway`,
/// `command-service`): the OIDC issuer when one is set, else the built-in key
/// of `data_dir` (created by the `serve` or the first service that owns it),
/// else an error naming both ways. `who` names the process in messages.
pub(crate) async fn trusted_verifier(
    oidc: &OidcArgs,
    data_dir: Option<&Path>,
    who: &str,
) -> anyhow::Result<Arc<dyn TokenVerifier>> {
    match (&oidc.oidc_issuer, data_dir) {
        (Some(_), _) => crate::serve::token_verifier(oidc, None).await,
        (None, Some(dir)) => {
            oidc.config()?;
            Ok(Arc::new(LocalSigningKey::load(dir).with_context(|| {
                format!(
                    "the {who} trusts the built-in key of --data-dir {}",
                    dir.display()
                )
            })?))
        }
        (None, None) => Err(crate::cli::UsageError(format!(
            "the {who} needs whose tokens to trust: --oidc-issuer with --oidc-audience \
             (ORDER_PLATFORM_OIDC_ISSUER, ORDER_PLATFORM_OIDC_AUDIENCE, or `oidc_issuer`, \
             `oidc_audience` in the configuration file), or --data-dir (ORDER_PLATFORM_DATA_DIR, \
             `data_dir`) of the `serve` whose built-in key signs them"
        ))
        .into()),
    }
}

/// The served document: `openapi` (generated from the routes) with our title,
/// version, contact, licence, bearer scheme and the shared problem pieces.
pub(crate) fn api_document(mut openapi: OpenApi) -> serde_json::Value {
    openapi.info.title = "Order Platform API".into();
    openapi.info.version = env!("CARGO_PKG_VERSION").into();
    // Ours, not the defaults utoipa-axum fills in from its own Cargo manifest
    // (its authors as contact, its dual licence).
    openapi.info.contact = Some(
        ContactBuilder::new()
            .name(Some("Order Platform maintainers"))
            .build(),
    );
    openapi.info.license = Some(
        LicenseBuilder::new()
            .name(env!("CARGO_PKG_LICENSE"))
            .identifier(Some(env!("CARGO_PKG_LICENSE")))
            .build(),
    );
    openapi.info.description = Some(
        "Event-sourced order management. Errors are RFC 9457 problem documents. \
         Any API request may also be answered 503 with code `overloaded` (the server \
         is at its in-flight limit; see Retry-After) or `request_timeout` (it ran past \
         the server's request timeout)."
            .into(),
    );
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    order_http::openapi::register(&mut openapi);
    order_http::openapi::to_json(&openapi)
}

/// How one service process is put together around its API routes.
pub(crate) struct ServiceParts {
    pub verifier: Arc<dyn TokenVerifier>,
    pub checks: Vec<Arc<dyn ReadinessCheck>>,
    pub limits: Limits,
    pub body_limit: usize,
    /// `/` and `/api/docs` (the all-in-one server is also what people browse).
    pub pages: bool,
}

/// The whole HTTP application of a service: `api` and its OpenAPI document
/// (`/api/v1/openapi.json`) bounded by the limits; `/health/*`, `/metrics` and
/// the pages merged in afterwards, outside those bounds, so that probes and
/// scrapes still answer while the API sheds load.
pub(crate) fn service_router(api: OpenApiRouter, parts: ServiceParts) -> Router {
    let (api, openapi) = api.split_for_parts();
    let openapi = Arc::new(api_document(openapi));
    let api = api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = openapi.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    );
    let mut routes =
        order_http::bounded(api, &parts.limits).merge(order_http::operational_router(parts.checks));
    if parts.pages {
        routes = routes.merge(crate::docs::router());
    }
    let routes = routes
        .fallback(|| async {
            ApiError::not_found("route_not_found", "no such route; see /api/v1/openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::Extension(Verifier(parts.verifier)));
    order_http::common_layers(routes, parts.body_limit)
}

/// A running service's server task and the switch that stops it (`App`,
/// `QueryServiceApp`). Dropped without [`ServerTask::run_until`] (a failing
/// test), the server still stops, in the background.
pub(crate) struct ServerTask {
    /// Set to `true` to stop: the HTTP server drains its connections, then what
    /// outlives it (the projector) stops.
    stop: tokio::sync::watch::Sender<bool>,
    /// The server task until it has been awaited; it ends with the service's result.
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl ServerTask {
    pub fn new(
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ) -> ServerTask {
        ServerTask {
            stop,
            task: Some(task),
        }
    }

    /// Whether it is still serving (it stops by itself only on an error).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Serves until `signal` completes (or the server ends by itself), then
    /// shuts down gracefully and returns the server's result.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        tokio::select! {
            () = signal => {}
            ended = &mut task => return joined(ended),
        }
        let _ = self.stop.send(true);
        joined(task.await)
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn joined(ended: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    ended.map_err(|e| anyhow::anyhow!("the server task failed: {e}"))?
}
