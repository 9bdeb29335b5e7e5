//! The contract end to end, against the real servers of `dev/stack`: events of every type are
//! encoded here, registered in the real Schema Registry, produced to a fresh topic of the real
//! Kafka in a committed transaction (next to an aborted one), and read back by the Java consumer
//! of `examples/java-consumer` — stock Kafka client and Apache Avro only — which must print every
//! event, field for field, with money as the exact integer minor units that were written.

mod support;

use order_domain::EventPayload;
use order_messaging::schema::ORDER_EVENT_AVSC;
use order_messaging::{
    OrderEventEncoder, OrderEventMessage, OrderEventSchema, SchemaRegistryClient,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use support::*;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start Kafka and the registry with `dev/stack up kafka schema-registry` \
             and run `eval \"$(dev/stack env)\"` (dev/test does both)"
        )
    })
}

/// The example's runnable jar, built with `mvn -q package` unless it is newer than every
/// input (the POM, the Java sources, the bundled schema): Maven's shade step alone takes
/// seconds even when nothing changed.
fn build_java_consumer() -> std::path::PathBuf {
    let project = repo_root().join("examples/java-consumer");
    let jar = project.join("target/order-events-consumer.jar");
    let inputs = [
        project.join("pom.xml"),
        project.join("src"),
        repo_root().join("schemas/avro/order-event.avsc"),
    ];
    let built = std::fs::metadata(&jar).and_then(|m| m.modified()).ok();
    if built.is_some_and(|built| inputs.iter().all(|input| newest_mtime(input) < built)) {
        return jar;
    }
    let output = Command::new("mvn")
        .args(["-q", "-B", "package"])
        .current_dir(&project)
        .output()
        .expect("run mvn (Maven is needed to build examples/java-consumer)");
    assert!(
        output.status.success(),
        "mvn package failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    jar
}

/// The latest modification time of a file, or of anything under a directory.
fn newest_mtime(path: &std::path::Path) -> std::time::SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .map(|e| newest_mtime(&e.unwrap().path()))
            .fold(own, std::cmp::max),
        Err(_) => own,
    }
}

/// What the consumer must print as `event` for `m`: the OrderEvent record in JSON, every
/// amount an integer of minor units.
fn expected_json(m: &OrderEventMessage) -> Json {
    let line = |l: &order_domain::Line| {
        json!({"sku": l.sku, "productName": l.product_name, "quantity": l.quantity,
               "unitPriceMinor": l.unit_price})
    };
    let payload = match &m.payload {
        EventPayload::OrderCreated {
            order_id,
            customer_id,
            currency,
            lines,
        } => json!({"orderId": order_id.to_string(), "customerId": customer_id,
                    "currency": currency.code(), "lines": lines.iter().map(line).collect::<Vec<_>>()}),
        EventPayload::ItemAdded { line: l, currency } => {
            json!({"line": line(l), "currency": currency.code()})
        }
        EventPayload::ItemRemoved { sku } => json!({"sku": sku}),
        EventPayload::OrderApproved { reason } => json!({"reason": reason}),
        EventPayload::OrderRejected { reason } => json!({"reason": reason}),
        EventPayload::OrderShipped {
            tracking_number,
            carrier,
        } => json!({"trackingNumber": tracking_number, "carrier": carrier}),
        EventPayload::OrderCanceled { reason } => json!({"reason": reason}),
    };
    json!({
        "eventId": m.event_id.to_string(),
        "orderId": m.order_id.to_string(),
        "version": m.version,
        "globalPosition": m.global_position,
        "occurredAt": m.occurred_at.timestamp_micros(),
        "actor": m.actor,
        "correlationId": m.correlation_id,
        "causationId": m.causation_id,
        "payload": payload,
    })
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    encoder: &OrderEventEncoder,
    m: &OrderEventMessage,
) {
    let value = encoder.encode_message(m).unwrap();
    let key = m.order_id.to_string();
    producer
        .send(
            FutureRecord::to(topic).key(&key).payload(&value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_consumer_reads_every_event_type_with_exact_money() {
    let bootstrap = env("KAFKA_BOOTSTRAP_SERVERS");
    let registry_url = env("SCHEMA_REGISTRY_URL");
    let jar = tokio::task::spawn_blocking(build_java_consumer)
        .await
        .unwrap();

    let topic = format!("order-events-contract-{}", uuid::Uuid::new_v4().simple());
    let subject = order_messaging::registry::value_subject(&topic);

    // The schema, registered as the relay will: under <topic>-value, FULL_TRANSITIVE.
    let registry = SchemaRegistryClient::new(&registry_url).unwrap();
    registry
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .await
        .unwrap();
    let schema_id = registry.register(&subject, ORDER_EVENT_AVSC).await.unwrap();
    let encoder = OrderEventEncoder::new(OrderEventSchema::current().clone(), schema_id);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", format!("{topic}-producer"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();

    let messages = sample_messages();
    // First an aborted transaction: a read_uncommitted consumer would print its event.
    let aborted = message(
        messages[0].order_id,
        99,
        EventPayload::OrderRejected {
            reason: "aborted, never visible".into(),
        },
    );
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &encoder, &aborted).await;
    producer.abort_transaction(timeout).unwrap();
    // Then every sample, committed.
    producer.begin_transaction().unwrap();
    for m in &messages {
        send(&producer, &topic, &encoder, m).await;
    }
    producer.commit_transaction(timeout).unwrap();

    let output = tokio::task::spawn_blocking({
        let (topic, bootstrap, registry_url) = (topic.clone(), bootstrap.clone(), registry_url);
        let max = messages.len().to_string();
        move || {
            Command::new("java")
                .arg("-jar")
                .arg(&jar)
                .args(["--bootstrap-servers", &bootstrap])
                .args(["--registry-url", &registry_url])
                .args(["--topic", &topic])
                .args(["--group-id", &format!("{topic}-java")])
                .args(["--max-events", &max])
                .args(["--timeout", "60"])
                .output()
                .expect("run java (a Java 17+ runtime is needed)")
        }
    })
    .await
    .unwrap();

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
    registry.delete_subject(&subject).await.unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Java consumer failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Json> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), messages.len(), "{stdout}");

    let mut printed: HashMap<String, &Json> = HashMap::new();
    for line in &lines {
        assert_eq!(line["schemaId"], json!(schema_id), "{line}");
        assert_eq!(line["topic"], json!(topic));
        let event = &line["event"];
        assert_eq!(line["key"], event["orderId"], "key = order id: {line}");
        printed.insert(event["eventId"].as_str().unwrap().to_string(), line);
    }
    assert!(
        !printed.contains_key(&aborted.event_id.to_string()),
        "the aborted event was read: the consumer is not read_committed"
    );
    for m in &messages {
        let line = printed
            .get(&m.event_id.to_string())
            .unwrap_or_else(|| panic!("{} v{} was not printed", m.order_id, m.version));
        assert_eq!(line["eventType"], json!(m.payload.event_type()));
        assert_eq!(
            line["event"],
            expected_json(m),
            "{}",
            m.payload.event_type()
        );
    }
    // Amounts compared above as JSON integers: i64::MAX minor units (in the samples) read
    // through a double would have come out as 9.223372036854776E18 and failed.

    // Per-order order: within an order (one key, one partition) versions arrive ascending.
    let mut last_version: HashMap<String, (i64, u64)> = HashMap::new();
    for line in &lines {
        let order = line["key"].as_str().unwrap().to_string();
        let (partition, version) = (
            line["partition"].as_i64().unwrap(),
            line["event"]["version"].as_u64().unwrap(),
        );
        if let Some((p, v)) = last_version.insert(order.clone(), (partition, version)) {
            assert_eq!(p, partition, "order {order} spans partitions");
            assert!(v < version, "order {order}: version {version} after {v}");
        }
    }
}
