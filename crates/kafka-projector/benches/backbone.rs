//! How fast events flow through the production backbone: the relay from the
//! PostgreSQL event store into Kafka, then the Kafka projector into
//! Elasticsearch. A benchmark, run by hand against the servers of `dev/stack`,
//! that prints events per second for each stage.
//!
//! ```text
//! eval "$(dev/stack env)"
//! cargo bench -p order-kafka-projector --bench backbone           # 100,000 events
//! BENCH_ORDERS=5000 cargo bench -p order-kafka-projector --bench backbone
//! ```
//!
//! The log (`order_read_model::bench_log`: orders of 4 events each) is written
//! once into its own database and reused. Each run publishes it from the start
//! into a fresh topic of 6 partitions (the relay's production settings: batches
//! of 500, one transaction each, watermarks), then projects that topic into a
//! fresh index prefix with the query service's settings; the stages run one
//! after the other so that each is measured alone.

use order_event_store::EventStore;
use order_kafka_projector::{KafkaProjector, ProjectorConfig};
use order_read_model::bench_log;
use order_read_model_es::{EsConfig, EsReadStore};
use order_relay::{Relay, RelayConfig};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the dev stack and run `eval \"$(dev/stack env)\"`")
    })
}

/// Polls `count` until it reaches `total`; returns how long that took from `started`.
async fn until(started: Instant, total: u64, what: &str, count: impl Fn() -> u64) -> Duration {
    let deadline = started + Duration::from_secs(600);
    while count() < total {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {total} after 10 min",
            count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let orders = bench_log::orders(25_000);
    let store = Arc::new(bench_log::postgres_store(orders).await);
    let total = store
        .backlog(Default::default())
        .await
        .expect("count")
        .events;
    let topic = format!("bench-backbone-{}", Uuid::new_v4().simple());
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };

    let relay = Arc::new(Relay::new(
        store.clone(),
        bench_log::database(orders),
        RelayConfig {
            kafka: order_kafka_projector::KafkaConnection::new(env("KAFKA_BOOTSTRAP_SERVERS")),
            schema_registry_url: env("SCHEMA_REGISTRY_URL"),
            topic: topic.clone(),
            partitions: 6,
            replication_factor: 1,
            batch_size: 500,
            kafka_timeout: Duration::from_secs(30),
        },
    ));
    let started = Instant::now();
    let relaying = tokio::spawn({
        let relay = relay.clone();
        let stopped = until_stopped(stopped.clone());
        async move { relay.run(stopped).await }
    });
    let took = until(started, total, "relay", || relay.health().published).await;
    report("relay: event store -> Kafka", total, took);

    let mut es = EsConfig::new(env("ELASTICSEARCH_URL"));
    es.prefix = format!("bench-{}-", Uuid::new_v4().simple());
    let read = Arc::new(
        EsReadStore::open(es.clone())
            .await
            .expect("open Elasticsearch"),
    );
    let mut config = ProjectorConfig::new(
        order_kafka_projector::KafkaConnection::new(env("KAFKA_BOOTSTRAP_SERVERS")),
        &env("SCHEMA_REGISTRY_URL"),
        &topic,
    );
    config.group_id = format!("{topic}-group");
    let projector = Arc::new(KafkaProjector::new(config, read));
    let started = Instant::now();
    let projecting = tokio::spawn({
        let projector = projector.clone();
        let stopped = until_stopped(stopped.clone());
        async move { projector.run(stopped).await }
    });
    let took = until(started, total, "projector", || {
        projector.health().status().consumed
    })
    .await;
    report("projector: Kafka -> Elasticsearch", total, took);

    let _ = stop.send(true);
    let _ = tokio::join!(relaying, projecting);
    let _ = reqwest::Client::new()
        .delete(format!("{}/{}*", es.url, es.prefix))
        .send()
        .await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env("KAFKA_BOOTSTRAP_SERVERS"))
        .create()
        .expect("Kafka admin client");
    let topics = [
        topic.clone(),
        format!("{topic}.watermarks"),
        format!("{topic}.dlq"),
    ];
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

fn report(stage: &str, events: u64, took: Duration) {
    eprintln!(
        "{stage}: {events} events in {:.2} s: {:.0} events/s",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
}
