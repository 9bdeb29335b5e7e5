//! Operational endpoints (health, metrics, OpenAPI) and the command line:
//! `token` refusals, tokens bound to their data dir, one server per data dir.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use support::{Backend, Resp, Server, TempDir, issue_token, order_platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_need_no_token() {
    let server = Server::start(Backend::Sqlite).await;
    let live = Resp::from(
        server
            .request(Method::GET, "/health/live", None)
            .send()
            .await,
    )
    .await;
    live.expect(StatusCode::OK);
    let ready = Resp::from(
        server
            .request(Method::GET, "/health/ready", None)
            .send()
            .await,
    )
    .await;
    ready.expect(StatusCode::OK);
    assert_eq!(ready.json["status"], "up", "{ready}");
    let checks = ready.json["checks"]
        .as_object()
        .unwrap_or_else(|| panic!("checks in {ready}"));
    assert!(!checks.is_empty(), "ready lists its checks: {ready}");
    assert!(checks.values().all(|c| c["status"] == "up"), "{ready}");
    assert!(
        checks.contains_key("eventStore") && checks.contains_key("readModel"),
        "{ready}"
    );

    // a command and a query, so both counters exist
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await
        .expect(StatusCode::OK);
    let metrics = Resp::from(server.request(Method::GET, "/metrics", None).send().await).await;
    metrics.expect(StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{metrics}"
    );
    for name in [
        "order_platform_http_requests_total",
        "order_platform_commands_total",
    ] {
        assert!(
            metrics.text.lines().any(|l| l.starts_with(name)),
            "/metrics exposes {name}:\n{}",
            metrics.text
        );
    }
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("order_platform_commands_total")
                && l.contains("CreateOrder")
                && l.contains("accepted")),
        "the accepted CreateOrder is counted:\n{}",
        metrics.text
    );
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_served_routes() {
    let server = Server::start(Backend::Sqlite).await;
    let admin = server.token("admin-1", &["admin"]);
    let doc = Resp::from(
        server
            .request(Method::GET, "/api/v1/openapi.json", None)
            .send()
            .await,
    )
    .await;
    doc.expect(StatusCode::OK);
    assert!(
        doc.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "an OpenAPI 3 document"
    );
    let paths = doc.json["paths"].as_object().expect("paths");
    let order = server.new_order(&admin, "alice").await;

    let mut documented = Vec::new();
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", &order.to_string())
            .replace("{sku}", "SKU-1");
        assert!(!concrete.contains('{'), "unknown path parameter in {path}");
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = Resp::from(
                server
                    .request(m.clone(), &concrete, Some(&admin))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await,
            )
            .await;
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
                assert!(
                    r.status != StatusCode::METHOD_NOT_ALLOWED
                        && !(r.status == StatusCode::NOT_FOUND
                            && r.json["code"] == "route_not_found"),
                    "documented {m} {path} is served: {r}"
                );
                assert!(r.status.as_u16() < 500, "{m} {path}: {r}");
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is not documented, so it is not served: {r}"
                );
            }
        }
    }
    for known in [
        "POST /api/v1/orders",
        "GET /api/v1/orders",
        "GET /api/v1/orders/search",
        "GET /api/v1/orders/stats",
        "GET /api/v1/orders/{id}",
        "GET /api/v1/orders/{id}/events",
        "GET /api/v1/orders/{id}/at",
        "POST /api/v1/orders/{id}/items",
        "DELETE /api/v1/orders/{id}/items/{sku}",
        "POST /api/v1/orders/{id}/approve",
        "POST /api/v1/orders/{id}/reject",
        "POST /api/v1/orders/{id}/ship",
        "POST /api/v1/orders/{id}/cancel",
    ] {
        assert!(
            documented.iter().any(|d| d == known),
            "{known} is documented: {documented:?}"
        );
    }
    // the security scheme the operations refer to is defined
    let schemes: &Value = &doc.json["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
}

/// Runs the binary with `args` and returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = order_platform()
        .args(args)
        .output()
        .expect("run order-platform");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn token_refuses_unknown_roles_and_blank_subjects() {
    let dir = TempDir::new("order-platform-e2e-cli");
    let data = dir.path().to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(&[
        "token",
        "--sub",
        "alice",
        "--role",
        "wizard",
        "--data-dir",
        data,
    ]);
    assert!(!ok, "an unknown role is refused");
    assert!(stdout.trim().is_empty(), "no token printed: {stdout}");
    assert!(
        stderr.contains("wizard") && stderr.contains("role"),
        "the message names the role: {stderr}"
    );
    for blank in ["", "   "] {
        let (ok, stdout, stderr) = run(&[
            "token",
            "--sub",
            blank,
            "--role",
            "customer",
            "--data-dir",
            data,
        ]);
        assert!(!ok, "a blank subject {blank:?} is refused");
        assert!(stdout.trim().is_empty(), "no token printed: {stdout}");
        assert!(
            stderr.contains("--sub"),
            "the message names --sub: {stderr}"
        );
    }
    let (ok, _, stderr) = run(&["token", "--sub", "alice", "--data-dir", data]);
    assert!(
        !ok && stderr.contains("--role"),
        "a role is required: {stderr}"
    );
    let (ok, _, stderr) = run(&[
        "token",
        "--sub",
        "alice",
        "--role",
        "ops",
        "--ttl",
        "forever",
        "--data-dir",
        data,
    ]);
    assert!(
        !ok && stderr.contains("forever"),
        "a bad ttl is named: {stderr}"
    );
}

#[test]
fn token_never_creates_a_key_and_says_which_data_dir_to_use() {
    let dir = TempDir::new("order-platform-e2e-nokey");
    let missing = dir.path().join("never-served");
    for data_dir in [missing.as_path(), dir.path()] {
        let shown = data_dir.display().to_string();
        let (ok, stdout, stderr) = run(&[
            "token",
            "--sub",
            "alice",
            "--role",
            "customer",
            "--data-dir",
            &shown,
        ]);
        assert!(!ok, "no token from {shown}, where no server ever ran");
        assert!(stdout.trim().is_empty(), "no token printed: {stdout}");
        assert!(
            stderr.contains(&format!("no signing key in {shown}"))
                && stderr.contains(&format!("order-platform serve --data-dir {shown}"))
                && stderr.contains("data dir of the running server"),
            "the message says which data dir to point at: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !data_dir.join("signing-key.p8").exists(),
            "token created a key in {shown}"
        );
    }
    assert!(!missing.exists(), "token created the data dir");
}

#[test]
fn the_server_refuses_a_key_others_may_read_or_an_empty_one_and_says_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("order-platform-e2e-badkey");
    let key = dir.path().join("signing-key.p8");
    // the server's exit, or a failure if it is still serving after 30 s
    let serve = || {
        let mut child = order_platform()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn order-platform serve");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("poll the server").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server started with the key {}", key.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("collect the output")
    };
    // an empty file: what a crash during the first start used to leave
    std::fs::write(&key, b"").expect("write an empty key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {stderr}"
    );
    assert!(
        stderr.contains(&key.display().to_string()) && stderr.contains("empty"),
        "the message names the file and what is wrong with it: {stderr}"
    );
    // a good key, but group and others may read it
    std::fs::remove_file(&key).expect("remove the empty key");
    order_auth::LocalSigningKey::load_or_create(dir.path()).expect("create a key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "the message says what to run: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_only_for_the_server_of_its_data_dir() {
    let (a, b) = tokio::join!(
        Server::start(Backend::Sqlite),
        Server::start(Backend::Sqlite)
    );
    let token = issue_token(a.data_dir(), "ops-1", &["ops"], "1h");
    a.get("/api/v1/orders", &token).await.expect(StatusCode::OK);
    let r = b.get("/api/v1/orders", &token).await;
    r.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{r}"
    );
    // several roles in one token
    let both = issue_token(a.data_dir(), "carol", &["customer", "analyst"], "1h");
    a.get("/api/v1/orders/stats", &both)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let server = Server::start(Backend::Sqlite).await;
    let mut second = server
        .serve_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second server");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().expect("poll the second server") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second server on the same data dir was still running after 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = second.wait_with_output().expect("collect the output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "the second server exits non-zero");
    assert!(
        stderr.contains("data dir") && stderr.contains(&server.data_dir().display().to_string()),
        "the message names the data dir in use: {stderr}"
    );
    assert!(
        stderr.contains("another order-platform process"),
        "and why: {stderr}"
    );
    // the first one is unharmed
    let live = Resp::from(
        server
            .request(Method::GET, "/health/live", None)
            .send()
            .await,
    )
    .await;
    live.expect(StatusCode::OK);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_what_flags_do_not() {
    let dir = TempDir::new("order-platform-e2e-config");
    let config = dir.path().join("order-platform.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"state\"\nbody_limit = 300\n",
    )
    .expect("write the config file");
    let config = config.to_str().expect("utf-8 path");

    // `order-platform --config FILE` alone serves, with the file's settings.
    let mut child = order_platform()
        .args(["--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn order-platform --config");
    let stdout = child.stdout.take().expect("stdout");
    let server = KillOnDrop(child);
    let banner = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        }),
    )
    .await
    .expect("a banner within 60 s")
    .expect("the reader thread")
    .expect("read the banner");
    let state = dir.path().join("state");
    assert!(
        banner.contains(&format!("data dir {}", state.display())),
        "the data dir comes from the file, relative to it: {banner}"
    );
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("an address in the banner: {banner}"))
        .to_string();
    assert!(
        !base.ends_with(":8080"),
        "listen comes from the file: {banner}"
    );

    // `token --config FILE` signs with the key of the same data dir.
    let (ok, token, stderr) = run(&[
        "token", "--config", config, "--sub", "ops-1", "--role", "ops",
    ]);
    assert!(ok, "token with --config: {stderr}");
    assert!(
        state.join("signing-key.p8").exists(),
        "the key lives in the file's data dir"
    );
    // ORDER_PLATFORM_DATA_DIR beats the file: `token` looks for the key there (and,
    // no server having started on it, finds none), not in the file's data dir.
    let elsewhere = dir.path().join("from-env");
    let out = order_platform()
        .args([
            "token", "--config", config, "--sub", "ops-1", "--role", "ops",
        ])
        .env("ORDER_PLATFORM_DATA_DIR", &elsewhere)
        .output()
        .expect("run order-platform token");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&format!("no signing key in {}", elsewhere.display())),
        "the environment variable wins over the file: {out:?}"
    );
    let client = reqwest::Client::new();
    let list = Resp::from(
        client
            .get(format!("{base}/api/v1/orders"))
            .bearer_auth(token.trim())
            .send()
            .await,
    )
    .await;
    list.expect(StatusCode::OK);

    // body_limit = 300 from the file
    let body = serde_json::json!({
        "customerId": "alice", "currency": "USD",
        "items": [{"sku": "A", "productName": "x".repeat(400), "quantity": 1, "unitPrice": "1.00"}]
    });
    let big = Resp::from(
        client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await,
    )
    .await;
    big.expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    drop(server);

    // A mistake in the file stops the start and names the key and the file.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "lisen = \"127.0.0.1:0\"\n").expect("write the bad file");
    let (ok, _, stderr) = run(&["serve", "--config", bad.to_str().expect("utf-8 path")]);
    assert!(!ok, "a bad config file is refused");
    assert!(
        stderr.contains("lisen") && stderr.contains("bad.toml"),
        "the message names the key and the file: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_stop_the_server() {
    // `order-platform serve | head -1`, or a supervisor that closes the pipe: the banner
    // cannot be written, the server must serve anyway.
    let dir = TempDir::new("order-platform-e2e-stdout");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = order_platform()
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn order-platform serve");
    drop(child.stdout.take()); // closed before the server gets to print
    let mut server = KillOnDrop(child);

    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.0.try_wait().expect("poll the server") {
            let mut stderr = String::new();
            if let Some(mut pipe) = server.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("the server exited ({status}) with stdout closed:\n{stderr}");
        }
        let live = client
            .get(format!("http://{listen}/health/live"))
            .send()
            .await;
        if live.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not come up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
