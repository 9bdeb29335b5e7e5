//! The dead-letter topic `<topic>.dlq` (DESIGN §6): where a message goes that cannot be
//! decoded or applied, so that its partition keeps flowing.
//!
//! A dead letter is the original message, byte for byte (key, value, headers), plus
//! headers saying why and from where: `dlq-reason` (for a person), `dlq-stage` (`decode`
//! or `apply`), `dlq-source-topic`, `dlq-source-partition`, `dlq-source-offset` and
//! `dlq-failed-at` (RFC 3339). It goes to the same partition number as its source (the
//! topic is created with the source's partition count), so one order's dead letters stay
//! in order, which a replay relies on.
//!
//! A dead letter is produced, and acknowledged, before the source offset is committed; a
//! crash in between produces it again on redelivery. So the topic may hold a letter twice;
//! the replay is idempotent by version, and the list shows both.

use crate::ProjectorConfig;
use order_relay::kafka::{Committed, create_topics, read_all_committed};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use std::time::Duration;

pub const DLQ_REASON: &str = "dlq-reason";
pub const DLQ_STAGE: &str = "dlq-stage";
pub const DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
pub const DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
pub const DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";
pub const DLQ_FAILED_AT: &str = "dlq-failed-at";

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Where a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Its bytes are not an `OrderEvent` this code can read.
    Decode,
    /// It decoded, but does not apply to its order (a version gap, a fold error).
    Apply,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Apply => "apply",
        }
    }
}

/// A consumed message, owned (the borrowed one cannot outlive the next poll).
#[derive(Clone, Debug)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The message's timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

impl Incoming {
    pub fn from_message(message: &BorrowedMessage<'_>) -> Incoming {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Incoming {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    /// A header as text (lossy), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Produces dead letters of one source topic.
#[derive(Clone)]
pub struct DeadLetterProducer {
    producer: FutureProducer,
    /// `<source>.dlq`.
    topic: String,
    /// Partitions of the dead-letter topic (the source's count when this created it).
    partitions: i32,
    timeout: Duration,
}

impl DeadLetterProducer {
    /// An idempotent producer (`acks=all`), the dead-letter topic created if missing with
    /// as many partitions as the source topic.
    pub async fn create(config: &ProjectorConfig) -> Result<DeadLetterProducer, String> {
        let producer: FutureProducer = config
            .kafka
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                config.kafka_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|e| format!("creating the dead-letter producer: {e}"))?;
        let source = partition_count(&producer, &config.topic, config.kafka_timeout).await?;
        if source == 0 {
            return Err(format!(
                "topic {} does not exist yet (the relay creates it)",
                config.topic
            ));
        }
        let topic = dlq_topic(&config.topic);
        let new = NewTopic::new(
            &topic,
            source,
            TopicReplication::Fixed(config.replication_factor),
        )
        .set("retention.ms", "-1");
        create_topics(&config.kafka, &[new], config.kafka_timeout)
            .await
            .map_err(|e| e.to_string())?;
        // An existing dead-letter topic keeps its own count: write only to partitions it has.
        let partitions = partition_count(&producer, &topic, config.kafka_timeout)
            .await?
            .max(1);
        let timeout = config.kafka_timeout;
        Ok(DeadLetterProducer {
            producer,
            topic,
            partitions,
            timeout,
        })
    }

    /// Produces the dead letter of `message` and waits until the broker has it.
    pub async fn send(
        &self,
        message: &Incoming,
        stage: Stage,
        reason: &str,
    ) -> Result<(i32, i64), String> {
        let partition = message.partition.rem_euclid(self.partitions);
        let source_partition = message.partition.to_string();
        let source_offset = message.offset.to_string();
        let failed_at = chrono::Utc::now().to_rfc3339();
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len() + 6);
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        for (key, value) in [
            (DLQ_REASON, reason),
            (DLQ_STAGE, stage.as_str()),
            (DLQ_SOURCE_TOPIC, message.topic.as_str()),
            (DLQ_SOURCE_PARTITION, source_partition.as_str()),
            (DLQ_SOURCE_OFFSET, source_offset.as_str()),
            (DLQ_FAILED_AT, failed_at.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .partition(partition)
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        self.producer
            .send(record, self.timeout)
            .await
            .map_err(|(e, _)| format!("producing to {}: {e}", self.topic))
    }
}

/// The partitions of `topic` (0 when it does not exist), from the metadata. Blocking
/// call, run off the async threads.
async fn partition_count(
    producer: &FutureProducer,
    topic: &str,
    timeout: Duration,
) -> Result<i32, String> {
    let (asking, topic) = (producer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let metadata = asking
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| format!("reading the metadata of {topic}: {e}"))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// One dead letter as `dead-letters list` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub failed_at: Option<String>,
    /// The message key (the order id), as text.
    pub key: Option<String>,
    /// From the original message's headers, or else its value when it decodes.
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub version: Option<u64>,
}

impl DeadLetter {
    pub fn from_committed(message: &Committed) -> DeadLetter {
        let text = |name: &str| message.header(name).map(str::to_string);
        DeadLetter {
            dlq_partition: message.partition,
            dlq_offset: message.offset,
            source_topic: text(DLQ_SOURCE_TOPIC),
            source_partition: text(DLQ_SOURCE_PARTITION).and_then(|p| p.parse().ok()),
            source_offset: text(DLQ_SOURCE_OFFSET).and_then(|p| p.parse().ok()),
            stage: text(DLQ_STAGE),
            reason: text(DLQ_REASON),
            failed_at: text(DLQ_FAILED_AT),
            key: message
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            event_type: text(order_relay::kafka::EVENT_TYPE),
            event_id: text(order_relay::kafka::EVENT_ID),
            version: text(order_relay::kafka::STREAM_VERSION).and_then(|v| v.parse().ok()),
        }
    }
}

/// Every dead letter of `topic`, partition by partition, oldest first.
pub async fn list(config: &ProjectorConfig) -> Result<Vec<DeadLetter>, String> {
    let read = read_all_committed(
        &config.kafka,
        &dlq_topic(&config.topic),
        config.kafka_timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    // Letters without the relay's headers (hand-made messages): whatever their value says.
    let mut decoder = crate::decode::MessageDecoder::new(&config.schema_registry_url).ok();
    let mut letters = Vec::with_capacity(read.len());
    for message in &read {
        let mut letter = DeadLetter::from_committed(message);
        if letter.event_type.is_none()
            && let Some(decoder) = decoder.as_mut()
            && let Ok(event) = decoder.decode(message.value.as_deref(), None).await
        {
            letter.event_type = Some(event.event_type);
            letter.event_id = Some(event.event_id.to_string());
            letter.version = Some(event.version);
        }
        letters.push(letter);
    }
    Ok(letters)
}
