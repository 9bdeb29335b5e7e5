//! What the projector reports: its state for `/health/ready`, its counters and its lag
//! for `/metrics`.
//!
//! Lag is measured from outside the loop (as for the embedded projector): every second
//! [`measure_lag`] asks Kafka for the consumer group's committed offsets and each
//! partition's end, so a stuck or dead loop still shows its true lag. Events behind =
//! end − committed, per partition. Seconds behind = how long that partition has been
//! continuously behind (the age of its oldest unapplied message is not known without
//! reading it; this is an upper bound of it while the projector keeps up at all).

use crate::ProjectorConfig;
use crate::dlq::Incoming;
use order_read_model_es::PartitionProgress;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loop failing for this long is reported down by `/health/ready`.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// Which dependency a failure concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Dependency {
    Kafka,
    SchemaRegistry,
    Elasticsearch,
}

/// One partition's lag, as last measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub events_behind: i64,
    pub seconds_behind: f64,
    #[serde(skip)]
    behind_since: Option<Instant>,
}

#[derive(Default)]
struct State {
    running: bool,
    assigned: Vec<i32>,
    failing: Option<(Instant, Dependency, String)>,
    consumed: u64,
    applied: u64,
    dead_lettered: u64,
    /// Per partition: the last offset processed by this replica.
    offsets: BTreeMap<i32, i64>,
    lag: BTreeMap<i32, PartitionLag>,
}

/// The projector's state; written by the loop, the rebalance callbacks and the lag
/// watcher, read by `/health/ready`.
#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
}

/// What `/health/ready` shows of the projector.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectorStatus {
    /// `running`, `stalled` (failing for [`STALLED_AFTER`]) or `stopped`.
    pub state: &'static str,
    pub assigned_partitions: Vec<i32>,
    /// Summed over every partition of the topic (the whole group's lag).
    pub events_behind: i64,
    pub partitions: BTreeMap<i32, PartitionLag>,
    /// Messages this replica processed (applied, already applied or dead-lettered).
    pub consumed: u64,
    /// Messages applied by this replica since it started.
    pub applied: u64,
    /// Messages this replica dead-lettered since it started.
    pub dead_lettered: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_on: Option<Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Marks the loop stopped when dropped.
pub(crate) struct Running<'a>(&'a Health);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn running(&self) -> Running<'_> {
        self.lock().running = true;
        Running(self)
    }

    pub(crate) fn set_assigned(&self, partitions: Vec<i32>) {
        self.lock().assigned = partitions;
    }

    pub(crate) fn failed(&self, dependency: Dependency, error: &str) {
        let mut state = self.lock();
        let since = state.failing.as_ref().map_or_else(Instant::now, |f| f.0);
        state.failing = Some((since, dependency, error.to_string()));
        metrics::counter!("order_platform_projector_errors_total").increment(1);
    }

    pub(crate) fn succeeded(&self) {
        self.lock().failing = None;
    }

    pub(crate) fn processed(
        &self,
        reached: &BTreeMap<i32, PartitionProgress>,
        applied: u64,
        dead_lettered: u64,
        batch: &[Incoming],
    ) {
        let mut state = self.lock();
        state.failing = None;
        state.applied += applied;
        state.consumed += batch.len() as u64;
        state.dead_lettered += dead_lettered;
        for (partition, progress) in reached {
            state.offsets.insert(*partition, progress.offset);
        }
        metrics::counter!("order_platform_projector_messages_applied_total").increment(applied);
        metrics::counter!("order_platform_projector_dead_lettered_total").increment(dead_lettered);
        metrics::counter!("order_platform_projector_messages_consumed_total")
            .increment(batch.len() as u64);
    }

    pub fn status(&self) -> ProjectorStatus {
        let state = self.lock();
        let stalled = state
            .failing
            .as_ref()
            .is_some_and(|f| f.0.elapsed() >= STALLED_AFTER);
        ProjectorStatus {
            state: match (state.running, stalled) {
                (false, _) => "stopped",
                (true, true) => "stalled",
                (true, false) => "running",
            },
            assigned_partitions: state.assigned.clone(),
            events_behind: state.lag.values().map(|l| l.events_behind).sum(),
            partitions: state.lag.clone(),
            consumed: state.consumed,
            applied: state.applied,
            dead_lettered: state.dead_lettered,
            failing_on: state.failing.as_ref().map(|f| f.1),
            last_error: state.failing.as_ref().map(|f| f.2.clone()),
        }
    }

    /// Records a lag measurement and exports it.
    fn record_lag(&self, behind: BTreeMap<i32, i64>) {
        let mut state = self.lock();
        let mut total = 0i64;
        let mut worst = 0f64;
        for (partition, events) in behind {
            let lag = state.lag.entry(partition).or_default();
            lag.events_behind = events;
            lag.behind_since = match (events > 0, lag.behind_since) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(Instant::now()),
                (false, _) => None,
            };
            lag.seconds_behind = lag.behind_since.map_or(0.0, |s| s.elapsed().as_secs_f64());
            total += events;
            worst = worst.max(lag.seconds_behind);
            let label = partition.to_string();
            metrics::gauge!("order_platform_projector_events_behind", "partition" => label.clone())
                .set(events as f64);
            metrics::gauge!("order_platform_projector_lag_seconds", "partition" => label)
                .set(lag.seconds_behind);
        }
        metrics::gauge!("order_platform_projector_events_behind_total").set(total as f64);
        metrics::gauge!("order_platform_projector_lag_seconds_max").set(worst);
    }
}

/// Measures the group's lag every second until `shutdown`.
pub async fn watch_lag(
    config: ProjectorConfig,
    health: std::sync::Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let measuring = config.clone();
        let measured = tokio::task::spawn_blocking(move || measure_lag(&measuring)).await;
        match measured {
            Ok(Ok(behind)) => health.record_lag(behind),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not measure the projector's lag"),
            Err(_) => {}
        }
        tokio::select! {
            biased;
            () = shutdown.as_mut() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Events behind per partition: the partition's end minus the group's committed offset
/// (its start when the group committed nothing). Blocking.
pub fn measure_lag(config: &ProjectorConfig) -> Result<BTreeMap<i32, i64>, String> {
    let (consumer, partitions, committed) = group_offsets(config)?;
    let mut behind = BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&config.topic, p, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        let at = committed.get(&p).copied().unwrap_or(low);
        behind.insert(p, (high - at).max(0));
    }
    std::thread::spawn(move || drop(consumer));
    Ok(behind)
}

/// The offsets the group has committed, per partition of the topic (partitions without
/// one are absent). Blocking.
pub fn committed_offsets(config: &ProjectorConfig) -> Result<BTreeMap<i32, i64>, String> {
    let (consumer, _, committed) = group_offsets(config)?;
    std::thread::spawn(move || drop(consumer));
    Ok(committed)
}

type GroupOffsets = (BaseConsumer, Vec<i32>, BTreeMap<i32, i64>);

/// A consumer with the group's id (it never subscribes, so it never joins the group), the
/// topic's partitions, and the group's committed offsets.
fn group_offsets(config: &ProjectorConfig) -> Result<GroupOffsets, String> {
    let consumer: BaseConsumer = config
        .kafka
        .client()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(2);
    let topic = &config.topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition(topic, *p);
    }
    let found = consumer
        .committed_offsets(list, timeout)
        .map_err(|e| e.to_string())?;
    let mut committed = BTreeMap::new();
    for p in &partitions {
        if let Some(Offset::Offset(o)) = found.find_partition(topic, *p).map(|e| e.offset()) {
            committed.insert(*p, o);
        }
    }
    Ok((consumer, partitions, committed))
}
