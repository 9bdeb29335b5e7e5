//! A fixture per test against the dev stack's real Kafka, registry and Elasticsearch
//! (`eval "$(dev/stack env)"`): its own topic (3 partitions), registry subject,
//! consumer group and index prefix, all removed afterwards (best effort).
//!
//! Events reach the topic through the relay's own code path (`order_relay::kafka`:
//! encode, one transaction per batch, watermarks), or, for poison, through a plain
//! producer writing whatever bytes a test wants to a chosen partition.
#![allow(dead_code)]

use order_event_store::{RecordedEvent, StoreId};
use order_kafka_projector::{KafkaConnection, KafkaProjector, ProjectorConfig};
use order_messaging::{OrderEventEncoder, OrderEventSchema, SchemaRegistryClient};
use order_read_model_es::{EsConfig, EsReadStore, Refresh};
use order_relay::RelayConfig;
use order_relay::kafka::{self, Outgoing};
use order_relay::watermark::Watermark;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the dev stack and run `eval \"$(dev/stack env)\"`")
    })
}

pub struct Fixture {
    pub topic: String,
    pub bootstrap: String,
    pub registry: String,
    pub es: EsConfig,
    pub read: Arc<EsReadStore>,
    pub store: StoreId,
    pub encoder: OrderEventEncoder,
    relay: FutureProducer,
    mark: Watermark,
    raw: FutureProducer,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let topic = format!("order-events-kp-{}", Uuid::new_v4().simple());
        let mut es = EsConfig::new(env("ELASTICSEARCH_URL"));
        es.prefix = format!("test-{}-", Uuid::new_v4().simple());
        es.refresh = Refresh::Immediate;
        let read = Arc::new(EsReadStore::open(es.clone()).await.expect("open ES"));
        let store = StoreId(Uuid::new_v4());
        let relay_config = RelayConfig {
            kafka: KafkaConnection::new(env("KAFKA_BOOTSTRAP_SERVERS")),
            schema_registry_url: env("SCHEMA_REGISTRY_URL"),
            topic: topic.clone(),
            partitions: 3,
            replication_factor: 1,
            batch_size: 50,
            kafka_timeout: Duration::from_secs(20),
        };
        kafka::ensure_topic(&relay_config)
            .await
            .expect("create the topic");
        let registry = SchemaRegistryClient::new(&relay_config.schema_registry_url).unwrap();
        let schema = OrderEventSchema::current();
        let id = registry
            .register(
                &order_messaging::registry::value_subject(&topic),
                schema.text(),
            )
            .await
            .expect("register the schema");
        let relay = kafka::transactional_producer(&relay_config, store)
            .await
            .expect("relay producer");
        let raw = relay_config.kafka.client().create().expect("raw producer");
        Fixture {
            topic,
            bootstrap: relay_config.kafka.bootstrap_servers().to_string(),
            registry: relay_config.schema_registry_url.clone(),
            es,
            read,
            store,
            encoder: OrderEventEncoder::new(schema.clone(), id),
            relay,
            mark: Watermark {
                store_id: store.0.to_string(),
                ..Watermark::default()
            },
            raw,
        }
    }

    pub fn config(&self) -> ProjectorConfig {
        let mut config = ProjectorConfig::new(
            KafkaConnection::new(self.bootstrap.clone()),
            &self.registry,
            &self.topic,
        );
        config.group_id = format!("{}-group", self.topic);
        config.batch_size = 50;
        config.kafka_timeout = Duration::from_secs(20);
        config
    }

    /// Publishes `events` as the relay does: one transaction per `batch` events.
    pub async fn publish(&mut self, events: &[RecordedEvent], batch: usize) {
        for chunk in events.chunks(batch) {
            let outgoing = kafka::encode(chunk, &self.encoder, self.store).expect("encode");
            self.mark.global_position = chunk.last().map_or(0, |e| e.global_position);
            kafka::publish(
                &self.relay,
                &self.topic,
                outgoing,
                &mut self.mark,
                Duration::from_secs(20),
            )
            .await
            .expect("publish");
        }
    }

    /// One event's message, as the relay would build it.
    pub fn message(&self, event: &RecordedEvent) -> Outgoing {
        kafka::encode(std::slice::from_ref(event), &self.encoder, self.store)
            .expect("encode")
            .remove(0)
    }

    /// Writes raw bytes to `partition` (no transaction).
    pub async fn produce_raw(
        &self,
        partition: i32,
        key: &str,
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        let mut record = FutureRecord::to(&self.topic)
            .partition(partition)
            .key(key.as_bytes())
            .payload(value);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        self.raw
            .send(record, Duration::from_secs(20))
            .await
            .expect("produce");
    }

    /// Writes one event's message to `partition` (no transaction).
    pub async fn produce_event(&self, partition: i32, event: &RecordedEvent) {
        let message = self.message(event);
        let headers = message.headers.clone().insert(Header {
            key: "test",
            value: Some("yes"),
        });
        self.produce_raw(partition, &message.key, &message.value, Some(headers))
            .await;
    }

    /// Runs a projector on this fixture until the handle is stopped.
    pub fn start(&self, config: ProjectorConfig) -> Running {
        let projector = Arc::new(KafkaProjector::new(config, self.read.clone()));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn({
            let projector = projector.clone();
            async move {
                projector
                    .run(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await
            }
        });
        Running {
            projector,
            stop,
            task,
        }
    }

    /// Waits until `check` holds, polling; panics with `what` after `within`.
    pub async fn eventually<F, Fut>(&self, within: Duration, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn clean_up(self) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let topics = [
            self.topic.clone(),
            format!("{}.dlq", self.topic),
            format!("{}.watermarks", self.topic),
        ];
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        let _ = SchemaRegistryClient::new(&self.registry)
            .unwrap()
            .delete_subject(&order_messaging::registry::value_subject(&self.topic))
            .await;
        // By name: Elasticsearch refuses wildcard deletes by default.
        let http = reqwest::Client::new();
        let (url, prefix) = (&self.es.url, &self.es.prefix);
        let listed = http
            .get(format!(
                "{url}/_cat/indices/{prefix}*?format=json&h=index&expand_wildcards=all"
            ))
            .send()
            .await;
        if let Ok(listed) = listed {
            let rows: serde_json::Value = listed.json().await.unwrap_or_default();
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
}

/// A projector running on the test's runtime.
pub struct Running {
    pub projector: Arc<KafkaProjector>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Graceful stop: the batch in hand finishes and is committed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }

    /// A crash: the task is dropped wherever it is, nothing more is committed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
