//! Everything the relay says to Kafka: the topic, the transactional producer, one message per
//! event (key, Avro value, headers), and the scan of the topic's committed tail that recovers
//! the checkpoint.
//!
//! rdkafka's transaction calls (`init_transactions`, `commit_transaction`, …) and its metadata
//! and consumer calls block the calling thread, so they run on tokio's blocking pool.

use crate::KafkaConnection;
use crate::watermark::{Watermark, watermark_topic};
use crate::{RelayConfig, RelayError};
use order_event_store::{RecordedEvent, StoreId};
use order_messaging::OrderEventEncoder;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use crate::scan::{Committed, committed_cursor, committed_tail, read_all_committed};
use crate::scan::{close_in_background, partitions, read_committed_consumer};

/// Header names (DESIGN.md §6), plus `store-id`: the identity of the store the event comes from.
pub const EVENT_TYPE: &str = "event-type";
pub const EVENT_ID: &str = "event-id";
pub const STREAM_VERSION: &str = "stream-version";
pub const GLOBAL_POSITION: &str = "global-position";
pub const TRACEPARENT: &str = "traceparent";
pub const CORRELATION_ID: &str = "correlation-id";
pub const STORE_ID: &str = "store-id";

/// The `transactional.id` of the relay of `store` into `topic`. Fixed per store and topic, so a
/// relay that starts fences every earlier incarnation (a zombie can no longer commit), and two
/// relays of different stores or topics never fence each other.
pub fn transactional_id(store: StoreId, topic: &str) -> String {
    format!("order-relay-{}-{topic}", store.0.simple())
}

pub(crate) fn kafka_error(what: &str, e: impl std::fmt::Display) -> RelayError {
    RelayError::Kafka(format!("{what}: {e}"))
}

/// Runs a blocking rdkafka call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RelayError> + Send + 'static,
) -> Result<T, RelayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RelayError::Kafka(format!("a Kafka call panicked or was cancelled: {e}")))?
}

/// Creates the topic with the configured partitions unless it exists, and its watermark
/// topic (one partition, compacted: only the latest watermark matters). Retention of the
/// data topic is unlimited: it is the relay's checkpoint, and consumers may replay it from
/// the start.
pub async fn ensure_topic(config: &RelayConfig) -> Result<(), RelayError> {
    let data = NewTopic::new(
        &config.topic,
        config.partitions,
        TopicReplication::Fixed(config.replication_factor),
    )
    .set("retention.ms", "-1")
    .set("cleanup.policy", "delete");
    let marks = watermark_topic(&config.topic);
    let watermarks = NewTopic::new(
        &marks,
        1,
        TopicReplication::Fixed(config.replication_factor),
    )
    .set("cleanup.policy", "compact");
    create_topics(&config.kafka, &[data, watermarks], config.kafka_timeout).await
}

/// Creates `topics` unless they exist.
pub async fn create_topics(
    kafka: &KafkaConnection,
    topics: &[NewTopic<'_>],
    timeout: Duration,
) -> Result<(), RelayError> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client()
        .create()
        .map_err(|e| kafka_error("creating the admin client", e))?;
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(topics, &options)
        .await
        .map_err(|e| kafka_error("creating topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created the topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RelayError::Kafka(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

/// A transactional, idempotent producer (`acks=all`), its transactions initialised: every
/// earlier producer with the same `transactional.id` is fenced, and its open transaction
/// aborted, before this returns.
pub async fn transactional_producer(
    config: &RelayConfig,
    store: StoreId,
) -> Result<FutureProducer, RelayError> {
    let producer: FutureProducer = config
        .kafka
        .client()
        .set("transactional.id", transactional_id(store, &config.topic))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set(
            "transaction.timeout.ms",
            (config.kafka_timeout.as_millis() * 2).to_string(),
        )
        .set(
            "message.timeout.ms",
            config.kafka_timeout.as_millis().to_string(),
        )
        .create()
        .map_err(|e| kafka_error("creating the producer", e))?;
    let timeout = config.kafka_timeout;
    let init = producer.clone();
    blocking(move || {
        init.init_transactions(timeout)
            .map_err(|e| kafka_error("initialising transactions", e))
    })
    .await?;
    Ok(producer)
}

/// The headers of one event's message.
pub fn headers(event: &RecordedEvent, store: StoreId) -> OwnedHeaders {
    let version = event.version.to_string();
    let position = event.global_position.to_string();
    let event_id = event.event_id.to_string();
    let store = store.0.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(7)
        .insert(Header {
            key: EVENT_TYPE,
            value: Some(event.event_type.as_str()),
        })
        .insert(Header {
            key: EVENT_ID,
            value: Some(event_id.as_str()),
        })
        .insert(Header {
            key: STREAM_VERSION,
            value: Some(version.as_str()),
        })
        .insert(Header {
            key: GLOBAL_POSITION,
            value: Some(position.as_str()),
        })
        .insert(Header {
            key: CORRELATION_ID,
            value: Some(event.correlation_id.as_str()),
        })
        .insert(Header {
            key: STORE_ID,
            value: Some(store.as_str()),
        });
    if let Some(traceparent) = &event.traceparent {
        headers = headers.insert(Header {
            key: TRACEPARENT,
            value: Some(traceparent.as_str()),
        });
    }
    headers
}

/// One event, ready to send.
pub struct Outgoing {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: OwnedHeaders,
}

/// Encodes a batch before any transaction begins, so an event that cannot be encoded stops the
/// relay without leaving an aborted transaction behind.
pub fn encode(
    events: &[RecordedEvent],
    encoder: &OrderEventEncoder,
    store: StoreId,
) -> Result<Vec<Outgoing>, RelayError> {
    events
        .iter()
        .map(|event| {
            let value = encoder.encode(event).map_err(|e| RelayError::Poison {
                position: event.global_position,
                reason: e.to_string(),
            })?;
            Ok(Outgoing {
                key: event.stream_id.to_string(),
                value,
                headers: headers(event, store),
            })
        })
        .collect()
}

/// Publishes `batch` in one transaction: begin, send all, wait for every acknowledgement,
/// add the [`Watermark`] (position `through`, offsets `last_offsets` updated with the
/// batch's), commit. On success `last_offsets` holds the offsets now committed. On any failure the transaction is aborted (best effort) and the error returned; the
/// caller then recovers its cursor from the topic, since a commit whose answer was lost may
/// still have succeeded.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    batch: Vec<Outgoing>,
    mark: &mut Watermark,
    timeout: Duration,
) -> Result<(), RelayError> {
    producer
        .begin_transaction()
        .map_err(|e| kafka_error("beginning a transaction", e))?;
    let mut next = mark.clone();
    let sent = match send_all(producer, topic, batch, timeout).await {
        Ok(offsets) => {
            for (partition, offset) in offsets {
                let last = next.last_offsets.entry(partition).or_insert(offset);
                *last = (*last).max(offset);
            }
            send_watermark(producer, topic, &next, timeout).await
        }
        Err(e) => Err(e),
    };
    let outcome = match sent {
        Ok(()) => {
            let committing = producer.clone();
            blocking(move || {
                committing
                    .commit_transaction(timeout)
                    .map_err(|e| kafka_error("committing the transaction", e))
            })
            .await
        }
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        let aborting = producer.clone();
        let _ = blocking(move || {
            aborting
                .abort_transaction(timeout)
                .map_err(|e| kafka_error("aborting", e))
        })
        .await;
    } else {
        *mark = next;
    }
    outcome
}

/// Sends the watermark `mark` of `topic` (inside the open transaction) and waits for it.
async fn send_watermark(
    producer: &FutureProducer,
    topic: &str,
    mark: &Watermark,
    timeout: Duration,
) -> Result<(), RelayError> {
    let marks = watermark_topic(topic);
    let value = serde_json::to_vec(mark).map_err(|e| kafka_error("encoding the watermark", e))?;
    let record = FutureRecord::to(&marks)
        .key(mark.store_id.as_bytes())
        .payload(&value);
    match producer.send(record, timeout).await {
        Ok(_) => Ok(()),
        Err((e, _)) => Err(kafka_error(&format!("sending the watermark to {marks}"), e)),
    }
}

/// Sends every message and waits for their acknowledgements; returns the highest offset
/// acknowledged per partition.
async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    batch: Vec<Outgoing>,
    timeout: Duration,
) -> Result<HashMap<i32, i64>, RelayError> {
    let mut deliveries = Vec::with_capacity(batch.len());
    for message in &batch {
        let mut record = FutureRecord::to(topic)
            .key(message.key.as_bytes())
            .payload(&message.value)
            .headers(message.headers.clone());
        let deadline = Instant::now() + timeout;
        // The local queue is bounded; when it is full, let deliveries drain and try again.
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(kafka_error("sending", e)),
            }
        }
    }
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    for delivery in futures::future::join_all(deliveries).await {
        match delivery {
            Ok(Ok((partition, offset))) => {
                let last = offsets.entry(partition).or_insert(offset);
                *last = (*last).max(offset);
            }
            Ok(Err((e, _))) => return Err(kafka_error("delivery", e)),
            Err(_) => return Err(RelayError::Kafka("a delivery was cancelled".into())),
        }
    }
    Ok(offsets)
}

/// A cheap reachability probe for `/health/ready`: the topic's metadata.
pub async fn probe(config: &RelayConfig) -> Result<(), String> {
    let (kafka, topic) = (config.kafka.clone(), config.topic.clone());
    blocking(move || {
        let consumer = read_committed_consumer(&kafka)?;
        let found = partitions(&consumer, &topic, Duration::from_secs(2)).map(|_| ());
        close_in_background(consumer);
        found
    })
    .await
    .map_err(|e| e.to_string())
}
