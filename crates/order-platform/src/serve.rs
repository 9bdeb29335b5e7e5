//! The all-in-one server: command, query and projector in one process
//! ([`App`]), and `serve`, which runs it as the binary's default subcommand.

use crate::cli::UsageError;
use crate::{ServeArgs, StoreArgs};
use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use order_auth::{LocalSigningKey, TokenVerifier};
use order_command_service::CommandService;
use order_event_store::{EventStore, PostgresEventStore, SqliteEventStore};
use order_http::ReadinessCheck;
use order_query_service::QueryService;
use order_read_model::{Projector, ReadStore, SqliteReadStore};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Opens the event store the arguments name, running its migrations.
pub(crate) async fn open_event_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    match &args.database_url {
        Some(url) => {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
                UsageError(format!(
                    "--database-url (ORDER_PLATFORM_DATABASE_URL, config `database_url`) is \
                     not a PostgreSQL URL ({e}); use postgres://USER:PASSWORD@HOST:5432/DATABASE"
                ))
            })?;
            let store = PostgresEventStore::connect(options, 16)
                .await
                .context("connecting to the PostgreSQL event store")?;
            Ok(Arc::new(store))
        }
        None => {
            let path = args.data_dir.join("events.db");
            let store = SqliteEventStore::open(&path)
                .await
                .with_context(|| format!("opening the event store {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

async fn open_read_store(data_dir: &Path) -> anyhow::Result<Arc<dyn ReadStore>> {
    let path = data_dir.join("read.db");
    let store = SqliteReadStore::open(&path)
        .await
        .with_context(|| format!("opening the read model {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Creates the data dir (owner-only: it holds the signing key and every order)
/// and locks it: two servers on one data dir would both believe they are the
/// only writer.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let mut create = std::fs::DirBuilder::new();
    create.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut create, 0o700);
    create
        .create(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    refuse_writable_by_others(data_dir)?;
    let path = data_dir.join("LOCK");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => anyhow::bail!(
            "another order-platform process is using the data dir {}; stop it or choose another --data-dir",
            data_dir.display()
        ),
    }
}

/// The data dir holds the signing key and every event: a folder that other users
/// may write to lets them swap the key or the databases. (One they may only read
/// is the owner's choice; the key file itself must be private, see `order-auth`.)
#[cfg(unix)]
fn refuse_writable_by_others(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("reading the permissions of {}", data_dir.display()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "the data dir {} is writable by other users (mode {:o}); it holds the signing \
             key and the events: run `chmod go-w {}`",
            data_dir.display(),
            mode & 0o777,
            data_dir.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_writable_by_others(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

pub async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    let _lock = lock_data_dir(&args.data_dir)?;
    open_event_store(&args).await?;
    open_read_store(&args.data_dir).await?;
    let _ = writeln!(std::io::stdout(), "migrations applied");
    Ok(())
}

/// The whole platform, running: HTTP server, projector, data dir lock. What
/// `order-platform serve` runs, and what the end-to-end tests start in their own
/// process to skip a process per test.
pub struct App {
    /// The address it listens on (the port the system chose, for `:0`).
    addr: SocketAddr,
    /// Stopping it drains the HTTP server, then stops the projector, then
    /// unlocks the data dir.
    server: crate::service::ServerTask,
}

impl App {
    /// Opens the data dir (locked, with its signing key) and the stores, then
    /// listens on `args.listen` and starts the projector, all on the current
    /// tokio runtime. Returns once connections are accepted.
    pub async fn start(args: ServeArgs) -> anyhow::Result<App> {
        // Before any task records a metric: values recorded earlier would be lost.
        order_http::metrics_handle();
        let data_dir = &args.store.data_dir;
        let lock = lock_data_dir(data_dir)?;
        let key = Arc::new(LocalSigningKey::load_or_create(data_dir)?);
        let verifier = token_verifier(&args.oidc, Some(key)).await?;
        let events = open_event_store(&args.store).await?;
        let read = open_read_store(data_dir).await?;
        let projector = Arc::new(Projector::new(events.clone(), read.clone()));
        projector.bind(args.rebuild).await.with_context(|| {
            format!(
                "the read model {} does not belong to this event store",
                data_dir.join("read.db").display()
            )
        })?;
        let router = app(&args, verifier, events, read, projector.clone());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| cannot_listen(args.listen, e))?;
        let addr = listener.local_addr()?;

        let (stop, mut stop_http) = watch::channel(false);
        // The projector outlives the HTTP server: a request still draining may be
        // waiting for it (read-your-writes).
        let (stop_projector, projector_stop) = watch::channel(false);
        let until_stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let projector_task = tokio::spawn({
            let projector = projector.clone();
            let stopped = until_stopped(projector_stop.clone());
            async move { projector.run(stopped).await }
        });
        let lag_task = tokio::spawn({
            let stopped = until_stopped(projector_stop);
            async move { projector.watch_lag(stopped).await }
        });
        let deadline = args.shutdown_timeout;
        let task = tokio::spawn(async move {
            let _lock = lock; // held until everything below has stopped
            let stopping = async move {
                let _ = stop_http.wait_for(|s| *s).await;
            };
            let served = serve_until_stopped(listener, router, stopping, deadline).await;
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
        Ok(App {
            addr,
            server: crate::service::ServerTask::new(stop, task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it is still serving (it stops by itself only on an error).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.server.run_until(signal).await
    }

    /// Stops accepting connections, lets open requests finish, stops the
    /// projector and unlocks the data dir.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.run_until(std::future::ready(())).await
    }
}

/// Why the server cannot listen on `address`, and what to do about it: the
/// operating system's own words ("Address already in use") stay as the cause.
pub(crate) fn cannot_listen(address: SocketAddr, error: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let port = address.port();
    let other = SocketAddr::new(address.ip(), port.checked_add(1).unwrap_or(8080));
    let choose = format!(
        "choose another address with --listen {other} (or ORDER_PLATFORM_LISTEN, or \
         `listen` in the configuration file)"
    );
    let message = match error.kind() {
        ErrorKind::AddrInUse => format!(
            "cannot listen on {address}: another process is already using that address\n  \
             {choose}, or stop the other process (`ss -ltnp 'sport = :{port}'` or \
             `lsof -i :{port}` shows which it is)"
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot listen on {address}: permission denied (ports below 1024 need \
             privileges)\n  {choose}"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {address}: no network interface of this machine has the \
             address {}\n  use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface): {choose}",
            address.ip()
        ),
        _ => format!("cannot listen on {address}\n  {choose}"),
    };
    anyhow::Error::new(error).context(message)
}

/// The verifier `args` ask for: the OIDC issuer's keys when an issuer is set
/// (the built-in key is then not trusted), else the built-in key.
///
/// An issuer that cannot be reached at start-up is tried again every second for
/// `--oidc-startup-timeout`, then the start fails with a message naming it: a
/// server that cannot check any token would only answer 401 to everyone, so it
/// is better not running (and restarted by its supervisor) than up and useless.
pub async fn token_verifier(
    args: &crate::OidcArgs,
    key: Option<Arc<LocalSigningKey>>,
) -> anyhow::Result<Arc<dyn TokenVerifier>> {
    let Some(config) = args.config()? else {
        return key
            .map(|k| k as Arc<dyn TokenVerifier>)
            .ok_or_else(|| anyhow::anyhow!("no --oidc-issuer and no built-in key to trust"));
    };
    let issuer = config.issuer.clone();
    let verifier = order_oidc::OidcVerifier::discover_patiently(config, args.oidc_startup_timeout)
        .await
        .with_context(|| {
            format!(
                "cannot use the OIDC issuer {issuer} (--oidc-issuer); gave up after {}s \
                 (--oidc-startup-timeout)",
                args.oidc_startup_timeout.as_secs()
            )
        })?;
    tracing::info!(%issuer, "trusting tokens of the OIDC issuer");
    Ok(Arc::new(verifier))
}

/// `order-platform serve`: an [`App`] with JSON logs on stderr and a banner on
/// stdout, until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::start(&args.telemetry, "order-platform")?;
    let app = App::start(args.clone()).await?;
    let address = app.addr();
    let dir = args.store.data_dir.display();
    let store = if args.store.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let me = how_to_run_me();
    let get_a_token = match &args.oidc.oidc_issuer {
        Some(issuer) => format!("Tokens:       from the OIDC issuer {issuer} (only)"),
        None => format!(
            "Get a token:  TOKEN=$({me} token --sub alice --role customer --data-dir {dir})"
        ),
    };
    // Not println!: it panics when stdout is a closed pipe (`serve | head -1`), and the
    // banner is a courtesy, not a reason to stop serving (the log line below says it too).
    let _ = writeln!(
        std::io::stdout(),
        "Order Platform listening on http://{address} (events in {store}, data dir {dir})\n\
         {get_a_token}\n\
         Then:         curl -H \"Authorization: Bearer $TOKEN\" http://{address}/api/v1/orders\n\
         API docs:     http://{address}/api/docs (OpenAPI: http://{address}/api/v1/openapi.json)"
    );
    tracing::info!(%address, event_store = store, "listening");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(())
}

/// How long the projector may take to finish its batch once the HTTP server stopped.
const PROJECTOR_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` until `stopping` completes, then shuts down gracefully within
/// `deadline`: the listener closes at once (new connections are refused), idle
/// connections close, and requests in flight may finish. Whatever still runs
/// when the deadline passes is abandoned (its connection is dropped) so that the
/// process exits: an orchestrator's kill timer should not be what ends it.
pub(crate) async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    app: Router,
    stopping: impl Future<Output = ()> + Send + 'static,
    deadline: Duration,
) -> anyhow::Result<()> {
    // Set by the shutdown future that axum polls, read by the deadline below.
    let stopped = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopped = stopped.clone();
        async move {
            stopping.await;
            tracing::info!(deadline_seconds = deadline.as_secs_f64(), "shutting down");
            stopped.notify_one();
        }
    };
    let serving = axum::serve(listener, app).with_graceful_shutdown(signal);
    let expired = async {
        stopped.notified().await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        served = serving => served.context("serving HTTP"),
        () = expired => {
            tracing::warn!(
                deadline_seconds = deadline.as_secs_f64(),
                "requests still in flight at the shutdown deadline were abandoned"
            );
            Ok(())
        }
    }
}

/// The HTTP application: API routes, OpenAPI document, operational endpoints.
fn app(
    args: &ServeArgs,
    verifier: Arc<dyn TokenVerifier>,
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    projector: Arc<Projector>,
) -> Router {
    let wake = projector.clone();
    let commands = order_command_service::router(CommandService {
        store: events.clone(),
        on_append: Arc::new(move |_| wake.wake()),
        snapshot_every: args.snapshot_every,
    });
    let queries = order_query_service::router(QueryService {
        read: read.clone(),
        events: events.clone(),
        freshness: projector.clone(),
    });
    let admin = crate::admin::router(projector.clone());
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(EventStoreCheck(events)),
        Arc::new(ReadStoreCheck(read)),
        Arc::new(ProjectorCheck(projector)),
    ];
    let parts = crate::service::ServiceParts {
        verifier,
        checks,
        limits: order_http::Limits {
            request_timeout: args.request_timeout,
            max_in_flight: args.max_in_flight,
        },
        body_limit: args.body_limit,
        pages: true,
    };
    crate::service::service_router(commands.merge(queries).merge(admin), parts)
}

pub(crate) struct EventStoreCheck(pub(crate) Arc<dyn EventStore>);

#[async_trait]
impl ReadinessCheck for EventStoreCheck {
    fn name(&self) -> &'static str {
        "eventStore"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"kind": self.0.kind(), "storeId": self.0.store_id()}))
    }
}

struct ReadStoreCheck(Arc<dyn ReadStore>);

#[async_trait]
impl ReadinessCheck for ReadStoreCheck {
    fn name(&self) -> &'static str {
        "readModel"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// The projector is running and keeping up; the detail carries its lag.
struct ProjectorCheck(Arc<Projector>);

#[async_trait]
impl ReadinessCheck for ProjectorCheck {
    fn name(&self) -> &'static str {
        "projector"
    }
    async fn check(&self) -> Result<(), String> {
        let health = self.0.health();
        match health.state {
            "running" => Ok(()),
            "stopped" => Err("the projector is not running".into()),
            _ => Err(match health.last_error {
                Some(error) => format!("the projector keeps failing: {error}"),
                None => "the projector is behind and not progressing".into(),
            }),
        }
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.0.health()).ok()
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The command line that runs this binary again, for the banner's copy-paste hint:
/// `cargo run` when cargo started us (the binary then sits deep in a target dir),
/// otherwise the name the user typed.
fn how_to_run_me() -> String {
    if std::env::var_os("CARGO").is_some() {
        return "cargo run --release -q --".to_string();
    }
    std::env::args()
        .next()
        .unwrap_or_else(|| "order-platform".to_string())
}
