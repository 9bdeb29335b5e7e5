//! The production projector (DESIGN §6, §7): `order-events` into the Elasticsearch read
//! model, as a Kafka consumer group.
//!
//! # The pieces
//!
//! * [`projector`]: the consumer loop ([`KafkaProjector`]): batches of messages, one
//!   `_bulk` per batch, offsets committed only after Elasticsearch acknowledged;
//! * [`decode`]: wire format, writer schema from the registry (cached), back to a
//!   `RecordedEvent`;
//! * [`dlq`]: the dead-letter topic `<topic>.dlq`, and listing it;
//! * [`replay`]: `dead-letters replay`;
//! * [`freshness`]: read-your-writes from the relay's watermarks;
//! * [`health`]: state, counters and lag for `/health/ready` and `/metrics`.
//!
//! # Effectively once
//!
//! Kafka redelivers whatever was not committed, so every guarantee rests on the apply
//! being idempotent (`EsReadStore::apply_stream`: a document's version only moves
//! forward, by Elasticsearch's external versioning) and on committing only what
//! Elasticsearch holds. A crash anywhere means redelivery, never loss; redelivery
//! changes nothing. An event that would leave a hole in its order (a version gap) is not
//! applied but dead-lettered, with every later event of that order, so that a document
//! never claims a version whose events it lacks.

pub mod checks;
pub mod decode;
pub mod dlq;
pub mod freshness;
pub mod health;
pub mod projector;
pub mod replay;

pub use dlq::{DeadLetter, Stage};
pub use freshness::WatermarkFreshness;
pub use health::{Dependency, Health, ProjectorStatus};
pub use order_relay::KafkaConnection;
pub use projector::KafkaProjector;
pub use replay::{ReplayReport, StillFailing};

use std::time::Duration;

/// The default consumer group of the query side.
pub const DEFAULT_GROUP_ID: &str = "order-platform-query";
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(200);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the projector is told.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// The brokers and how to connect to them (TLS, SASL).
    pub kafka: KafkaConnection,
    /// The Schema Registry's Confluent-compatible API root.
    pub schema_registry_url: String,
    /// The topic of order events (the relay's `--topic`).
    pub topic: String,
    /// The consumer group: replicas with the same group share the partitions.
    pub group_id: String,
    /// Most messages applied in one `_bulk`.
    pub batch_size: usize,
    /// How long a batch waits for more messages after its first.
    pub batch_wait: Duration,
    /// Deadline of Kafka calls (metadata, dead letters, reading the dead-letter topic).
    pub kafka_timeout: Duration,
    /// Replication factor of the dead-letter topic, when the projector creates it.
    pub replication_factor: i32,
}

impl ProjectorConfig {
    pub fn new(kafka: KafkaConnection, schema_registry_url: &str, topic: &str) -> Self {
        ProjectorConfig {
            kafka,
            schema_registry_url: schema_registry_url.to_string(),
            topic: topic.to_string(),
            group_id: DEFAULT_GROUP_ID.to_string(),
            batch_size: 500,
            batch_wait: Duration::from_millis(5),
            kafka_timeout: Duration::from_secs(30),
            replication_factor: 1,
        }
    }
}
