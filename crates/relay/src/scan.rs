//! The checkpoint scan: the last committed message of every partition of the topic, read
//! back with `read_committed` once no transaction is open in it, is where the relay
//! resumes (and, with its offsets, the watermark it announces); and reading a topic whole
//! for tests.

use crate::KafkaConnection;
use crate::RelayConfig;
use crate::RelayError;
use crate::kafka::{GLOBAL_POSITION, STORE_ID, blocking, kafka_error};
use crate::watermark::Watermark;
use order_event_store::{LogCursor, StoreId};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A committed message as read back from the topic (for the checkpoint scan and for tests).
#[derive(Clone, Debug)]
pub struct Committed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

impl Committed {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).map(String::as_str)
    }

    fn position(&self) -> Result<i64, RelayError> {
        self.header(GLOBAL_POSITION)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| RelayError::ForeignTopic {
                reason: format!(
                    "message at partition {} offset {} has no {GLOBAL_POSITION} header",
                    self.partition, self.offset
                ),
            })
    }
}

pub(crate) fn read_committed_consumer(kafka: &KafkaConnection) -> Result<BaseConsumer, RelayError> {
    // Partitions are assigned by hand and no offset is ever committed; librdkafka still wants a
    // group id for `assign`.
    kafka
        .client()
        .set("group.id", "order-relay-scan")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Reaching a partition's end is the point of every read here: do not linger there.
        .set("fetch.wait.max.ms", "50")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| kafka_error("creating the consumer", e))
}

/// A consumer that sees every message, committed or not: its high watermark is the log's end,
/// where a `read_committed` one stops at the last stable offset.
fn read_uncommitted_consumer(kafka: &KafkaConnection) -> Result<BaseConsumer, RelayError> {
    kafka
        .client()
        .set("group.id", "order-relay-scan")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(|e| kafka_error("creating the consumer", e))
}

/// The partition's (low, last stable offset) once no transaction is open in it: a transaction
/// of ours that was committing when the broker went away may be completed by the coordinator
/// only after it comes back, its markers written after our new producer was initialised. Until
/// then its messages are neither visible nor aborted, and a scan that stopped before them
/// would publish them a second time. Nothing but this relay's transactional id writes to the
/// topic and the new producer fenced the old one, so every open transaction is finishing.
fn settled_watermarks(
    committed: &BaseConsumer,
    uncommitted: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), RelayError> {
    let deadline = Instant::now() + timeout;
    loop {
        let (low, stable) = committed
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| kafka_error("reading watermarks", e))?;
        let (_, end) = uncommitted
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| kafka_error("reading watermarks", e))?;
        if stable >= end {
            return Ok((low, stable));
        }
        if Instant::now() >= deadline {
            return Err(RelayError::Kafka(format!(
                "partition {partition} of {topic} still has an open transaction after \
                 {timeout:?} (stable offset {stable}, end {end})"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Closes a consumer without waiting for it: closing one that has a group id waits seconds for
/// a group coordinator it never used, and nothing here depends on that close.
pub(crate) fn close_in_background(consumer: BaseConsumer) {
    std::thread::spawn(move || drop(consumer));
}

pub(crate) fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, RelayError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka_error(&format!("reading the metadata of {topic}"), e))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    if let Some(e) = found.error() {
        return Err(RelayError::Kafka(format!(
            "topic {topic}: {}",
            RDKafkaErrorCode::from(e)
        )));
    }
    Ok(found.partitions().iter().map(|p| p.id()).collect())
}

/// Reads committed messages of one partition from `start` up to its end (the last stable
/// offset, under `read_committed`).
fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    timeout: Duration,
) -> Result<Vec<Committed>, RelayError> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| kafka_error("assigning", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error("assigning", e))?;
    let deadline = Instant::now() + timeout;
    let mut read = Vec::new();
    loop {
        if Instant::now() >= deadline {
            return Err(RelayError::Kafka(format!(
                "reading partition {partition} of {topic} did not reach its end within {timeout:?}"
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Ok(read),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(kafka_error(&format!("reading {topic}"), e)),
            Some(Ok(message)) => {
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value =
                                    h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_string(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                read.push(Committed {
                    partition,
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
}

/// Where the relay resumes: the highest `global-position` committed in the topic (the cursor
/// after it), found from the last committed message of every partition.
///
/// Every transaction of the relay holds a contiguous run of the log, in order, following the
/// previous committed one; and a transaction commits on all partitions or none. So the events
/// committed in the topic are exactly the log up to that highest position, and resuming after
/// it neither skips nor repeats an event. Must run after `init_transactions` of the relay's
/// producer, which ends (aborts) any transaction an earlier incarnation left open.
///
/// A message without this store's `store-id` header means the topic holds another store's
/// events (or someone else's): [`RelayError::ForeignTopic`], and the relay does not publish.
pub async fn committed_cursor(
    config: &RelayConfig,
    store: StoreId,
) -> Result<LogCursor, RelayError> {
    Ok(committed_tail(config, store).await?.0)
}

/// [`committed_cursor`], with the watermark of the committed tail: the cursor's position
/// and the offset of the last committed message of every partition.
pub async fn committed_tail(
    config: &RelayConfig,
    store: StoreId,
) -> Result<(LogCursor, Watermark), RelayError> {
    let (kafka, topic, timeout) = (
        config.kafka.clone(),
        config.topic.clone(),
        config.kafka_timeout,
    );
    blocking(move || {
        let consumer = read_committed_consumer(&kafka)?;
        let uncommitted = read_uncommitted_consumer(&kafka)?;
        let mut highest = 0;
        let mut mark = Watermark {
            store_id: store.0.to_string(),
            ..Watermark::default()
        };
        for partition in partitions(&consumer, &topic, timeout)? {
            let (low, high) =
                settled_watermarks(&consumer, &uncommitted, &topic, partition, timeout)?;
            if high <= low {
                continue; // empty
            }
            // The tail may end in aborted messages and transaction markers: look back further
            // until a committed message shows up or the partition's start is reached.
            let mut window = 64;
            loop {
                let start = (high - window).max(low);
                let tail = read_partition(&consumer, &topic, partition, start, timeout)?;
                if let Some(last) = tail.last() {
                    let theirs = last.header(STORE_ID).unwrap_or("(none)");
                    if theirs != store.0.to_string() {
                        return Err(RelayError::ForeignTopic {
                            reason: format!(
                                "partition {partition} ends with an event of store {theirs}, \
                                 and this relay publishes store {store}"
                            ),
                        });
                    }
                    highest = highest.max(last.position()?);
                    mark.last_offsets.insert(partition, last.offset);
                    break;
                }
                if start <= low {
                    break;
                }
                window = window.saturating_mul(8);
            }
        }
        close_in_background(consumer);
        close_in_background(uncommitted);
        mark.global_position = highest;
        Ok((LogCursor { position: highest }, mark))
    })
    .await
}

/// Every committed message of `topic`, partition by partition (in offset order within each):
/// what a `read_committed` consumer sees. For tests and for inspecting a topic.
pub async fn read_all_committed(
    kafka: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Committed>, RelayError> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    blocking(move || {
        let consumer = read_committed_consumer(&kafka)?;
        let mut all = Vec::new();
        for partition in partitions(&consumer, &topic, timeout)? {
            let (low, _) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .map_err(|e| kafka_error("reading watermarks", e))?;
            all.extend(read_partition(&consumer, &topic, partition, low, timeout)?);
        }
        close_in_background(consumer);
        Ok(all)
    })
    .await
}
