//! Everything the relay says to Kafka: the topic, the transactional producer, one message per
//! event (key, Avro value, headers), and the scan of the topic's committed tail that recovers
//! the checkpoint.
//!
//! rdkafka's transaction calls (`init_transactions`, `commit_transaction`, …) and its metadata
//! and consumer calls block the calling thread, so they run on tokio's blocking pool.

use crate::watermark::{Watermark, watermark_topic};
use crate::{RelayConfig, RelayError};
use order_event_store::{LogCursor, RecordedEvent, StoreId};
use order_messaging::OrderEventEncoder;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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

fn kafka_error(what: &str, e: impl std::fmt::Display) -> RelayError {
    RelayError::Kafka(format!("{what}: {e}"))
}

/// Runs a blocking rdkafka call on the blocking pool.
async fn blocking<T: Send + 'static>(
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
    create_topics(
        &config.bootstrap_servers,
        &[data, watermarks],
        config.kafka_timeout,
    )
    .await
}

/// Creates `topics` unless they exist.
pub async fn create_topics(
    bootstrap: &str,
    topics: &[NewTopic<'_>],
    timeout: Duration,
) -> Result<(), RelayError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
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

fn read_committed_consumer(bootstrap: &str) -> Result<BaseConsumer, RelayError> {
    // Partitions are assigned by hand and no offset is ever committed; librdkafka still wants a
    // group id for `assign`.
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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
fn read_uncommitted_consumer(bootstrap: &str) -> Result<BaseConsumer, RelayError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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
fn close_in_background(consumer: BaseConsumer) {
    std::thread::spawn(move || drop(consumer));
}

fn partitions(
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
    let (bootstrap, topic, timeout) = (
        config.bootstrap_servers.clone(),
        config.topic.clone(),
        config.kafka_timeout,
    );
    blocking(move || {
        let consumer = read_committed_consumer(&bootstrap)?;
        let uncommitted = read_uncommitted_consumer(&bootstrap)?;
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
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Committed>, RelayError> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    blocking(move || {
        let consumer = read_committed_consumer(&bootstrap)?;
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

/// A cheap reachability probe for `/health/ready`: the topic's metadata.
pub async fn probe(config: &RelayConfig) -> Result<(), String> {
    let (bootstrap, topic) = (config.bootstrap_servers.clone(), config.topic.clone());
    blocking(move || {
        let consumer = read_committed_consumer(&bootstrap)?;
        let found = partitions(&consumer, &topic, Duration::from_secs(2)).map(|_| ());
        close_in_background(consumer);
        found
    })
    .await
    .map_err(|e| e.to_string())
}
