//! `order-platform query-service`: the query side of production (DESIGN §2, §6, §7).
//!
//! One process serves the query routes of `order-query-service` from the Elasticsearch
//! read model (histories and past states straight from the PostgreSQL event store), and
//! runs the Kafka projector that keeps that read model current (`order-kafka-projector`:
//! a consumer group, so replicas share the partitions). Consistency tokens are honoured
//! through the relay's watermarks (`WatermarkFreshness`). Admins list and replay dead
//! letters at `/api/v1/admin/dead-letters`.
//!
//! It listens at once; PostgreSQL and Elasticsearch are waited for in the background (with
//! back-off; meanwhile `/health/ready` names the one awaited and the API answers 503,
//! `starting.rs`); Kafka and the registry are retried by the projector at start and later, and
//! `/health/ready` names whichever is unreachable. SIGTERM stops accepting requests, lets
//! those in flight finish, then stops the projector after its batch in hand is applied
//! and committed.

use crate::cli::{QueryServiceArgs, UsageError};
use crate::dead_letters::{self, DeadLetterAdmin};
use crate::projection_admin::ProjectionAdmin;
use crate::serve::{EventStoreCheck, cannot_listen, serve_until_stopped};
use crate::service::trusted_verifier;
use anyhow::Context;
use axum::Router;
use order_auth::TokenVerifier;
use order_event_store::{EventStore, PostgresEventStore};
use order_http::ReadinessCheck;
use order_kafka_projector::{KafkaProjector, ProjectorConfig, WatermarkFreshness};
use order_query_service::QueryService;
use order_read_model::ReadStore;
use order_read_model_es::EsReadStore;
use sqlx::postgres::PgConnectOptions;
use starting::Phase;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

mod starting;

/// Names of the dependencies awaited at start, as `/health/ready` names them.
const EVENT_STORE: &str = "eventStore";
const ELASTICSEARCH: &str = "elasticsearch";
/// How long the projector may take to finish its batch once the HTTP server stopped.
const PROJECTOR_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_START: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A running query service: HTTP server, projector, lag watcher. What the subcommand runs
/// and what tests start in their own process.
pub struct QueryServiceApp {
    addr: SocketAddr,
    /// Stopping it drains the HTTP server, then stops the projector.
    server: crate::service::ServerTask,
    /// Becomes `true` once PostgreSQL and Elasticsearch were reached and every route
    /// answers; written by the connecting task.
    started: watch::Receiver<bool>,
}

/// What the connecting task builds once its dependencies are reached.
struct Parts {
    app: Router,
    projector: Arc<KafkaProjector>,
    config: ProjectorConfig,
}

impl QueryServiceApp {
    /// Checks the settings and listens at once; PostgreSQL and Elasticsearch are reached
    /// in the background (with back-off, `/health/ready` naming whichever is awaited),
    /// then the projector starts and every route answers ([`QueryServiceApp::started`]).
    pub async fn start(args: QueryServiceArgs) -> anyhow::Result<QueryServiceApp> {
        order_http::metrics_handle();
        let (mut config, es) = dead_letters::settings(&args.kafka, "the query service")?;
        config.batch_size = args.batch_size as usize;
        let url = crate::config::required(
            args.database_url.clone(),
            "the query service",
            "database-url",
            "ORDER_PLATFORM_DATABASE_URL",
            "database_url",
        )?;
        let options = PgConnectOptions::from_str(&url).map_err(|e| {
            UsageError(format!(
                "--database-url (ORDER_PLATFORM_DATABASE_URL, `database_url`) is not a \
                 PostgreSQL URL ({e}); use postgres://USER:PASSWORD@HOST:5432/DATABASE"
            ))
        })?;
        let verifier =
            trusted_verifier(&args.oidc, args.data_dir.as_deref(), "query service").await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| cannot_listen(args.listen, e))?;
        let addr = listener.local_addr()?;
        let deadline = args.shutdown_timeout;
        let phase = Phase::new(&[EVENT_STORE, ELASTICSEARCH]);
        let (stop, mut stop_http) = watch::channel(false);
        let (started_tx, started) = watch::channel(false);
        let connecting = {
            let phase = phase.clone();
            async move {
                let events = patiently(&phase, EVENT_STORE, || {
                    PostgresEventStore::connect(options.clone(), 8)
                })
                .await;
                let events: Arc<dyn EventStore> = Arc::new(events);
                // The read model must have been built from this store (a token or a
                // history of another store would not match its documents): until it
                // is, the service stays unready and `/health/ready` says why.
                let store = events.store_id();
                let read = Arc::new(
                    patiently(&phase, ELASTICSEARCH, || async {
                        let read = EsReadStore::open(es.clone()).await?;
                        read.bind_store(store).await?;
                        Ok::<_, order_read_model::ReadError>(read)
                    })
                    .await,
                );
                let projector = Arc::new(KafkaProjector::new(config.clone(), read.clone()));
                let freshness = Arc::new(WatermarkFreshness::start(
                    &config.kafka,
                    &config.topic,
                    events.store_id(),
                    read.clone(),
                ));
                let queries = QueryService {
                    read: read.clone(),
                    events: events.clone(),
                    freshness,
                };
                let admin = DeadLetterAdmin {
                    config: config.clone(),
                    read: read.clone(),
                };
                let projections = ProjectionAdmin::new(events, read);
                let app = app(&args, verifier, queries, admin, projections, &projector);
                Parts {
                    app,
                    projector,
                    config,
                }
            }
        };
        let router = phase.router();
        let task = tokio::spawn(async move {
            let stopping = async move {
                let _ = stop_http.wait_for(|s| *s).await;
            };
            let mut serving = pin!(serve_until_stopped(listener, router, stopping, deadline));
            let parts = tokio::select! {
                served = &mut serving => return served,
                parts = connecting => parts,
            };
            // The projector outlives the HTTP server: a draining request may wait for it.
            let (stop_projector, projector_stop) = watch::channel(false);
            let until_stopped = |mut stop: watch::Receiver<bool>| async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let projector_task = tokio::spawn({
                let projector = parts.projector.clone();
                let stopped = until_stopped(projector_stop.clone());
                async move { projector.run(stopped).await }
            });
            let lag_task = tokio::spawn(order_kafka_projector::health::watch_lag(
                parts.config,
                parts.projector.health().clone(),
                until_stopped(projector_stop),
            ));
            phase.started(parts.app);
            let _ = started_tx.send(true);
            let served = serving.await;
            let _ = stop_projector.send(true);
            if tokio::time::timeout(PROJECTOR_STOP_TIMEOUT, projector_task)
                .await
                .is_err()
            {
                tracing::warn!("the projector did not stop in time; exiting anyway");
            }
            let _ = lag_task.await;
            served
        });
        Ok(QueryServiceApp {
            addr,
            started,
            server: crate::service::ServerTask::new(stop, task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resolves once every route answers (PostgreSQL and Elasticsearch reached), or when
    /// the service stopped first.
    pub async fn started(&self) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|s| *s).await;
    }

    /// Serves until `signal`, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.server.run_until(signal).await
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.run_until(std::future::ready(())).await
    }
}

/// Calls `connect` until it succeeds, with back-off, logging each failure and telling
/// `/health/ready` (through `phase`) why `dependency` is not reached yet.
async fn patiently<T, E, F, Fut>(phase: &Phase, dependency: &'static str, mut connect: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = RETRY_START;
    loop {
        match connect().await {
            Ok(value) => {
                phase.reached(dependency);
                return value;
            }
            Err(e) => {
                tracing::warn!(error = %e, dependency, retry_in_ms = pause.as_millis() as u64,
                    "cannot reach a dependency yet; retrying");
                phase.wait(dependency, e.to_string());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

/// The HTTP application: queries, dead-letter and rebuild admin, OpenAPI, operational
/// endpoints.
fn app(
    args: &QueryServiceArgs,
    verifier: Arc<dyn TokenVerifier>,
    queries: QueryService,
    admin: DeadLetterAdmin,
    projections: ProjectionAdmin,
    projector: &Arc<KafkaProjector>,
) -> Router {
    let events = queries.events.clone();
    let api = order_query_service::router(queries)
        .merge(dead_letters::router(admin))
        .merge(crate::projection_admin::router(projections));
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(EventStoreCheck(events))];
    checks.extend(order_kafka_projector::checks::readiness_checks(projector));
    let parts = crate::service::ServiceParts {
        verifier,
        checks,
        limits: order_http::Limits {
            request_timeout: args.request_timeout,
            max_in_flight: args.max_in_flight,
        },
        body_limit: args.body_limit,
        pages: false,
    };
    crate::service::service_router(api, parts)
}

/// `order-platform query-service`, until Ctrl-C or SIGTERM.
pub async fn query_service(args: QueryServiceArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::start(&args.telemetry, "order-platform-query-service")?;
    let topic = args.kafka.topic.clone();
    let app = QueryServiceApp::start(args)
        .await
        .context("starting the query service")?;
    let address = app.addr();
    let _ = writeln!(
        std::io::stdout(),
        "Order Platform query service listening on http://{address} (topic {topic})"
    );
    tracing::info!(%address, %topic, "query service listening");
    app.run_until(crate::serve::shutdown_signal()).await?;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(())
}
