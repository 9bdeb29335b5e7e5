//! `order-platform query-service` and `dead-letters` as processes: `--help` documents the
//! options, a missing setting is a usage error (exit 2) naming flag, variable and key, and
//! a configured service becomes ready, answers queries, and stops on SIGTERM.

use crate::support::{TempDir, TestDatabase, order_platform};
use crate::{KillOnDrop, run};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the dev stack and run `eval \"$(dev/stack env)\"`")
    })
}

#[test]
fn query_service_help_documents_every_option() {
    let (ok, out, _) = run(&["query-service", "--help"]);
    assert!(ok);
    for option in [
        "--database-url",
        "--kafka-bootstrap-servers",
        "--schema-registry-url",
        "--elasticsearch-url",
        "--es-index-prefix",
        "--topic",
        "--group-id",
        "--batch-size",
        "--data-dir",
        "--oidc-issuer",
        "--oidc-audience",
        "--shutdown-timeout",
        "ORDER_PLATFORM_ELASTICSEARCH_URL",
        "ORDER_PLATFORM_GROUP_ID",
    ] {
        assert!(out.contains(option), "{option} missing from:\n{out}");
    }
    let (ok, out, _) = run(&["dead-letters", "--help"]);
    assert!(ok);
    assert!(out.contains("list") && out.contains("replay"), "{out}");
}

#[test]
fn a_missing_setting_is_a_usage_error_that_names_it() {
    let out = order_platform()
        .args([
            "query-service",
            "--kafka-bootstrap-servers",
            "127.0.0.1:1",
            "--schema-registry-url",
            "http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for part in [
        "--elasticsearch-url",
        "ORDER_PLATFORM_ELASTICSEARCH_URL",
        "`elasticsearch_url`",
    ] {
        assert!(stderr.contains(part), "{part} missing from: {stderr}");
    }
    let out = order_platform()
        .args(["dead-letters", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--kafka-bootstrap-servers"), "{stderr}");
    // Everything set but whose tokens to trust.
    let out = order_platform()
        .args([
            "query-service",
            "--kafka-bootstrap-servers",
            "127.0.0.1:1",
            "--schema-registry-url",
            "http://127.0.0.1:1",
            "--elasticsearch-url",
            "http://127.0.0.1:1",
            "--database-url",
            "postgres://u:p@127.0.0.1:1/db",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--oidc-issuer") && stderr.contains("--data-dir"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_query_service_is_ready_answers_and_stops_on_sigterm() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new("query-service-process");
    let key = order_auth::LocalSigningKey::load_or_create(dir.path()).unwrap();
    let topic = format!("order-events-qsp-{}", Uuid::new_v4().simple());
    let prefix = format!("test-{}-", Uuid::new_v4().simple());
    let bootstrap = env("KAFKA_BOOTSTRAP_SERVERS");
    // The relay creates the topic in production; here nothing publishes.
    order_relay::kafka::create_topics(
        &order_relay::KafkaConnection::new(bootstrap.clone()),
        &[rdkafka::admin::NewTopic::new(
            &topic,
            2,
            rdkafka::admin::TopicReplication::Fixed(1),
        )],
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let (mut child, address) = spawn_query_service(
        &[
            "--topic",
            &topic,
            "--es-index-prefix",
            &prefix,
            "--data-dir",
            &data_dir,
        ],
        &[
            ("ORDER_PLATFORM_DATABASE_URL", db.url.clone()),
            ("ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
            (
                "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
                env("SCHEMA_REGISTRY_URL"),
            ),
            ("ORDER_PLATFORM_ELASTICSEARCH_URL", env("ELASTICSEARCH_URL")),
            ("ORDER_PLATFORM_GROUP_ID", format!("{topic}-group")),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("http://{address}/health/ready"))
            .send()
            .await
            .unwrap();
        if ready.status().is_success() {
            break;
        }
        let body = ready.text().await.unwrap_or_default();
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = key
        .issue(
            "a1",
            &[order_auth::Role::Analyst],
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .unwrap();
    let page: serde_json::Value = http
        .get(format!("http://{address}/api/v1/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], serde_json::json!([]), "{page}");
    // Its OpenAPI document (what the gateway merges) has the dead-letter routes.
    let doc: serde_json::Value = http
        .get(format!("http://{address}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/admin/dead-letters",
        "/api/v1/admin/dead-letters/replay",
        "/api/v1/orders",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let unauthenticated = http
        .get(format!("http://{address}/api/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), reqwest::StatusCode::UNAUTHORIZED);

    // SIGTERM: a graceful stop, exit 0.
    let pid = child.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 30s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");

    // The dead-letter list of a topic without any: nothing, exit 0.
    let out = order_platform()
        .args(["dead-letters", "list", "--topic", &topic])
        .env("ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env(
            "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
            env("SCHEMA_REGISTRY_URL"),
        )
        .env("ORDER_PLATFORM_ELASTICSEARCH_URL", env("ELASTICSEARCH_URL"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // And a replay of nothing: a summary that says so.
    let out = order_platform()
        .args([
            "dead-letters",
            "replay",
            "--topic",
            &topic,
            "--es-index-prefix",
            &prefix,
        ])
        .env("ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env(
            "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
            env("SCHEMA_REGISTRY_URL"),
        )
        .env("ORDER_PLATFORM_ELASTICSEARCH_URL", env("ELASTICSEARCH_URL"))
        .env("ORDER_PLATFORM_GROUP_ID", format!("{topic}-group"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["examined"], 0, "{summary}");
    assert_eq!(summary["stillFailing"], serde_json::json!([]), "{summary}");

    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
    let dlq = format!("{topic}.dlq");
    let _ = admin
        .delete_topics(
            &[topic.as_str(), dlq.as_str()],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await;
    let es = env("ELASTICSEARCH_URL");
    let rows: serde_json::Value = http
        .get(format!("{es}/_cat/indices/{prefix}*?format=json&h=index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_default();
    let names: Vec<&str> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["index"].as_str())
        .collect();
    if !names.is_empty() {
        let _ = http
            .delete(format!("{es}/{}", names.join(",")))
            .send()
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_elasticsearch_is_unreachable_ready_names_it_and_the_api_answers_503() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new("query-service-no-es");
    order_auth::LocalSigningKey::load_or_create(dir.path()).unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let (mut child, address) = spawn_query_service(
        &["--data-dir", &data_dir],
        &[
            ("ORDER_PLATFORM_DATABASE_URL", db.url.clone()),
            (
                "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
                env("KAFKA_BOOTSTRAP_SERVERS"),
            ),
            (
                "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
                env("SCHEMA_REGISTRY_URL"),
            ),
            // Nothing listens on port 1.
            (
                "ORDER_PLATFORM_ELASTICSEARCH_URL",
                "http://127.0.0.1:1".into(),
            ),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("http://{address}/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = ready.json().await.unwrap();
        let checks = body["checks"].as_object().unwrap();
        // PostgreSQL is reached first; then only Elasticsearch is awaited.
        if !checks.contains_key("eventStore") {
            assert_eq!(checks["elasticsearch"]["status"], "down", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL never reached: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live = http
        .get(format!("http://{address}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    let api = http
        .get(format!("http://{address}/api/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let problem: serde_json::Value = api.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("elasticsearch"),
        "{problem}"
    );
    // SIGTERM while still waiting: it stops, exit 0.
    let pid = child.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 30s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
}

/// Spawns `query-service` with `extra` arguments and returns it with its address.
async fn spawn_query_service(extra: &[&str], envs: &[(&str, String)]) -> (KillOnDrop, String) {
    let mut command = order_platform();
    command
        .args(["query-service", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = KillOnDrop(command.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let address = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    (child, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_of_another_store_keeps_it_unready_and_says_so() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new("query-service-other-store");
    order_auth::LocalSigningKey::load_or_create(dir.path()).unwrap();
    let prefix = format!("test-{}-", Uuid::new_v4().simple());
    let mut es = order_read_model_es::EsConfig::new(env("ELASTICSEARCH_URL"));
    es.prefix = prefix.clone();
    let other = order_read_model_es::EsReadStore::open(es).await.unwrap();
    use order_read_model::ReadStore as _;
    other
        .bind_store(order_event_store::StoreId(Uuid::new_v4()))
        .await
        .unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let (_child, address) = spawn_query_service(
        &["--data-dir", &data_dir, "--es-index-prefix", &prefix],
        &[
            ("ORDER_PLATFORM_DATABASE_URL", db.url.clone()),
            (
                "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
                env("KAFKA_BOOTSTRAP_SERVERS"),
            ),
            (
                "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
                env("SCHEMA_REGISTRY_URL"),
            ),
            ("ORDER_PLATFORM_ELASTICSEARCH_URL", env("ELASTICSEARCH_URL")),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("http://{address}/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = ready.json().await.unwrap();
        let reason = body["checks"]["elasticsearch"]["reason"]
            .as_str()
            .unwrap_or_default();
        if reason.contains("built from event store") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never named the other store: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = other
        .versioned_indices()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, name)| name)
        .chain([format!("{prefix}orders_meta")])
        .collect();
    let _ = http
        .delete(format!("{}/{}", env("ELASTICSEARCH_URL"), names.join(",")))
        .send()
        .await;
}
