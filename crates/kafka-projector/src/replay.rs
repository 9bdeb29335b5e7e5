//! `dead-letters replay`: gives every dead letter another chance, once its cause is fixed
//! (the missing event of a gap arrived, a schema was registered, the code learnt a type).
//!
//! The replay reads `<topic>.dlq` with a consumer group of its own (`<group>-dlq-replay`)
//! from its committed offsets to the end, and applies each letter through the very path
//! the projector uses ([`EsReadStore::apply_stream`]), so it is idempotent by version: a
//! letter whose order is already past it is *obsolete*, not applied twice. It then commits,
//! per dead-letter partition, the offsets up to the first letter that still fails: offsets
//! are a prefix, so a letter still failing is read again by the next replay (and letters
//! after it that did apply then count as obsolete). Nothing is ever deleted from the topic.

use crate::ProjectorConfig;
use crate::decode::{DecodeFailure, MessageDecoder};
use crate::dlq::{DLQ_REASON, Incoming, dlq_topic};
use order_read_model_es::{EsReadStore, StreamOutcome};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A dead letter the replay could not apply.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StillFailing {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// The order id (the message key).
    pub key: Option<String>,
    /// Why it still does not apply now.
    pub reason: String,
    /// Why it was dead-lettered in the first place.
    pub original_reason: Option<String>,
}

/// What a replay did.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Dead letters read (from the replay group's committed offsets to the end).
    pub examined: usize,
    /// Applied to the read model now.
    pub applied: usize,
    /// Already covered by the read model (applied since, or by an earlier replay).
    pub obsolete: usize,
    pub still_failing: Vec<StillFailing>,
    /// Per dead-letter partition, the offset committed for the replay group.
    pub committed: BTreeMap<i32, i64>,
}

/// The replay's consumer group.
pub fn replay_group(config: &ProjectorConfig) -> String {
    format!("{}-dlq-replay", config.group_id)
}

/// Replays the dead letters of `config.topic` into `read`.
pub async fn replay(config: &ProjectorConfig, read: &EsReadStore) -> Result<ReplayReport, String> {
    let reading = config.clone();
    let (consumer, letters) = tokio::task::spawn_blocking(move || read_pending(&reading))
        .await
        .map_err(|e| e.to_string())??;
    let mut decoder = MessageDecoder::new(&config.schema_registry_url)
        .map_err(|e| format!("schema registry: {e:?}"))?;
    let mut report = ReplayReport {
        examined: letters.len(),
        ..ReplayReport::default()
    };
    let mut failed_partitions = BTreeSet::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for letter in &letters {
        let traceparent = letter.header(order_relay::kafka::TRACEPARENT);
        let outcome = match decoder.decode(letter.value.as_deref(), traceparent).await {
            Ok(event) => match read.apply_stream(std::slice::from_ref(&event)).await {
                Ok(outcomes) => outcomes
                    .into_iter()
                    .next()
                    .unwrap_or(StreamOutcome::AlreadyApplied),
                Err(e) => return Err(format!("Elasticsearch: {e}")),
            },
            Err(DecodeFailure::Poison(reason)) => StreamOutcome::Refused(reason),
            Err(DecodeFailure::Unavailable(e)) => return Err(format!("schema registry: {e}")),
        };
        match outcome {
            StreamOutcome::Applied => report.applied += 1,
            StreamOutcome::AlreadyApplied => report.obsolete += 1,
            StreamOutcome::Refused(reason) => {
                failed_partitions.insert(letter.partition);
                report.still_failing.push(StillFailing {
                    dlq_partition: letter.partition,
                    dlq_offset: letter.offset,
                    key: letter
                        .key
                        .as_deref()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    reason,
                    original_reason: letter.header(DLQ_REASON),
                });
                next.entry(letter.partition).or_insert(letter.offset);
                continue;
            }
        }
        if !failed_partitions.contains(&letter.partition) {
            next.insert(letter.partition, letter.offset + 1);
        }
    }
    let topic = dlq_topic(&config.topic);
    let mut list = TopicPartitionList::new();
    for (partition, offset) in &next {
        let _ = list.add_partition_offset(&topic, *partition, Offset::Offset(*offset));
    }
    if list.count() > 0 {
        tokio::task::spawn_blocking(move || {
            let done = consumer.commit(&list, CommitMode::Sync);
            std::thread::spawn(move || drop(consumer));
            done
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("committing the replay's offsets: {e}"))?;
    }
    report.committed = next;
    Ok(report)
}

/// The dead letters after the replay group's committed offsets, in partition and offset
/// order, and the consumer to commit with. Blocking.
fn read_pending(config: &ProjectorConfig) -> Result<(BaseConsumer, Vec<Incoming>), String> {
    let topic = dlq_topic(&config.topic);
    let timeout = config.kafka_timeout;
    let consumer: BaseConsumer = config
        .kafka
        .client()
        .set("group.id", replay_group(config))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), timeout)
        .map_err(|e| format!("reading the metadata of {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut letters = Vec::new();
    if partitions.is_empty() {
        return Ok((consumer, letters));
    }
    let mut asked = TopicPartitionList::new();
    for p in &partitions {
        asked.add_partition(&topic, *p);
    }
    let committed = consumer
        .committed_offsets(asked, timeout)
        .map_err(|e| format!("reading the replay group's offsets: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    let mut open = BTreeSet::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, *p, timeout)
            .map_err(|e| e.to_string())?;
        let start = match committed.find_partition(&topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        if start < high {
            open.insert(*p);
            let _ = assignment.add_partition_offset(&topic, *p, Offset::Offset(start));
        }
    }
    if open.is_empty() {
        return Ok((consumer, letters));
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "reading {topic} did not reach its end within {timeout:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            Some(Ok(message)) => letters.push(Incoming::from_message(&message)),
        }
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok((consumer, letters))
}
