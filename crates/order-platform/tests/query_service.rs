//! The production query side end to end, in process, against the dev stack's real
//! PostgreSQL, Kafka, registry and Elasticsearch: commands appended to PostgreSQL through
//! `serve`, published by the relay (with its watermarks), projected by the query service's
//! Kafka consumer group into Elasticsearch; a query carrying a command's consistency token
//! sees that command's write (single order, list, stats), and a token beyond anything
//! published is answered 503 `consistency_timeout`. Admin routes for dead letters are
//! admins only.

mod support;

use order_auth::{LocalSigningKey, Role};
use order_platform::{App, QueryServiceApp, QueryServiceArgs, ServeArgs};
use order_relay::{Relay, RelayConfig};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use support::{TempDir, TestDatabase, order_body};
use tokio::sync::watch;
use uuid::Uuid;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the dev stack and run `eval \"$(dev/stack env)\"`")
    })
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_a_token_sees_the_write_through_kafka() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new("query-service");
    let data_dir = dir.path().join("data");
    let topic = format!("order-events-qs-{}", Uuid::new_v4().simple());
    let prefix = format!("test-{}-", Uuid::new_v4().simple());
    let (bootstrap, registry) = (env("KAFKA_BOOTSTRAP_SERVERS"), env("SCHEMA_REGISTRY_URL"));

    // The command side: `serve` on PostgreSQL (its built-in key signs the tokens).
    let data = data_dir.to_str().unwrap().to_string();
    let serve = App::start(
        ServeArgs::from_flags([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--database-url",
            &db.url,
        ])
        .unwrap(),
    )
    .await
    .expect("serve starts");
    let key = LocalSigningKey::load(&data_dir).unwrap();
    let token = |sub: &str, role: Role| {
        key.issue(sub, &[role], chrono::Utc::now(), chrono::Duration::hours(1))
            .unwrap()
    };
    let ops = token("ops1", Role::Ops);

    // The relay, in process.
    let options = PgConnectOptions::from_str(&db.url).unwrap();
    let store = Arc::new(
        order_event_store::PostgresEventStore::connect(options.clone(), 4)
            .await
            .unwrap(),
    );
    let relay = Arc::new(Relay::new(
        store,
        options,
        RelayConfig {
            bootstrap_servers: bootstrap.clone(),
            schema_registry_url: registry.clone(),
            topic: topic.clone(),
            partitions: 3,
            replication_factor: 1,
            batch_size: 50,
            kafka_timeout: Duration::from_secs(20),
        },
    ));
    let (stop_relay, relay_stop) = watch::channel(false);
    let relay_task = tokio::spawn({
        let relay = relay.clone();
        let mut stop = relay_stop;
        async move {
            relay
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }
    });

    // The query side.
    let query = QueryServiceApp::start(
        QueryServiceArgs::from_flags([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--kafka-bootstrap-servers",
            &bootstrap,
            "--schema-registry-url",
            &registry,
            "--elasticsearch-url",
            &env("ELASTICSEARCH_URL"),
            "--es-index-prefix",
            &prefix,
            "--topic",
            &topic,
            "--group-id",
            &format!("{topic}-query"),
            "--data-dir",
            &data,
        ])
        .unwrap(),
    )
    .await
    .expect("the query service starts");
    query.started().await;
    let commands = Http {
        client: reqwest::Client::new(),
        base: format!("http://{}", serve.addr()),
    };
    let queries = Http {
        client: reqwest::Client::new(),
        base: format!("http://{}", query.addr()),
    };

    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let body = order_body("alice", "USD", &[("SKU-1", "Blue mug", 2, "3.50")]);
    let (status, headers, created) = commands
        .call(post.clone(), "/api/v1/orders", &ops, &[], Some(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["orderId"].as_str().unwrap().to_string();
    let consistency = headers["x-consistency-token"].to_str().unwrap().to_string();
    let with_token = [
        ("X-Consistency-Token", consistency.as_str()),
        ("X-Consistency-Timeout-Ms", "30000"),
    ];
    let (status, _, order) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["version"], 1);

    // A second write, read back at once through every kind of query.
    let item =
        json!({"sku": "SKU-2", "productName": "Red kettle", "quantity": 1, "unitPrice": "10.00"});
    let (status, headers, _) = commands
        .call(
            post,
            &format!("/api/v1/orders/{id}/items"),
            &ops,
            &[],
            Some(&item),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let consistency = headers["x-consistency-token"].to_str().unwrap().to_string();
    let with_token = [
        ("X-Consistency-Token", consistency.as_str()),
        ("X-Consistency-Timeout-Ms", "30000"),
    ];
    let (status, _, order) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(
        (status, order["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, _, page) = queries
        .call(
            get.clone(),
            "/api/v1/orders?customerId=alice",
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["version"], 2, "{page}");
    let (status, _, stats) = queries
        .call(get.clone(), "/api/v1/orders/stats", &ops, &with_token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats["byCurrency"]["USD"]["totalAmount"], "17.00",
        "{stats}"
    );
    // History comes from PostgreSQL.
    let (status, _, history) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}/events"),
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        history["events"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );

    // A token beyond anything published: 503 after the wait.
    let (store_id, position) = consistency.split_once(':').unwrap();
    let beyond = format!("{store_id}:{}", position.parse::<u64>().unwrap() + 1000);
    let (status, headers, problem) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &[
                ("X-Consistency-Token", &beyond),
                ("X-Consistency-Timeout-Ms", "300"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["code"], "consistency_timeout");
    assert!(headers.contains_key("retry-after"));
    let foreign = format!("{}:1", Uuid::new_v4().simple());
    let (status, _, problem) = queries
        .call(
            get.clone(),
            "/api/v1/orders",
            &ops,
            &[("X-Consistency-Token", &foreign)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "foreign_consistency_token");

    // Dead letters: admins only.
    let (status, _, letters) = queries
        .call(
            get.clone(),
            "/api/v1/admin/dead-letters",
            &token("root", Role::Admin),
            &[],
            None,
        )
        .await;
    assert_eq!((status, letters), (StatusCode::OK, json!([])));
    let (status, _, _) = queries
        .call(get.clone(), "/api/v1/admin/dead-letters", &ops, &[], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let replay = "/api/v1/admin/dead-letters/replay";
    let (status, _, report) = queries
        .call(
            reqwest::Method::POST,
            replay,
            &token("root", Role::Admin),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["examined"].clone(), report["applied"].clone()),
        (json!(0), json!(0))
    );
    let (status, _, _) = queries
        .call(reqwest::Method::POST, replay, &ops, &[], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Ready, with the projector's lag, and its counters in the metrics.
    let (status, _, ready) = queries
        .call(get.clone(), "/health/ready", "", &[], None)
        .await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let metrics = reqwest::get(format!("{}/metrics", queries.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("order_platform_projector_messages_applied_total"),
        "{metrics}"
    );

    query.shutdown().await.unwrap();
    let _ = stop_relay.send(true);
    let _ = relay_task.await;
    serve.shutdown().await.unwrap();
    clean_up(&bootstrap, &registry, &topic, &prefix).await;
}

async fn clean_up(bootstrap: &str, registry: &str, topic: &str, prefix: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topics = [
        topic.to_string(),
        format!("{topic}.dlq"),
        format!("{topic}.watermarks"),
    ];
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    let _ = order_messaging::SchemaRegistryClient::new(registry)
        .unwrap()
        .delete_subject(&order_messaging::registry::value_subject(topic))
        .await;
    let http = reqwest::Client::new();
    let url = env("ELASTICSEARCH_URL");
    let listed = http
        .get(format!(
            "{url}/_cat/indices/{prefix}*?format=json&h=index&expand_wildcards=all"
        ))
        .send()
        .await;
    if let Ok(listed) = listed {
        let rows: Value = listed.json().await.unwrap_or_default();
        let names: Vec<&str> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["index"].as_str())
            .collect();
        if !names.is_empty() {
            let _ = http
                .delete(format!("{url}/{}", names.join(",")))
                .send()
                .await;
        }
    }
}
