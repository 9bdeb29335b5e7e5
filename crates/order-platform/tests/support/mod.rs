//! The harness of the end-to-end tests: an Order Platform server per test, on
//! its own temporary data dir (and, for PostgreSQL, its own database), driven
//! over HTTP.
//!
//! [`Server::start`] runs the server in the test's own process: the library's
//! [`order_platform::App`] on `127.0.0.1:0`, configured by the same flags the
//! binary would get. [`Server::start_process`] spawns `order-platform serve`
//! instead, for what needs a process: `kill -9` and restarts, the command line,
//! configuration. Both speak HTTP on a real socket, so a test reads the same
//! either way.
//!
//! Used by the `e2e` and `process` test binaries (`#[path]`), and by any
//! standalone `tests/*.rs` file (`mod support;`); each uses only part of it.
#![allow(dead_code)]

mod database;
mod http;
pub mod keycloak;

pub use database::TestDatabase;
// Each test binary uses part of the harness (as `dead_code` above says).
#[allow(unused_imports)]
pub use http::{Resp, catch, item, order_body};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The address in the `… listening on http://ADDR` banner of `child` (its stdout must be
/// piped), once printed; the sender is dropped if the process exits first. A thread reads
/// stdout to its end, so that the process never writes to a closed pipe, appending every
/// line to `capture` when given.
pub fn banner_address(
    child: &mut Child,
    capture: Option<Arc<Mutex<String>>>,
) -> tokio::sync::oneshot::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().into());
            }
            if let Some(capture) = &capture {
                let mut all = capture.lock().unwrap_or_else(|e| e.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        }
    });
    rx
}

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_order-platform");

/// How long a server may take to print its banner (a cold start on a loaded
/// 2-core machine with PostgreSQL migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where events are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Options of one server.
#[derive(Clone, Debug)]
pub struct Options {
    pub backend: Backend,
    pub body_limit: Option<usize>,
    pub snapshot_every: Option<u64>,
    /// More `serve` flags, after the others.
    pub extra_args: Vec<String>,
}

impl Options {
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            body_limit: None,
            snapshot_every: None,
            extra_args: Vec::new(),
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the server of a [`Server`] runs.
enum Running {
    /// Not started yet, or killed.
    Stopped,
    /// In this process, on the test's runtime.
    InProcess(order_platform::App),
    /// An `order-platform serve` child process.
    Process(Child),
}

/// A running Order Platform server, in-process or as a child process.
pub struct Server {
    pub options: Options,
    pub data: TempDir,
    pub database: Option<TestDatabase>,
    running: Running,
    /// Whether it runs as a child process (`start_process`): fixed at start.
    process: bool,
    pub base: String,
    pub client: reqwest::Client,
    tokens: Mutex<HashMap<(String, Vec<String>), String>>,
    /// Everything a server process printed on stdout (banner included).
    stdout: Arc<Mutex<String>>,
}

impl Server {
    /// A server in this process (see the module header).
    pub async fn start(backend: Backend) -> Server {
        Server::start_with(Options::new(backend)).await
    }

    pub async fn start_with(options: Options) -> Server {
        Server::create(options, false).await
    }

    /// An `order-platform serve` process: for `kill_9`, `restart` and tests of
    /// the process itself.
    pub async fn start_process(backend: Backend) -> Server {
        Server::start_process_with(Options::new(backend)).await
    }

    pub async fn start_process_with(options: Options) -> Server {
        Server::create(options, true).await
    }

    async fn create(options: Options, process: bool) -> Server {
        let data = TempDir::new("order-platform-e2e");
        let database = match options.backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDatabase::create().await),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client");
        let mut server = Server {
            options,
            data,
            database,
            running: Running::Stopped,
            process,
            base: String::new(),
            client,
            tokens: Mutex::new(HashMap::new()),
            stdout: Arc::new(Mutex::new(String::new())),
        };
        if process {
            server.spawn().await;
        } else {
            server.start_in_process().await;
        }
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("server.log")
    }

    /// The flags of `serve` for this server, in-process or not.
    pub fn serve_flags(&self) -> Vec<OsString> {
        let mut flags: Vec<OsString> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            self.data.path().into(),
        ];
        if let Some(db) = &self.database {
            flags.extend(["--database-url".into(), db.url.clone().into()]);
        }
        if let Some(limit) = self.options.body_limit {
            flags.extend(["--body-limit".into(), limit.to_string().into()]);
        }
        if let Some(n) = self.options.snapshot_every {
            flags.extend(["--snapshot-every".into(), n.to_string().into()]);
        }
        flags.extend(self.options.extra_args.iter().map(OsString::from));
        flags
    }

    /// The `serve` command line for this server.
    pub fn serve_command(&self) -> Command {
        let mut cmd = order_platform();
        cmd.arg("serve").args(self.serve_flags());
        cmd
    }

    async fn start_in_process(&mut self) {
        log_in_process_servers();
        let args = order_platform::ServeArgs::from_flags(self.serve_flags())
            .unwrap_or_else(|e| panic!("serve flags {:?}: {e}", self.serve_flags()));
        let app = tokio::time::timeout(START_TIMEOUT, order_platform::App::start(args))
            .await
            .unwrap_or_else(|_| panic!("the server did not start within {START_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("the server did not start: {e:#}"));
        self.base = format!("http://{}", app.addr());
        self.running = Running::InProcess(app);
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let mut child = self
            .serve_command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn order-platform serve");
        let rx = banner_address(&mut child, Some(self.stdout.clone()));
        self.running = Running::Process(child);
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => self.base = format!("http://{addr}"),
            Ok(Err(_)) => {
                let status = match &mut self.running {
                    Running::Process(child) => child.wait().ok(),
                    _ => None,
                };
                panic!(
                    "order-platform serve exited ({status:?}) before listening.\nstdout:\n{}\nlog:\n{}",
                    self.stdout.lock().unwrap(),
                    self.log_tail()
                );
            }
            Err(_) => panic!(
                "order-platform serve printed no banner within {START_TIMEOUT:?}.\nlog:\n{}",
                self.log_tail()
            ),
        }
    }

    /// The last lines the server logged (for failure messages).
    pub fn log_tail(&self) -> String {
        if !self.process {
            return "(an in-process server: run the test with RUST_LOG=warn to see its log)"
                .to_string();
        }
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no graceful shutdown, nothing flushed. Only for a process
    /// (`start_process`): an in-process server cannot be killed that way.
    pub fn kill_9(&mut self) {
        assert!(
            self.process,
            "kill_9 needs a server process: start it with Server::start_process"
        );
        if let Running::Process(mut child) = std::mem::replace(&mut self.running, Running::Stopped)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server process (`kill_9`) and starts it again on the same data
    /// dir (and database).
    pub async fn restart(&mut self) {
        self.kill_9();
        self.tokens.lock().unwrap().clear();
        self.spawn().await;
    }

    /// A token for `sub` with `roles`, signed with this data dir's key: by the
    /// `token` subcommand for a server process, through the library in-process
    /// (the subcommand has its own tests in the `process` binary).
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let key = (
            sub.to_string(),
            roles.iter().map(|r| r.to_string()).collect(),
        );
        if let Some(t) = self.tokens.lock().unwrap().get(&key) {
            return t.clone();
        }
        let token = if self.process {
            issue_token(self.data.path(), sub, roles, "1h")
        } else {
            let roles: Vec<order_auth::Role> = roles
                .iter()
                .map(|r| order_auth::Role::parse(r).unwrap_or_else(|| panic!("role {r:?}")))
                .collect();
            order_auth::LocalSigningKey::load(self.data.path())
                .expect("the server's signing key")
                .issue(sub, &roles, chrono::Utc::now(), chrono::Duration::hours(1))
                .expect("sign a token")
        };
        self.tokens.lock().unwrap().insert(key, token.clone());
        token
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with `token` as bearer (no token when `None`).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        Resp::from(self.request(Method::GET, path, Some(token)).send().await).await
    }

    /// `GET path` once the read model covers `consistency` (a command's token).
    pub async fn get_after(&self, path: &str, token: &str, consistency: &str) -> Resp {
        Resp::from(
            self.request(Method::GET, path, Some(token))
                .header("x-consistency-token", consistency)
                .header("x-consistency-timeout-ms", "20000")
                .send()
                .await,
        )
        .await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        Resp::from(
            self.request(Method::POST, path, Some(token))
                .json(body)
                .send()
                .await,
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        Resp::from(self.request(Method::DELETE, path, Some(token)).send().await).await
    }

    /// Creates an order for `customer` with one line per `(sku, name, qty, price)`.
    pub async fn create_order(
        &self,
        token: &str,
        customer: &str,
        items: &[(&str, &str, i64, &str)],
    ) -> Resp {
        self.post("/api/v1/orders", token, &order_body(customer, "USD", items))
            .await
    }

    /// Creates an order and returns its id, failing the test unless it is 201.
    pub async fn new_order(&self, token: &str, customer: &str) -> Uuid {
        let r = self
            .create_order(token, customer, &[("SKU-1", "Blue mug", 2, "12.50")])
            .await;
        r.expect(StatusCode::CREATED);
        r.order_id()
    }

    /// Polls `GET path` as `token` until `done` holds, at most `within`.
    pub async fn eventually(
        &self,
        what: &str,
        path: &str,
        token: &str,
        within: Duration,
        done: impl Fn(&Resp) -> bool,
    ) -> Resp {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = self.get(path, token).await;
            if done(&r) {
                return r;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{what}: not reached within {within:?}; last answer to GET {path}: {r}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.running {
            Running::Stopped => false,
            Running::InProcess(app) => app.is_running(),
            Running::Process(child) => matches!(child.try_wait(), Ok(None)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A process is killed; an App dropped stops in the background.
        if let Running::Process(mut child) = std::mem::replace(&mut self.running, Running::Stopped)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.process {
            eprintln!("--- server log ({}) ---\n{}", self.base, self.log_tail());
        }
    }
}

/// The binary, shielded from the developer's own settings: every `ORDER_PLATFORM_*`
/// variable (listen address, data dir, database, config file...) is removed, so a
/// test gets exactly the settings it passes. Logs at `warn`.
pub fn order_platform() -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ORDER_PLATFORM_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// In-process servers log through this process: to stderr when `RUST_LOG` is
/// set, nowhere otherwise (a server process logs to `server.log` in its data dir).
fn log_in_process_servers() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
        }
    });
}

/// Runs `order-platform token` for `data_dir` and returns the token.
pub fn issue_token(data_dir: &Path, sub: &str, roles: &[&str], ttl: &str) -> String {
    let mut cmd = order_platform();
    cmd.arg("token").arg("--sub").arg(sub);
    for role in roles {
        cmd.arg("--role").arg(role);
    }
    let out = cmd
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--ttl")
        .arg(ttl)
        .output()
        .expect("run order-platform token");
    assert!(
        out.status.success(),
        "order-platform token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("token is UTF-8");
    let token = text.trim();
    assert_eq!(
        token.lines().count(),
        1,
        "the token is alone on stdout: {text:?}"
    );
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT has three parts: {token:?}"
    );
    token.to_string()
}
