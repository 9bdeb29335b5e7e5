//! Applying events that arrive from a Kafka partition (the production projector,
//! `order-kafka-projector`), and the per-partition progress documents that say how far
//! each partition has been applied.
//!
//! The embedded projector reads the gap-free log of one store, so an event ahead of its
//! order's stored version can only mean a bug, and `fold_event` skips it with a warning.
//! A Kafka consumer sees what is in the topic: an event ahead of its order (an earlier
//! one was dead-lettered, or a producer misbehaved) must not be silently skipped, because
//! applying later events on top of a hole would misstate the order. So this path folds
//! strictly and answers, per event, whether it was applied, was already applied
//! (redelivery), or is refused, and why: the caller dead-letters refused events.
//!
//! Progress is not the log checkpoint of [`ReadStore::apply`](order_read_model::ReadStore):
//! a Kafka projector never touches that. It writes one document per (topic, partition) in
//! the meta index, `progress.<topic>.<partition>`, after the orders' `_bulk` was
//! acknowledged, with `version_type=external_gte` at the partition offset: like the
//! orders, progress only moves forward, whichever replica writes it and in whatever order.
//! The query side's read-your-writes wait reads these documents (`progress`), so replicas
//! sharing a consumer group answer consistently.

use crate::EsReadStore;
use crate::client::failed;
use order_domain::Order;
use order_event_store::RecordedEvent;
use order_read_model::ReadError;
use order_read_model::fold::fold_event;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

/// What became of one event given to [`EsReadStore::apply_stream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Folded into its order, which was written.
    Applied,
    /// At or below its order's stored version: applied before (redelivery, a replay).
    AlreadyApplied,
    /// Not applied: the reason, for a person (the caller dead-letters it).
    Refused(String),
}

/// How far one partition has been applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Offset of the last message applied (or dead-lettered) in the partition.
    pub offset: i64,
    /// The highest global position among the events applied from it.
    pub global_position: i64,
}

impl EsReadStore {
    /// Folds `events` (in the order given, as they came from their partitions) into the
    /// stored orders, strictly: an event must be exactly its order's next version. Writes
    /// the changed orders in one `_bulk` (external versioning: a document's version only
    /// moves forward), and returns one outcome per event, in order. Touches no checkpoint.
    ///
    /// An event refused for its order makes every later event of that order in the batch
    /// refused too (they would have a hole under them); in later batches the stored
    /// version, still behind, refuses them as gaps.
    ///
    /// Errors only when Elasticsearch is unavailable (nothing is then known to be
    /// written; retry the whole batch).
    pub async fn apply_stream(
        &self,
        events: &[RecordedEvent],
    ) -> Result<Vec<StreamOutcome>, ReadError> {
        let _writer = self.write_gate.lock().await;
        let index = self.alias.clone();
        let mut ids: Vec<Uuid> = Vec::new();
        for event in events {
            if !ids.contains(&event.stream_id) {
                ids.push(event.stream_id);
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.load(&index, &ids).await?;
        let mut orders: HashMap<Uuid, Option<Order>> = ids
            .iter()
            .map(|id| (*id, stored.get(id).cloned()))
            .collect();
        let mut blocked: HashMap<Uuid, u64> = HashMap::new();
        let mut dirty: Vec<Uuid> = Vec::new();
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let order = orders.entry(event.stream_id).or_default();
            outcomes.push(fold_strictly(order, event, &mut blocked, &mut dirty));
        }
        let mut body = String::new();
        for id in &dirty {
            if let Some(Some(order)) = orders.get(id) {
                let action = json!({ "index": {
                    "_id": order.id.to_string(),
                    "version": order.version,
                    "version_type": "external",
                } });
                body.push_str(&action.to_string());
                body.push('\n');
                body.push_str(&crate::doc::document(order).to_string());
                body.push('\n');
            }
        }
        if !body.is_empty() {
            self.bulk(&index, self.refresh.param(), body).await?;
        }
        Ok(outcomes)
    }

    /// Records that `topic`/`partition` is applied up to `progress` (call after the
    /// batch's `apply_stream` returned). Only ever moves forward.
    pub async fn store_progress(
        &self,
        topic: &str,
        partition: i32,
        progress: PartitionProgress,
    ) -> Result<(), ReadError> {
        if progress.offset < 0 {
            return Ok(());
        }
        let path = format!(
            "/{}/_doc/{}?version={}&version_type=external_gte",
            self.meta,
            progress_id(topic, partition),
            progress.offset
        );
        let body = json!({
            "topic": topic,
            "partition": partition,
            "offset": progress.offset,
            "globalPosition": progress.global_position,
        });
        let answer = self.es.call(Method::PUT, &path, Some(&body)).await?;
        // 409: a replica recorded more progress already; it stays.
        if answer.status.is_success() || answer.status == StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(failed(&Method::PUT, &path, &answer))
        }
    }

    /// The recorded progress of `partitions` of `topic` (real-time `_mget`); partitions
    /// without a document are absent.
    pub async fn progress(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, PartitionProgress>, ReadError> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = partitions.iter().map(|p| progress_id(topic, *p)).collect();
        let path = format!("/{}/_mget", self.meta);
        let body = self
            .es
            .ok(Method::POST, &path, Some(&json!({ "ids": ids })))
            .await?;
        let mut found = HashMap::new();
        for doc in body["docs"].as_array().into_iter().flatten() {
            if doc["found"].as_bool() != Some(true) {
                continue;
            }
            let source = &doc["_source"];
            if let (Some(partition), Some(offset)) =
                (source["partition"].as_i64(), source["offset"].as_i64())
            {
                found.insert(
                    partition as i32,
                    PartitionProgress {
                        offset,
                        global_position: source["globalPosition"].as_i64().unwrap_or(0),
                    },
                );
            }
        }
        Ok(found)
    }
}

/// The meta document of one partition's progress.
fn progress_id(topic: &str, partition: i32) -> String {
    format!("progress.{topic}.{partition}")
}

/// One event's fate (see [`EsReadStore::apply_stream`]); `blocked` holds the orders
/// refused earlier in the batch (with the version refused), `dirty` those to write.
fn fold_strictly(
    order: &mut Option<Order>,
    event: &RecordedEvent,
    blocked: &mut HashMap<Uuid, u64>,
    dirty: &mut Vec<Uuid>,
) -> StreamOutcome {
    let stored = order.as_ref().map_or(0, |o| o.version);
    if event.version <= stored {
        return StreamOutcome::AlreadyApplied;
    }
    if let Some(refused) = blocked.get(&event.stream_id) {
        return StreamOutcome::Refused(format!(
            "version {} of order {} follows version {refused}, which was refused",
            event.version, event.stream_id
        ));
    }
    let refuse = |blocked: &mut HashMap<Uuid, u64>, reason: String| {
        blocked.insert(event.stream_id, event.version);
        StreamOutcome::Refused(reason)
    };
    if event.version > stored + 1 {
        return refuse(
            blocked,
            format!(
                "version gap: event version {} of order {} but the read model holds version \
                 {stored}; versions {}..={} are missing (dead-lettered or never published)",
                event.version,
                event.stream_id,
                stored + 1,
                event.version - 1
            ),
        );
    }
    // The next version: the shared fold decides (and refuses what it cannot read).
    let before = order.clone();
    match fold_event(order, event) {
        Ok(true) if order.is_none() => {
            *order = before;
            refuse(
                blocked,
                format!(
                    "event {} ({}) cannot start order {}",
                    event.event_id, event.event_type, event.stream_id
                ),
            )
        }
        Ok(true) => {
            if !dirty.contains(&event.stream_id) {
                dirty.push(event.stream_id);
            }
            StreamOutcome::Applied
        }
        Ok(false) => {
            *order = before;
            refuse(
                blocked,
                format!(
                    "event {} ({}) does not apply to order {} at version {stored}",
                    event.event_id, event.event_type, event.stream_id
                ),
            )
        }
        Err(e) => {
            *order = before;
            refuse(blocked, format!("cannot fold: {e}"))
        }
    }
}
