//! `order-platform command-service`: the command routes as a process of their
//! own on PostgreSQL, trusting the built-in key of a shared data dir. It is
//! given no Kafka, Elasticsearch or read model at all: commands need only the
//! event store, so they keep being accepted whatever happens downstream.

use crate::spawned::Spawned;
use crate::support::{Resp, TempDir, TestDatabase, item, order_body, order_platform};
use order_auth::{LocalSigningKey, Role};
use reqwest::StatusCode;
use std::time::Duration;

fn token(key: &LocalSigningKey, sub: &str, roles: &[Role]) -> String {
    key.issue(sub, roles, chrono::Utc::now(), chrono::Duration::hours(1))
        .expect("sign a token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_service_takes_commands_with_postgres_alone_and_stops_on_sigterm() {
    let db = TestDatabase::create().await;
    let keys = TempDir::new("order-platform-command-keys");
    let key = LocalSigningKey::load_or_create(keys.path()).expect("a key");
    let data_dir = keys.path().to_str().expect("utf-8");
    let mut service = Spawned::start(
        "command-service",
        &[
            "command-service",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--data-dir",
            data_dir,
        ],
    )
    .await;
    let http = reqwest::Client::new();
    service.ready(&http).await;
    let ready = Resp::from(http.get(service.url("/health/ready")).send().await).await;
    assert_eq!(
        ready.json["checks"]["eventStore"]["status"], "up",
        "{ready}"
    );

    let customer = token(&key, "alice", &[Role::Customer]);
    let created = Resp::from(
        http.post(service.url("/api/v1/orders"))
            .bearer_auth(&customer)
            .json(&order_body("alice", "USD", &[("SKU-1", "Mug", 1, "3.00")]))
            .send()
            .await,
    )
    .await;
    created.expect(StatusCode::CREATED);
    assert_eq!(created.etag(), Some("\"1\""));
    assert!(!created.consistency_token().is_empty());
    let id = created.order_id();
    let added = Resp::from(
        http.post(service.url(&format!("/api/v1/orders/{id}/items")))
            .bearer_auth(&customer)
            .json(&item("SKU-2", "Plate", 2, "1.25"))
            .send()
            .await,
    )
    .await;
    added.expect(StatusCode::OK);
    assert_eq!(added.json["version"], 2);
    assert_eq!(added.json["totalAmount"], "5.50");

    // Another customer cannot touch it; no token is a 401.
    let bob = token(&key, "bob", &[Role::Customer]);
    let r = Resp::from(
        http.post(service.url(&format!("/api/v1/orders/{id}/cancel")))
            .bearer_auth(&bob)
            .json(&serde_json::json!({}))
            .send()
            .await,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let r = Resp::from(
        http.post(service.url("/api/v1/orders"))
            .json(&order_body("alice", "USD", &[("S", "N", 1, "1.00")]))
            .send()
            .await,
    )
    .await;
    r.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Its document describes the commands only; queries are not served here.
    let doc = Resp::from(http.get(service.url("/api/v1/openapi.json")).send().await).await;
    doc.expect(StatusCode::OK);
    assert!(
        doc.json["paths"]["/api/v1/orders"]["post"].is_object(),
        "{doc}"
    );
    assert!(
        doc.json["paths"]["/api/v1/orders/search"].is_null(),
        "{doc}"
    );
    let metrics = http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("order_platform_http_requests_total"),
        "{metrics}"
    );

    let status = service.terminate(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "a clean exit after SIGTERM: {status:?}\n{}",
        service.log()
    );
}

/// `order-platform command-service ARGS`, without the developer's settings:
/// (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = order_platform()
        .arg("command-service")
        .args(args)
        .output()
        .expect("run order-platform");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_service_documents_its_options_and_names_a_missing_setting() {
    let (ok, help, _) = crate::run(&["command-service", "--help"]);
    assert!(ok);
    for option in [
        "--listen",
        "--database-url",
        "--oidc-issuer",
        "--oidc-audience",
        "--data-dir",
        "--request-timeout",
        "--max-in-flight",
        "--shutdown-timeout",
        "--snapshot-every",
    ] {
        assert!(help.contains(option), "{option} in --help:\n{help}");
    }

    let (code, stderr) = run(&["--data-dir", "/nonexistent"]);
    assert_eq!(code, Some(2), "{stderr}");
    for name in [
        "--database-url",
        "ORDER_PLATFORM_DATABASE_URL",
        "`database_url`",
    ] {
        assert!(stderr.contains(name), "{name} named: {stderr}");
    }

    let (code, stderr) = run(&["--database-url", "postgres://nobody@127.0.0.1:1/none"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--oidc-issuer") && stderr.contains("--data-dir"),
        "both ways to trust tokens are named: {stderr}"
    );

    let (code, stderr) = run(&["--database-url", "mysql://x", "--data-dir", "/tmp"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
