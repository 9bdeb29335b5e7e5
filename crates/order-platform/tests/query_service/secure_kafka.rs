//! Kafka as production runs it: the dev stack's SASL_SSL listener (SASL/PLAIN over TLS with the
//! stack's certificate). The relay publishes and the query service consumes through it, given
//! only `--kafka-option`s; a wrong password is refused by the broker and named in
//! `/health/ready`, not retried silently.

use crate::harness::{Http, KafkaLink, Stack, env};
use crate::support::order_platform;
use order_auth::Role;
use order_platform::{QueryServiceApp, QueryServiceArgs};
use reqwest::StatusCode;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_and_the_query_service_work_over_sasl_ssl() {
    let stack = Stack::start_on(KafkaLink::sasl_ssl(&env("KAFKA_SASL_PASSWORD"))).await;
    let ops = stack.token("ops1", Role::Ops);
    let mut flags = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
    flags.extend(stack.query_flags());
    assert!(
        flags.iter().any(|f| f == "security.protocol=sasl_ssl"),
        "{flags:?}"
    );
    let query = QueryServiceApp::start(QueryServiceArgs::from_flags(flags).unwrap())
        .await
        .expect("the query service starts");
    query.started().await;
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
async fn a_wrong_kafka_password_is_refused_and_named_in_readiness() {
    let db = crate::support::TestDatabase::create().await;
    let link = KafkaLink::sasl_ssl("not-the-password");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the relay");

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let readiness = loop {
        let answer = client
            .get(format!("http://{listen}/health/ready"))
            .send()
            .await;
        if let Ok(answer) = answer {
            let status = answer.status();
            let body = answer.text().await.unwrap_or_default();
            if body.to_lowercase().contains("authentication") {
                break (status, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the relay's readiness never named the authentication failure"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        readiness.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        readiness.1
    );
    assert!(readiness.1.contains("kafka"), "{}", readiness.1);
}
