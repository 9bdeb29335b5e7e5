//! The server's bounds, end to end through the real binary: the request
//! timeout, load shedding beyond `--max-in-flight`, the shutdown deadline, and
//! metric labels that clients cannot multiply.
//!
//! A "slow request" here is a query that waits for a consistency token the
//! read model will never reach (§4.3: a real token of the server's store with
//! its position pushed far ahead): it holds its slot for as long as the
//! client asks (`X-Consistency-Timeout-Ms`), then answers 503
//! `consistency_timeout`. No test-only endpoint is needed to make the server
//! slow. Time bounds in these tests are generous: they only separate "the
//! bound worked" from "the request ran to its natural end" many seconds later.

use crate::support::{Backend, Resp, Server, TempDir, issue_token, order_body, order_platform};
use reqwest::{Method, StatusCode};
use std::collections::BTreeSet;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A position far beyond anything the log of a test will reach.
const FAR_POSITION: &str = "999999999999";

/// A consistency token for `FAR_POSITION` of the same store as `real`, a token
/// a command returned: the token is opaque, so keep whatever names the store
/// (everything up to the last `:`, if any) and replace only the position.
fn unreachable_token(real: &str) -> String {
    match real.rsplit_once(':') {
        Some((store, _)) => format!("{store}:{FAR_POSITION}"),
        None => FAR_POSITION.to_string(),
    }
}

/// A server started with extra `serve` flags, whose process the test owns
/// (the shared harness only kills with SIGKILL; these tests need SIGTERM).
struct Bounded {
    data: TempDir,
    child: Child,
    addr: String,
    client: reqwest::Client,
    /// A token of this server's store that its read model will never reach.
    unreachable: String,
}

impl Bounded {
    async fn start(flags: &[&str]) -> Bounded {
        let data = TempDir::new("order-platform-limits");
        let log = std::fs::File::create(data.path().join("server.log")).expect("create the log");
        let mut child = order_platform()
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data.path())
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn order-platform serve");
        let rx = crate::support::banner_address(&mut child, None);
        let mut server = Bounded {
            data,
            child,
            addr: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            unreachable: String::new(),
        };
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(addr)) => server.addr = addr,
            _ => panic!("the server did not start:\n{}", server.log()),
        }
        let ops = server.token("ops-0", &["ops"]);
        let created = Resp::from(
            server
                .client
                .post(server.url("/api/v1/orders"))
                .bearer_auth(ops)
                .json(&order_body("alice", "USD", &[("SKU-1", "Mug", 1, "1.00")]))
                .send()
                .await,
        )
        .await;
        // Under a deadline too short for any command there is no token to take
        // (and the tests that start such a server hold no request).
        if created.status == StatusCode::CREATED {
            server.unreachable = unreachable_token(&created.consistency_token());
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    fn token(&self, sub: &str, roles: &[&str]) -> String {
        issue_token(self.data.path(), sub, roles, "1h")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        Resp::from(
            self.client
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await,
        )
        .await
    }

    /// A request that stays in flight for `wait_ms`, then answers 503
    /// `consistency_timeout`. Sent again whenever it is itself shed (a quick
    /// request of the test may hold a slot for a moment), so that it ends up
    /// holding a slot.
    fn hold(&self, token: &str, wait_ms: u64) -> JoinHandle<reqwest::Result<Resp>> {
        let request = self
            .client
            .get(self.url("/api/v1/orders"))
            .bearer_auth(token)
            .header("x-consistency-token", &self.unreachable)
            .header("x-consistency-timeout-ms", wait_ms.to_string());
        tokio::spawn(async move {
            loop {
                let sent = request.try_clone().expect("no body").send().await?;
                let r = Resp::from(Ok(sent)).await;
                if r.json["code"] != "overloaded" {
                    return Ok(r);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    /// Polls a quick API request until it is shed, which proves the slots are
    /// all held by requests already in flight; fails after `within`.
    async fn until_shed(&self, token: &str, within: Duration) -> Resp {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get("/api/v1/orders", token).await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                return r;
            }
            r.expect(StatusCode::OK);
            assert!(
                Instant::now() < deadline,
                "no request was shed within {within:?} while the slots should be full"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status, if the process ends within `within`.
    async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_running_past_the_timeout_is_answered_503_request_timeout() {
    let server = Bounded::start(&["--request-timeout", "1s"]).await;
    let ops = server.token("ops-1", &["ops"]);

    let started = Instant::now();
    // Left alone this request would wait 20 s and answer `consistency_timeout`.
    let r = server
        .hold(&ops, 20_000)
        .await
        .expect("join")
        .expect("answered");
    r.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered by the 1 s timeout, not the 20 s wait: {:?}",
        started.elapsed()
    );
    // The server is fine afterwards.
    server
        .get("/api/v1/orders", &ops)
        .await
        .expect(StatusCode::OK);
}

/// A command is never cut off once it is appending (§5: no error after a
/// commit): here its append waits on another session's open append, well past
/// the request timeout, and is still answered 201 when it commits. Queries
/// are still cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_already_appending_is_answered_in_full_past_the_deadline() {
    let database = crate::support::TestDatabase::create().await;
    let server = Bounded::start(&[
        "--request-timeout",
        "500ms",
        "--database-url",
        &database.url,
    ])
    .await;
    let alice = server.token("alice", &["customer"]);

    // Another session appends by hand and stays open: it holds the store's append lock.
    let mut blocker = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&database.url)
            .await
            .expect("connect to the test database")
    };
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, \
         occurred_at, actor, correlation_id, causation_id) \
         VALUES ($1, $2, 1, 'ByHand', 1, '{}', now(), 'a', 'c', $3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::new_v4())
    .bind(uuid::Uuid::now_v7())
    .execute(&mut blocker)
    .await
    .unwrap();

    let id = uuid::Uuid::new_v4();
    let mut body = order_body("alice", "USD", &[("MUG-1", "Mug", 1, "3.00")]);
    body["orderId"] = serde_json::json!(id);
    let command = tokio::spawn({
        let request = server
            .client
            .post(server.url("/api/v1/orders"))
            .bearer_auth(&alice)
            .json(&body);
        async move { Resp::from(request.send().await).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !command.is_finished(),
        "the command gave up while appending"
    );
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();

    let answer = command.await.expect("join");
    answer.expect(StatusCode::CREATED);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
        .bind(id)
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the order the 201 announced is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_in_flight_are_shed_at_once_and_operations_still_answer() {
    let server = Bounded::start(&["--max-in-flight", "2"]).await;
    let ops = server.token("ops-1", &["ops"]);

    let holders: Vec<_> = (0..2).map(|_| server.hold(&ops, 10_000)).collect();
    let started = Instant::now();
    let shed = server.until_shed(&ops, Duration::from_secs(8)).await;
    shed.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"), "{shed}");

    // While the API is saturated, the operational endpoints are not.
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let r = Resp::from(server.client.get(server.url(path)).send().await).await;
        r.expect(StatusCode::OK);
    }
    // ... and the API still sheds (the holders have seconds left to run).
    let again = server.get("/api/v1/orders", &ops).await;
    again.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the checks above ran while both slow requests still held their slots"
    );

    // The holders were served, not dropped; their slots come back.
    for holder in holders {
        let r = holder.await.expect("join").expect("answered");
        r.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout");
    }
    server
        .get("/api/v1/orders", &ops)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_hung_request_at_the_deadline() {
    let mut server = Bounded::start(&[
        "--shutdown-timeout",
        "2s",
        "--max-in-flight",
        "1",
        "--request-timeout",
        "5m",
    ])
    .await;
    let ops = server.token("ops-1", &["ops"]);
    // Hangs for 30 s, the longest consistency wait there is.
    let hung = server.hold(&ops, 30_000);
    server.until_shed(&ops, Duration::from_secs(20)).await;

    let signalled = Instant::now();
    server.sigterm();
    let status = server.exit_within(Duration::from_secs(20)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 20 s after SIGTERM with a 2 s deadline:\n{}",
            server.log()
        )
    });
    assert!(status.success(), "a clean exit: {status:?}");
    let hung = hung.await.expect("join");
    assert!(
        hung.is_err(),
        "the hung request was cut off, not answered: {hung:?}"
    );
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(
        server.log().contains("abandoned"),
        "the log says requests were abandoned:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_lets_in_flight_requests_finish() {
    let mut server = Bounded::start(&["--shutdown-timeout", "60s", "--max-in-flight", "1"]).await;
    let ops = server.token("ops-1", &["ops"]);
    let in_flight = server.hold(&ops, 6_000);
    server.until_shed(&ops, Duration::from_secs(5)).await;

    server.sigterm();
    // The listener closes at once: poll until a fresh connection is refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&server.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.is_running(),
        "refusing while the in-flight request drains, not because the process is gone"
    );
    // The request in flight gets its whole answer.
    let r = in_flight.await.expect("join").expect("answered");
    r.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout");
    let status = server.exit_within(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exits cleanly once drained, long before the 60 s deadline: {status:?}"
    );
    assert!(!server.log().contains("abandoned"), "{}", server.log());
}

/// The label sets of every `order_platform_http_*` series of a scrape.
fn http_series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| l.starts_with("order_platform_http_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_never_become_metric_labels() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    let scrape = || async {
        let r = Resp::from(server.client.get(server.url("/metrics")).send().await).await;
        r.expect(StatusCode::OK);
        r.text
    };
    let junk = |round: u32| {
        let (server, ops) = (&server, &ops);
        async move {
            for i in 0..40 {
                let method = Method::from_bytes(format!("ZZM{round}X{i}").as_bytes())
                    .expect("a valid extension method");
                let targets = [
                    "/api/v1/orders".to_string(),
                    format!("/api/v1/orders/{id}"),
                    format!("/zzpath-{round}-{i}"),
                    format!("/api/v1/orders/{id}/zzpath-{round}-{i}"),
                ];
                for target in &targets {
                    let r = server
                        .request(method.clone(), target, Some(ops))
                        .send()
                        .await;
                    assert!(r.is_ok(), "{method} {target}: {r:?}");
                }
                let r = server.get(&format!("/zzpath-get-{round}-{i}"), ops).await;
                r.expect_problem(StatusCode::NOT_FOUND, "route_not_found");
            }
        }
    };
    scrape().await; // the scrape itself is a series from the next scrape on
    junk(1).await;
    let first = scrape().await;
    junk(2).await;
    let second = scrape().await;

    let series = http_series(&second);
    for line in &series {
        assert!(
            !line.contains("ZZM") && !line.contains("zzpath"),
            "a client-chosen value became a label: {line}"
        );
    }
    assert!(
        series
            .iter()
            .any(|s| s.contains("method=\"other\"") && s.contains("route=\"unmatched\"")),
        "made-up requests are still counted, under bounded labels:\n{second}"
    );
    assert!(
        series
            .iter()
            .any(|s| s.contains("route=\"/api/v1/orders/{id}\"") && s.contains("method=\"other\"")),
        "a known route keeps its template as label:\n{second}"
    );
    assert_eq!(
        http_series(&first),
        series,
        "160 more requests with new methods and paths added no series"
    );
}
