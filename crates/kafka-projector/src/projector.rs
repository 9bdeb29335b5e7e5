//! The consumer loop: a batch of messages in, one `_bulk` out, then the offsets.
//!
//! Each pass collects up to `batch_size` messages (waiting at most `batch_wait` after the
//! first), decodes them, applies the decodable ones with one
//! [`EsReadStore::apply_stream`], dead-letters what did not decode or apply, records each
//! partition's progress, and only then commits the offsets, synchronously. So a crash at
//! any point leaves offsets at or behind what Elasticsearch holds: the redelivery that
//! follows meets documents at or above each event's version and changes nothing.
//!
//! **Unavailable is not poison.** When Elasticsearch, the registry or Kafka (for a dead
//! letter) fails, the same batch is tried again with back-off, nothing is committed and
//! nothing is dead-lettered; `/health/ready` names the dependency.
//!
//! **Rebalances.** Rebalance callbacks run inside `recv`, i.e. while a batch is being
//! collected, never while one is applied. Everything applied before is committed already
//! (commits are synchronous, after each batch), so a revocation loses nothing. A batch
//! that was being collected when its partitions were revoked is still applied (external
//! versioning makes that harmless even if the new owner applies the same messages), but
//! its offsets are not committed for partitions revoked meanwhile or no longer assigned:
//! a stale commit could move the new owner's offset backwards.

use crate::decode::{DecodeFailure, MessageDecoder};
use crate::dlq::{DeadLetterProducer, Incoming, Stage};
use crate::health::{Dependency, Health};
use crate::{BACKOFF_MAX, BACKOFF_START, ProjectorConfig};
use order_event_store::RecordedEvent;
use order_read_model_es::{EsReadStore, PartitionProgress, StreamOutcome};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// What the rebalance callbacks tell the loop. Written inside `recv` (the callbacks),
/// read between batches.
#[derive(Default)]
struct Ownership {
    /// Partitions of the topic assigned to this consumer now.
    assigned: Mutex<BTreeSet<i32>>,
    /// Partitions revoked since the current batch began collecting.
    revoked: Mutex<BTreeSet<i32>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Rebalances {
    ownership: Arc<Ownership>,
    health: Arc<Health>,
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions revoked");
            let mut assigned = locked(&self.ownership.assigned);
            let mut revoked = locked(&self.ownership.revoked);
            for p in partitions {
                assigned.remove(&p);
                revoked.insert(p);
            }
            self.health.set_assigned(assigned.iter().copied().collect());
        }
    }

    fn post_rebalance(&self, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut assigned = locked(&self.ownership.assigned);
                assigned.extend(list.elements().iter().map(|e| e.partition()));
                tracing::info!(partitions = ?assigned, "partitions assigned");
                self.health.set_assigned(assigned.iter().copied().collect());
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

type Kafka = StreamConsumer<Rebalances>;

/// How long without a message before positions past trailing transaction markers are
/// committed.
const IDLE_COMMIT: Duration = Duration::from_secs(1);

/// How a session ended.
enum Ended {
    Shutdown,
}

/// A failure of one attempt, and the dependency it concerns.
struct Failure(Dependency, String);

/// The projector of one topic into one Elasticsearch read store. Share it as `Arc`.
pub struct KafkaProjector {
    config: ProjectorConfig,
    read: Arc<EsReadStore>,
    health: Arc<Health>,
    /// Per partition, the highest global position applied so far (what the progress
    /// document records beside the offset); seeded from the progress documents.
    positions: Mutex<BTreeMap<i32, i64>>,
}

impl KafkaProjector {
    pub fn new(config: ProjectorConfig, read: Arc<EsReadStore>) -> KafkaProjector {
        KafkaProjector {
            config,
            read,
            health: Arc::new(Health::default()),
            positions: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    pub fn read_store(&self) -> &Arc<EsReadStore> {
        &self.read
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Consumes until `shutdown` resolves, starting over with back-off after any failure
    /// to set up (Kafka, the registry or Elasticsearch down at start).
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        let _running = self.health.running();
        // Exported from the start, at 0: a dashboard or alert on them has data before the
        // first failure or dead letter.
        for counter in [
            "order_platform_projector_errors_total",
            "order_platform_projector_dead_lettered_total",
            "order_platform_projector_messages_applied_total",
        ] {
            metrics::counter!(counter).increment(0);
        }
        let mut shutdown = pin!(shutdown);
        let mut backoff = BACKOFF_START;
        loop {
            match self.session(shutdown.as_mut(), &mut backoff).await {
                Ok(Ended::Shutdown) => return,
                Err(Failure(dependency, error)) => {
                    tracing::warn!(%error, ?dependency, retry_in_ms = backoff.as_millis() as u64,
                        "projector session failed; starting over");
                    self.health.failed(dependency, &error);
                }
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn consumer(&self, ownership: Arc<Ownership>) -> Result<Arc<Kafka>, Failure> {
        let kafka = |e: rdkafka::error::KafkaError| Failure(Dependency::Kafka, e.to_string());
        let consumer: Kafka = self
            .config
            .kafka
            .client()
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // A replica that dies without leaving the group (SIGKILL, a lost node) holds its
            // partitions until the broker gives up on it: 10 s instead of the default 45 s
            // of stale reads. We have no GC pauses to ride out; heartbeats go every 2 s.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            .create_with_context(Rebalances {
                ownership,
                health: self.health.clone(),
            })
            .map_err(kafka)?;
        consumer.subscribe(&[&self.config.topic]).map_err(kafka)?;
        Ok(Arc::new(consumer))
    }

    async fn session(
        &self,
        mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
        backoff: &mut Duration,
    ) -> Result<Ended, Failure> {
        let mut decoder = MessageDecoder::new(&self.config.schema_registry_url)
            .map_err(|e| Failure(Dependency::SchemaRegistry, format!("{e:?}")))?;
        let dlq = DeadLetterProducer::create(&self.config)
            .await
            .map_err(|e| Failure(Dependency::Kafka, e))?;
        let ownership = Arc::new(Ownership::default());
        let consumer = self.consumer(ownership.clone())?;
        let session = Session {
            projector: self,
            consumer: consumer.clone(),
            ownership,
            dlq,
            committed: Mutex::new(BTreeMap::new()),
        };
        self.health.succeeded();
        *backoff = BACKOFF_START;
        let ended = loop {
            let batch = tokio::select! {
                biased;
                () = shutdown.as_mut() => break Ended::Shutdown,
                batch = session.collect() => batch,
            };
            if batch.is_empty() {
                session.commit(&BTreeMap::new()).await;
                continue;
            }
            let mut retry = BACKOFF_START;
            loop {
                match session.process(&batch, &mut decoder).await {
                    Ok(()) => break,
                    Err(Failure(dependency, error)) => {
                        tracing::warn!(%error, ?dependency, retry_in_ms = retry.as_millis() as u64,
                            "a batch failed; trying it again (nothing committed)");
                        self.health.failed(dependency, &error);
                    }
                }
                tokio::select! {
                    biased;
                    () = shutdown.as_mut() => {
                        drop(session);
                        close(consumer);
                        return Ok(Ended::Shutdown);
                    }
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(BACKOFF_MAX);
            }
        };
        drop(session);
        close(consumer);
        Ok(ended)
    }
}

/// Leaves the group (a blocking close) off the async threads: the caller hands over the
/// last reference.
fn close(consumer: Arc<Kafka>) {
    std::thread::spawn(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
}

/// One consumer's life: the consumer, who owns what, where dead letters go.
struct Session<'a> {
    projector: &'a KafkaProjector,
    consumer: Arc<Kafka>,
    ownership: Arc<Ownership>,
    dlq: DeadLetterProducer,
    /// The offset this session last committed per partition; an idle commit only
    /// moves past it (a partition never committed by this session is left alone).
    committed: Mutex<BTreeMap<i32, i64>>,
}

impl Session<'_> {
    /// Waits for a first message, then takes more for up to `batch_wait`, at most
    /// `batch_size` in all.
    async fn collect(&self) -> Vec<Incoming> {
        let config = &self.projector.config;
        locked(&self.ownership.revoked).clear();
        let mut batch = Vec::new();
        let Ok(first) = tokio::time::timeout(IDLE_COMMIT, self.consumer.recv()).await else {
            return batch; // idle: the caller commits positions past trailing markers
        };
        match first {
            Ok(message) => batch.push(Incoming::from_message(&message)),
            Err(e) => {
                tracing::warn!(error = %e, "consuming failed");
                self.projector
                    .health
                    .failed(Dependency::Kafka, &e.to_string());
                tokio::time::sleep(BACKOFF_START).await;
                return batch;
            }
        }
        let deadline = tokio::time::Instant::now() + config.batch_wait;
        while batch.len() < config.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(Incoming::from_message(&message)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consuming failed");
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Decode, apply, dead-letter, record progress, commit: see the module doc.
    async fn process(
        &self,
        batch: &[Incoming],
        decoder: &mut MessageDecoder,
    ) -> Result<(), Failure> {
        let projector = self.projector;
        let mut letters: Vec<(&Incoming, Stage, String)> = Vec::new();
        let mut events = Vec::new();
        let mut sources = Vec::new();
        let mut spans = Vec::new();
        for message in batch {
            let traceparent = message.header(order_relay::kafka::TRACEPARENT);
            match decoder.decode(message.value.as_deref(), traceparent).await {
                Ok(event) => {
                    spans.push(apply_span(&event, message));
                    events.push(event);
                    sources.push(message);
                }
                Err(DecodeFailure::Poison(reason)) => {
                    letters.push((message, Stage::Decode, reason))
                }
                Err(DecodeFailure::Unavailable(e)) => {
                    return Err(Failure(Dependency::SchemaRegistry, e));
                }
            }
        }
        let outcomes = projector
            .read
            .apply_stream(&events)
            .instrument(bulk_span(&events, &spans))
            .await
            .map_err(|e| Failure(Dependency::Elasticsearch, e.to_string()))?;
        let mut applied = 0u64;
        let mut reached: BTreeMap<i32, PartitionProgress> = BTreeMap::new();
        for (((event, message), outcome), span) in
            events.iter().zip(&sources).zip(outcomes).zip(&spans)
        {
            span.record("outcome", outcome_name(&outcome));
            match outcome {
                StreamOutcome::Applied => applied += 1,
                StreamOutcome::AlreadyApplied => {}
                StreamOutcome::Refused(reason) => {
                    letters.push((message, Stage::Apply, reason));
                    continue;
                }
            }
            let entry = reached.entry(message.partition).or_default();
            entry.global_position = entry.global_position.max(event.global_position);
        }
        for (message, stage, reason) in &letters {
            tracing::warn!(partition = message.partition, offset = message.offset,
                stage = stage.as_str(), %reason, "dead-lettering a message");
            self.dlq
                .send(message, *stage, reason)
                .await
                .map_err(|e| Failure(Dependency::Kafka, e))?;
        }
        for message in batch {
            let entry = reached.entry(message.partition).or_default();
            entry.offset = entry.offset.max(message.offset);
        }
        self.record_progress(&mut reached).await?;
        self.commit(&reached).await;
        projector
            .health
            .processed(&reached, applied, letters.len() as u64, batch);
        Ok(())
    }

    /// Writes each partition's progress document, carrying the highest position forward.
    async fn record_progress(
        &self,
        reached: &mut BTreeMap<i32, PartitionProgress>,
    ) -> Result<(), Failure> {
        let projector = self.projector;
        let topic = &projector.config.topic;
        let unknown: Vec<i32> = {
            let positions = locked(&projector.positions);
            reached
                .keys()
                .filter(|p| !positions.contains_key(p))
                .copied()
                .collect()
        };
        if !unknown.is_empty() {
            let stored = projector
                .read
                .progress(topic, &unknown)
                .await
                .map_err(|e| Failure(Dependency::Elasticsearch, e.to_string()))?;
            let mut positions = locked(&projector.positions);
            for p in unknown {
                positions.insert(p, stored.get(&p).map_or(0, |s| s.global_position));
            }
        }
        for (partition, progress) in reached.iter_mut() {
            {
                let mut positions = locked(&projector.positions);
                let known = positions.entry(*partition).or_default();
                *known = (*known).max(progress.global_position);
                progress.global_position = *known;
            }
            projector
                .read
                .store_progress(topic, *partition, *progress)
                .await
                .map_err(|e| Failure(Dependency::Elasticsearch, e.to_string()))?;
        }
        Ok(())
    }

    /// Commits the next offset of each partition still owned and not revoked during the
    /// batch (with none, when idle: the positions that moved past transaction markers
    /// since, so the lag reads 0). A failed commit is only logged: the batch is applied,
    /// and redelivering it is harmless.
    async fn commit(&self, reached: &BTreeMap<i32, PartitionProgress>) {
        let topic = &self.projector.config.topic;
        // The consumer's position is past the transaction markers and aborted messages
        // that follow the last message read (read_committed skips them): committing it
        // rather than offset + 1 lets the lag read 0 when the partition is caught up.
        let positions = self.consumer.position().unwrap_or_default();
        let mut list = TopicPartitionList::new();
        {
            let assigned = locked(&self.ownership.assigned);
            let revoked = locked(&self.ownership.revoked);
            let mut committed = locked(&self.committed);
            if reached.is_empty() {
                // Idle: every message before a partition's position was processed (and
                // its batch committed); what lies between is markers or aborted data.
                for partition in assigned.iter().filter(|p| !revoked.contains(p)) {
                    if let Some(Offset::Offset(at)) = positions
                        .find_partition(topic, *partition)
                        .map(|e| e.offset())
                        && committed.get(partition).is_some_and(|c| at > *c)
                    {
                        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(at));
                        committed.insert(*partition, at);
                    }
                }
            }
            for (partition, progress) in reached {
                if assigned.contains(partition) && !revoked.contains(partition) {
                    let next = match positions
                        .find_partition(topic, *partition)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(at)) if at > progress.offset => at,
                        _ => progress.offset + 1,
                    };
                    let _ = list.add_partition_offset(topic, *partition, Offset::Offset(next));
                    committed.insert(*partition, next);
                }
            }
        }
        if list.count() == 0 {
            return;
        }
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "committing offsets failed; the batch may be redelivered")
            }
            Err(e) => tracing::warn!(error = %e, "committing offsets did not finish"),
        }
    }
}

/// The span of one event's application, the child of the relay's `relay.publish` span
/// (the message's `traceparent` header). It lasts until the batch's `_bulk` is answered:
/// the event is applied when Elasticsearch has acknowledged it.
fn apply_span(event: &RecordedEvent, message: &Incoming) -> tracing::Span {
    let span = tracing::info_span!(
        "projector.apply",
        otel.kind = "consumer",
        event_id = %event.event_id,
        order_id = %event.stream_id,
        version = event.version,
        partition = message.partition,
        offset = message.offset,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    order_telemetry::continue_trace(&span, event.traceparent.as_deref());
    span
}

/// The span of the batch's one `_bulk` write. A span has one parent: the first event's
/// apply span (so a command's trace shows the write that stored its event), linked to
/// the other events' contexts (their traces lead here through the link).
fn bulk_span(events: &[RecordedEvent], spans: &[tracing::Span]) -> tracing::Span {
    let span = tracing::info_span!(
        parent: spans.first().and_then(|s| s.id()),
        "elasticsearch.bulk",
        otel.kind = "client",
        db.system = "elasticsearch",
        events = events.len(),
    );
    for event in events.iter().skip(1) {
        if let Some(traceparent) = &event.traceparent {
            order_telemetry::add_link(&span, traceparent);
        }
    }
    span
}

fn outcome_name(outcome: &StreamOutcome) -> &'static str {
    match outcome {
        StreamOutcome::Applied => "applied",
        StreamOutcome::AlreadyApplied => "already_applied",
        StreamOutcome::Refused(_) => "refused",
    }
}
