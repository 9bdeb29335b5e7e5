//! Read-your-writes for a query side fed through Kafka (DESIGN §4.3), from the relay's
//! watermarks (`order_relay::watermark` says what they are and why they are exact).
//!
//! A follower thread reads `<topic>.watermarks` (`read_committed`, from a few records
//! before its end) and keeps the latest watermark of this store. Waiting for token P:
//!
//! 1. wait until a watermark with `globalPosition >= P` is known: every event up to P is
//!    then committed in the topic, and its `lastOffsets` bound where they all are;
//! 2. wait until every partition's applied offset, read from the progress documents in
//!    Elasticsearch (every ~20 ms), reaches that watermark's offset for it.
//!
//! Reading progress from Elasticsearch rather than from this process makes the answer the
//! same on every query-service replica, whichever owns which partitions.

use order_event_store::{ConsistencyToken, StoreId};
use order_query_service::Freshness;
use order_read_model_es::EsReadStore;
use order_relay::KafkaConnection;
use order_relay::watermark::{Watermark, watermark_topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How often the progress documents are read while waiting.
pub const PROGRESS_POLL: Duration = Duration::from_millis(20);

/// Follows the watermarks of one topic: the [`Freshness`] of a Kafka-fed query service.
pub struct WatermarkFreshness {
    topic: String,
    read: Arc<EsReadStore>,
    latest: watch::Receiver<Option<Watermark>>,
    /// Tells the follower thread to end (on drop).
    stop: Arc<AtomicBool>,
}

impl Drop for WatermarkFreshness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl WatermarkFreshness {
    /// Starts following `<topic>.watermarks` for the watermarks of `store`.
    pub fn start(
        kafka: &KafkaConnection,
        topic: &str,
        store: StoreId,
        read: Arc<EsReadStore>,
    ) -> WatermarkFreshness {
        let (tx, latest) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let (kafka, marks, stopping) = (kafka.clone(), watermark_topic(topic), stop.clone());
        std::thread::Builder::new()
            .name("watermarks".into())
            .spawn(move || follow(&kafka, &marks, store, &tx, &stopping))
            .ok();
        WatermarkFreshness {
            topic: topic.to_string(),
            read,
            latest,
            stop,
        }
    }

    /// The latest watermark known.
    pub fn latest(&self) -> Option<Watermark> {
        self.latest.borrow().clone()
    }

    /// True once everything up to `token` is applied to the read store; false when
    /// `timeout` passes first.
    pub async fn wait_for(&self, token: ConsistencyToken, timeout: Duration) -> bool {
        if token.0 == 0 {
            return true;
        }
        tokio::time::timeout(timeout, self.covered(token))
            .await
            .is_ok()
    }

    async fn covered(&self, token: ConsistencyToken) {
        let mut latest = self.latest.clone();
        let wanted = i64::try_from(token.0).unwrap_or(i64::MAX);
        let found = latest
            .wait_for(|m| m.as_ref().is_some_and(|m| m.global_position >= wanted))
            .await
            .map(|mark| mark.clone().unwrap_or_default());
        let Ok(mark) = found else {
            // The follower ended: the token can never be known covered.
            return std::future::pending().await;
        };
        let partitions: Vec<i32> = mark.last_offsets.keys().copied().collect();
        loop {
            match self.read.progress(&self.topic, &partitions).await {
                Ok(progress) => {
                    let done = mark.last_offsets.iter().all(|(p, last)| {
                        progress
                            .get(p)
                            .is_some_and(|applied| applied.offset >= *last)
                    });
                    if done {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "reading projector progress"),
            }
            tokio::time::sleep(PROGRESS_POLL).await;
        }
    }
}

#[async_trait::async_trait]
impl Freshness for WatermarkFreshness {
    async fn wait_for(&self, token: ConsistencyToken, timeout: Duration) -> bool {
        WatermarkFreshness::wait_for(self, token, timeout).await
    }
}

/// The follower thread: (re)connects, reads watermarks, publishes the newest of `store`.
fn follow(
    kafka: &KafkaConnection,
    topic: &str,
    store: StoreId,
    tx: &watch::Sender<Option<Watermark>>,
    stop: &AtomicBool,
) {
    let ours = store.0.to_string();
    while !stop.load(Ordering::Relaxed) {
        let consumer = match subscribe_to_tail(kafka, topic) {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::debug!(error = %e, topic, "cannot follow the watermarks yet; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = match polled {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(error = %e, "reading the watermarks");
                    continue;
                }
            };
            let Some(mark) = message
                .payload()
                .and_then(|v| serde_json::from_slice::<Watermark>(v).ok())
            else {
                continue;
            };
            if mark.store_id != ours {
                tracing::warn!(theirs = %mark.store_id, %ours, "a watermark of another store ignored");
                continue;
            }
            tx.send_if_modified(|latest| match latest {
                Some(known) if known.global_position >= mark.global_position => false,
                _ => {
                    *latest = Some(mark);
                    true
                }
            });
        }
    }
}

/// A consumer of the watermark topic's single partition, a few records before its end
/// (the latest watermark says everything; the tail may end in transaction markers).
fn subscribe_to_tail(kafka: &KafkaConnection, topic: &str) -> Result<BaseConsumer, String> {
    let consumer: BaseConsumer = kafka
        .client()
        // Assigned by hand, never committed; librdkafka still wants a group id.
        .set("group.id", "order-query-watermarks")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "20")
        // A tail longer than the topic starts at its beginning.
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Err(format!("{topic} does not exist yet"));
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::OffsetTail(16))
        .map_err(|e| e.to_string())?;
    consumer.assign(&list).map_err(|e| e.to_string())?;
    Ok(consumer)
}
