//! DESIGN.md §9 across the production split, as processes on the dev stack (PostgreSQL,
//! Kafka, registry, Elasticsearch, Jaeger): `gateway`, `command-service`, `relay` and
//! `query-service`, each started with `--otlp-endpoint` pointing at Jaeger.
//!
//! - One command sent through the gateway is one trace in Jaeger, with every hop a child
//!   of the one before: gateway request → command service request → command → append →
//!   relay publish (context read back from the event store) → projector apply (context
//!   from the Kafka `traceparent` header) → Elasticsearch `_bulk`. Processes, not tasks:
//!   each service exports under its own name, and a link only counts if it crossed a
//!   process boundary as a header or a stored column.
//! - Logs are JSON lines; those of a request carry its `request_id` and `trace_id`; no
//!   process logs the bearer token or the customer's name, and neither reaches Jaeger.

use crate::spawned::Spawned;
use crate::support::{TempDir, TestDatabase, order_body};
use order_auth::{LocalSigningKey, Role};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the dev stack (`dev/stack up`, which includes jaeger) \
             and run `eval \"$(dev/stack env)\"`"
        )
    })
}

/// One span of a Jaeger trace, as its query API answers.
#[derive(Debug)]
struct Span {
    id: String,
    parent: Option<String>,
    name: String,
    service: String,
}

/// The spans Jaeger holds for `trace_id` (none yet: empty).
async fn trace(http: &reqwest::Client, jaeger: &str, trace_id: &str) -> (Vec<Span>, Value) {
    let Ok(response) = http
        .get(format!("{jaeger}/api/traces/{trace_id}"))
        .send()
        .await
    else {
        return (Vec::new(), Value::Null);
    };
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let Some(found) = body["data"].get(0) else {
        return (Vec::new(), body);
    };
    let services: HashMap<&str, &str> = found["processes"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(id, process)| (id.as_str(), process["serviceName"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let spans = found["spans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| Span {
            id: s["spanID"].as_str().unwrap_or_default().to_string(),
            parent: s["references"].as_array().and_then(|refs| {
                refs.iter()
                    .find(|r| r["refType"] == "CHILD_OF")
                    .and_then(|r| r["spanID"].as_str())
                    .map(str::to_string)
            }),
            name: s["operationName"].as_str().unwrap_or_default().to_string(),
            service: services
                .get(s["processID"].as_str().unwrap_or_default())
                .copied()
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    (spans, body)
}

/// The chain a command's trace must hold, each a child of the one before: (service, span).
const CHAIN: [(&str, &str); 7] = [
    // The gateway names its one catch-all route.
    ("order-platform-gateway", "POST /api/v1/{*rest}"),
    ("order-platform-command-service", "POST /api/v1/orders"),
    ("order-platform-command-service", "command CreateOrder"),
    ("order-platform-command-service", "event_store.append"),
    ("order-platform-relay", "relay.publish"),
    ("order-platform-query-service", "projector.apply"),
    ("order-platform-query-service", "elasticsearch.bulk"),
];

/// The chain as found in `spans`, or what is missing.
fn follow_chain(spans: &[Span], client_span: &str) -> Result<(), String> {
    let mut parent = client_span.to_string();
    for (service, name) in CHAIN {
        let Some(span) = spans.iter().find(|s| {
            s.service == service && s.name == name && s.parent.as_deref() == Some(&parent)
        }) else {
            return Err(format!(
                "no span {name:?} of {service} whose parent is {parent}"
            ));
        };
        parent = span.id.clone();
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_one_trace_from_the_gateway_to_elasticsearch_and_the_logs_keep_secrets() {
    let (otlp, jaeger) = (env("JAEGER_OTLP_ENDPOINT"), env("JAEGER_QUERY_URL"));
    let (bootstrap, registry) = (env("KAFKA_BOOTSTRAP_SERVERS"), env("SCHEMA_REGISTRY_URL"));
    let elasticsearch = env("ELASTICSEARCH_URL");
    let db = TestDatabase::create().await;
    let dir = TempDir::new("tracing");
    let data = dir.path().join("data");
    let key = LocalSigningKey::load_or_create(&data).expect("a signing key");
    let data = data.to_str().unwrap().to_string();
    let topic = format!("order-events-trace-{}", Uuid::new_v4().simple());
    let prefix = format!("trace-{}-", Uuid::new_v4().simple());
    let group = format!("{topic}-query");
    let tracing = ["--otlp-endpoint", otlp.as_str()];

    let mut commands = Spawned::start(
        "command-service",
        &[
            &["command-service", "--listen", "127.0.0.1:0"][..],
            &["--database-url", &db.url, "--data-dir", &data],
            &tracing,
        ]
        .concat(),
    )
    .await;
    let mut relay = Spawned::start(
        "relay",
        &[
            &[
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &db.url,
            ][..],
            &["--kafka-bootstrap-servers", &bootstrap],
            &["--schema-registry-url", &registry, "--topic", &topic],
            &["--partitions", "1"],
            &tracing,
        ]
        .concat(),
    )
    .await;
    let mut queries = Spawned::start(
        "query-service",
        &[
            &["query-service", "--listen", "127.0.0.1:0"][..],
            &["--database-url", &db.url, "--data-dir", &data],
            &["--kafka-bootstrap-servers", &bootstrap],
            &["--schema-registry-url", &registry],
            &[
                "--elasticsearch-url",
                &elasticsearch,
                "--es-index-prefix",
                &prefix,
            ],
            &["--topic", &topic, "--group-id", &group],
            &tracing,
        ]
        .concat(),
    )
    .await;
    let mut gateway = Spawned::start(
        "gateway",
        &[
            &["gateway", "--listen", "127.0.0.1:0"][..],
            &[
                "--command-url",
                &commands.base,
                "--query-url",
                &queries.base,
            ],
            &["--data-dir", &data],
            &tracing,
        ]
        .concat(),
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    gateway.ready(&http).await;
    relay.ready(&http).await;
    queries.ready(&http).await;

    let token = key
        .issue(
            "ops-tracer",
            &[Role::Ops],
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .unwrap();
    // Personal data that must stay out of the logs: the customer is named by name here.
    let customer = format!("Ottilie Quarterfield {}", Uuid::new_v4().simple());
    // The client starts the trace, so the test knows its id.
    let trace_id = Uuid::new_v4().simple().to_string();
    let client_span = Uuid::new_v4().simple().to_string()[..16].to_string();
    let created = http
        .post(gateway.url("/api/v1/orders"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&order_body(
            &customer,
            "USD",
            &[("SKU-T", "Traced mug", 1, "4.00")],
        ))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(created.status(), StatusCode::CREATED);
    let consistency = created.headers()["x-consistency-token"].clone();
    let id = created.json::<Value>().await.unwrap()["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    // Read back through the query side: the projector has applied the event.
    let read = http
        .get(gateway.url(&format!("/api/v1/orders/{id}")))
        .bearer_auth(&token)
        .header("x-consistency-token", consistency)
        .header("x-consistency-timeout-ms", "30000")
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(read.status(), StatusCode::OK);

    // Spans reach Jaeger in batches (every few seconds per process).
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (spans, body) = trace(&http, &jaeger, &trace_id).await;
        match follow_chain(&spans, &client_span) {
            Ok(()) => break body,
            Err(missing) if Instant::now() > deadline => {
                panic!("trace {trace_id}: {missing}; spans: {spans:#?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let exported = body.to_string();
    assert!(!exported.contains(&token), "the token reached Jaeger");
    assert!(
        !exported.contains(&customer),
        "the customer's name reached Jaeger"
    );

    // Logs: read once every process has stopped (and flushed).
    for service in [&mut gateway, &mut commands, &mut queries, &mut relay] {
        let status = service.terminate(Duration::from_secs(30)).await;
        assert!(status.is_some_and(|s| s.success()), "{} exit", service.name);
    }
    let mut request_lines = 0;
    for service in [&gateway, &commands, &queries, &relay] {
        let log = service.log();
        assert!(!log.contains(&token), "{} logged the token", service.name);
        assert!(
            !log.contains("Quarterfield"),
            "{} logged the customer's name",
            service.name
        );
        for line in log.lines() {
            let line: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {line}", service.name));
            // The access line of the command (the gateway names its catch-all route).
            if line["message"] == "answered" && line["method"] == "POST" {
                assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
                assert!(
                    line["request_id"].as_str().is_some_and(|r| !r.is_empty()),
                    "{line}"
                );
                request_lines += 1;
            }
        }
    }
    assert_eq!(
        request_lines, 2,
        "the gateway and the command service each log the POST once"
    );
}
