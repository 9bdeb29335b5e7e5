//! Kafka as production runs it: the dev stack's SASL_SSL listener (SASL/PLAIN over TLS with the
//! stack's certificate). The relay publishes and the query service consumes through it, given
//! only `--kafka-option`s; with a wrong password the relay is not ready (Kafka down) and its
//! log names librdkafka's reason, the failed SASL login.

use crate::harness::{Http, KafkaLink, Stack, env};
use crate::support::order_platform;
use order_auth::Role;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_and_the_query_service_work_over_sasl_ssl() {
    let stack = Stack::start_on(KafkaLink::sasl_ssl(&env("KAFKA_SASL_PASSWORD"))).await;
    let ops = stack.token("ops1", Role::Ops);
    let flags = stack.query_flags();
    assert!(
        flags.iter().any(|f| f == "security.protocol=sasl_ssl"),
        "{flags:?}"
    );
    let query = stack.start_query_service().await;
    let commands = Http::new(stack.serve.addr());
    let queries = Http::new(query.addr());

    let body = crate::support::order_body("alice", "USD", &[("SKU-1", "Blue mug", 2, "3.50")]);
    let (status, headers, created) = commands
        .call(
            reqwest::Method::POST,
            "/api/v1/orders",
            &ops,
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["orderId"].as_str().unwrap();
    let token = headers["x-consistency-token"].to_str().unwrap();
    // The token is honoured only once the relay's watermark (read over SASL_SSL too) and the
    // projector's progress pass it: the whole path ran over the secured listener.
    let (status, _, order) = queries
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/orders/{id}"),
            &ops,
            &[
                ("X-Consistency-Token", token),
                ("X-Consistency-Timeout-Ms", "30000"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["version"], 1);
    assert_eq!(order["customerId"], "alice");

    query.shutdown().await.unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kafka_password_leaves_the_relay_unready_and_its_log_names_the_login() {
    let db = crate::support::TestDatabase::create().await;
    let link = KafkaLink::sasl_ssl("not-the-password");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log_path = std::env::temp_dir().join(format!("relay-badpw-{}.log", uuid::Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut relay = order_platform();
    relay.args([
        "relay",
        "--listen",
        &listen.to_string(),
        "--database-url",
        &db.url,
        "--kafka-bootstrap-servers",
        &link.bootstrap,
        "--schema-registry-url",
        &env("SCHEMA_REGISTRY_URL"),
        "--topic",
        &format!("order-events-badpw-{}", uuid::Uuid::new_v4().simple()),
        "--kafka-timeout",
        "5s",
    ]);
    for (key, value) in &link.options {
        relay.args(["--kafka-option", &format!("{key}={value}")]);
    }
    let mut child = relay
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn the relay");

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (readiness, logged) = loop {
        let answer = client
            .get(format!("http://{listen}/health/ready"))
            .send()
            .await;
        let readiness = match answer {
            Ok(answer) => Some((answer.status(), answer.text().await.unwrap_or_default())),
            Err(_) => None,
        };
        let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some((status, body)) = &readiness
            && *status == StatusCode::SERVICE_UNAVAILABLE
            && body.contains("\"kafka\"")
            && logged.contains("SASL authentication error")
        {
            break (body.clone(), logged);
        }
        assert!(
            Instant::now() < deadline,
            "no unready relay with a logged SASL failure within 60 s: {readiness:?}\n{logged}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log_path);
    let body: serde_json::Value = serde_json::from_str(&readiness).unwrap();
    assert_eq!(body["checks"]["kafka"]["status"], "down", "{readiness}");
    assert!(
        logged.contains("Invalid username or password"),
        "the log names the broker's reason: {logged}"
    );
}
