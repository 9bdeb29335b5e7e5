//! The relay (DESIGN.md §6): publishes every event of the PostgreSQL event store to the
//! `order-events` topic, once, in global order.
//!
//! # How it works
//!
//! The relay reads the global log through the store's gap-safe cursor
//! ([`EventStore::read_log`]), so it needs no outbox table, and publishes each read batch in one
//! Kafka transaction: key = order id, value = Avro `OrderEvent` in the Confluent wire format
//! (schema registered under `<topic>-value`, FULL_TRANSITIVE), headers `event-type`, `event-id`,
//! `stream-version`, `global-position`, `correlation-id`, `traceparent` (when the event has
//! one) and `store-id`.
//!
//! **The topic is the checkpoint.** There is no offset table to keep in step with the topic: on
//! start, and after any failed transaction, the relay reads the last committed message of every
//! partition (`read_committed`) and resumes after the highest `global-position` it finds
//! ([`kafka::committed_cursor`] says why that is exact). A crash between a commit and anything
//! else therefore loses nothing and repeats nothing.
//!
//! **Watermarks.** Each transaction also carries one record to `<topic>.watermarks`: the
//! batch's last position and the last offset of every partition ([`watermark`]), which a
//! query side fed through Kafka needs to honour consistency tokens.
//!
//! **Fencing.** The producer's `transactional.id` is fixed per store and topic
//! ([`kafka::transactional_id`]): a relay that starts fences every earlier incarnation, whose
//! commits then fail, and aborts the transaction it left open — before it scans the topic.
//!
//! **Store identity.** Every message carries the store's id (`store-id`); a relay whose topic
//! ends with another store's message refuses to publish ([`RelayError::ForeignTopic`]).
//!
//! **One active relay.** A PostgreSQL advisory lock held by a dedicated connection
//! ([`lease`]); the others wait as standbys and take over within about a second of the
//! leader's death.
//!
//! **Never crash.** Every failure (Kafka, registry, PostgreSQL, the lease) is logged, recorded
//! for `/health/ready` with the dependency it concerns, and retried with exponential back-off.

mod connection;
pub mod kafka;
pub mod lease;
mod scan;
pub mod watermark;

pub use connection::KafkaConnection;

use async_trait::async_trait;
use order_event_store::{Backlog, EventStore, LogCursor, StoreId};
use order_http::ReadinessCheck;
use order_messaging::{OrderEventEncoder, OrderEventSchema, SchemaRegistryClient};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an idle relay waits before reading the log again.
pub const IDLE_POLL: Duration = Duration::from_millis(50);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the lag is measured.
pub const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// A leader failing for this long is reported down by `/health/ready`.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// What the relay is told.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The brokers and how to connect to them (TLS, SASL).
    pub kafka: KafkaConnection,
    /// The Schema Registry's Confluent-compatible API root.
    pub schema_registry_url: String,
    pub topic: String,
    /// Partitions of the topic when the relay creates it.
    pub partitions: i32,
    /// Replication factor of the topic when the relay creates it.
    pub replication_factor: i32,
    /// Most events per transaction.
    pub batch_size: usize,
    /// Deadline of each Kafka call (transaction calls, metadata, the checkpoint scan).
    pub kafka_timeout: Duration,
}

/// Which dependency a failure concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Dependency {
    Kafka,
    SchemaRegistry,
    EventStore,
    Lease,
    /// The topic or an event, not a server: needs a person.
    Data,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("schema registry: {0}")]
    Registry(#[from] order_messaging::RegistryError),
    #[error("event store: {0}")]
    Store(#[from] order_event_store::StoreError),
    #[error("leader lease: {0}")]
    Lease(String),
    /// The topic holds messages that are not this store's: refusing to mix two stores' events.
    #[error(
        "the topic holds events of another store: {reason}; point the relay at this store's \
         topic (--topic) or at the store that topic belongs to (--database-url)"
    )]
    ForeignTopic { reason: String },
    /// An event the Avro contract cannot carry; the relay stops at it rather than skip it.
    #[error("the event at global position {position} cannot be published: {reason}")]
    Poison { position: i64, reason: String },
}

impl RelayError {
    pub fn dependency(&self) -> Dependency {
        match self {
            RelayError::Kafka(_) => Dependency::Kafka,
            RelayError::Registry(_) => Dependency::SchemaRegistry,
            RelayError::Store(_) => Dependency::EventStore,
            RelayError::Lease(_) => Dependency::Lease,
            RelayError::ForeignTopic { .. } | RelayError::Poison { .. } => Dependency::Data,
        }
    }
}

/// The relay's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Not yet holding the lease (or trying to reach PostgreSQL for it).
    Standby,
    /// Holds the lease and publishes.
    Leader,
    /// The loop is not running.
    Stopped,
}

/// What the loop knows about itself; written by the loop and the lag watcher, read by health.
#[derive(Debug)]
struct State {
    role: Role,
    /// The leader's cursor: everything up to here is committed in the topic.
    cursor: Option<LogCursor>,
    /// Since when every attempt has failed, on which dependency, and the last error.
    failing: Option<(Instant, Dependency, String)>,
    /// The last backlog measured from the cursor.
    backlog: Option<Backlog>,
    published: u64,
}

/// The relay's state as `/health/ready` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayHealth {
    pub role: Role,
    /// Last position committed to the topic (leader only).
    pub position: Option<i64>,
    pub events_behind: Option<u64>,
    pub seconds_behind: Option<f64>,
    /// Events this process has published.
    pub published: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_on: Option<Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The relay of one store into one topic. Share it as `Arc<Relay>`.
pub struct Relay {
    store: Arc<dyn EventStore>,
    /// The database of the lease (the store's own).
    lease_db: PgConnectOptions,
    config: RelayConfig,
    state: Mutex<State>,
}

/// How a leader's term ended.
enum Term {
    Shutdown,
    LeaseLost(String),
    Failed(RelayError),
}

impl Relay {
    pub fn new(
        store: Arc<dyn EventStore>,
        lease_db: PgConnectOptions,
        config: RelayConfig,
    ) -> Relay {
        Relay {
            store,
            lease_db,
            config,
            state: Mutex::new(State {
                role: Role::Stopped,
                cursor: None,
                failing: None,
                backlog: None,
                published: 0,
            }),
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    pub fn store_id(&self) -> StoreId {
        self.store.store_id()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_role(&self, role: Role) {
        let mut state = self.lock();
        state.role = role;
        if role != Role::Leader {
            state.cursor = None;
            state.backlog = None;
        }
        metrics::gauge!("order_platform_relay_leader").set(if role == Role::Leader {
            1.0
        } else {
            0.0
        });
    }

    fn failed(&self, e: &RelayError) {
        let mut state = self.lock();
        let since = state.failing.as_ref().map_or_else(Instant::now, |f| f.0);
        state.failing = Some((since, e.dependency(), e.to_string()));
        metrics::counter!("order_platform_relay_errors_total").increment(1);
    }

    fn succeeded(&self) {
        self.lock().failing = None;
    }

    /// Runs until `shutdown` resolves: waits for the lease, publishes while holding it, and
    /// starts over (with back-off) after any failure.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        // Exported from the start, at 0: a dashboard or alert on it has data before the
        // first failure.
        metrics::counter!("order_platform_relay_errors_total").increment(0);
        metrics::counter!("order_platform_relay_events_published_total").increment(0);
        let mut shutdown = pin!(shutdown);
        let mut backoff = BACKOFF_START;
        loop {
            self.set_role(Role::Standby);
            let mut lease = loop {
                match lease::Lease::try_acquire(&self.lease_db, self.store_id(), &self.config.topic)
                    .await
                {
                    Ok(Some(lease)) => break lease,
                    Ok(None) => {}
                    Err(e) => {
                        let e = RelayError::Lease(format!("PostgreSQL unreachable: {e}"));
                        tracing::warn!(error = %e, "cannot reach PostgreSQL for the lease; retrying");
                        self.failed(&e);
                    }
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => return self.set_role(Role::Stopped),
                    () = tokio::time::sleep(lease::POLL) => {}
                }
            };
            tracing::info!(topic = %self.config.topic, "took the relay lease: publishing");
            self.set_role(Role::Leader);
            // Sessions follow one another while the lease holds: a failed session (Kafka or
            // the registry down, say) keeps the lease and tries again after a back-off, so the
            // relays do not hand leadership around while a shared dependency is down.
            let lost = loop {
                let term = tokio::select! {
                    biased;
                    () = &mut shutdown => Term::Shutdown,
                    reason = lease.lost() => Term::LeaseLost(reason),
                    e = self.lead(&mut backoff) => Term::Failed(e),
                };
                match term {
                    Term::Shutdown => return self.set_role(Role::Stopped),
                    Term::LeaseLost(reason) => break reason,
                    Term::Failed(e) => {
                        tracing::warn!(error = %e, dependency = ?e.dependency(),
                            retry_in_ms = backoff.as_millis() as u64, "relay failed; starting over");
                        self.failed(&e);
                        let pause = backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        tokio::select! {
                            biased;
                            () = &mut shutdown => return self.set_role(Role::Stopped),
                            reason = lease.lost() => break reason,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            };
            drop(lease);
            let e = RelayError::Lease(lost);
            tracing::warn!(error = %e, "lost the relay lease: stepping down");
            self.failed(&e);
            tokio::select! {
                biased;
                () = &mut shutdown => return self.set_role(Role::Stopped),
                () = tokio::time::sleep(BACKOFF_START) => {}
            }
        }
    }

    /// One leader session: set up the topic, the schema and the producer, recover the cursor
    /// from the topic, then publish until something fails. Store read failures are retried in
    /// place (no transaction is open then); any Kafka failure ends the session, so the next one
    /// re-initialises the producer and re-reads the checkpoint from the topic.
    async fn lead(&self, backoff: &mut Duration) -> RelayError {
        match self.lead_inner(backoff).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn lead_inner(
        &self,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, RelayError> {
        let store = self.store_id();
        let started = Instant::now();
        let registry = SchemaRegistryClient::new(&self.config.schema_registry_url)?;
        let subject = order_messaging::registry::value_subject(&self.config.topic);
        registry
            .set_compatibility(&subject, "FULL_TRANSITIVE")
            .await?;
        let schema = OrderEventSchema::current();
        let schema_id = registry.register(&subject, schema.text()).await?;
        let encoder = OrderEventEncoder::new(schema.clone(), schema_id);
        let registered_ms = started.elapsed().as_millis() as u64;
        kafka::ensure_topic(&self.config).await?;
        let topic_ms = started.elapsed().as_millis() as u64;
        let producer = kafka::transactional_producer(&self.config, store).await?;
        let producer_ms = started.elapsed().as_millis() as u64;
        let (mut cursor, mut mark) = kafka::committed_tail(&self.config, store).await?;
        tracing::info!(
            position = cursor.position,
            schema_id,
            registered_ms,
            topic_ms,
            producer_ms,
            scanned_ms = started.elapsed().as_millis() as u64,
            "resuming after the last committed event"
        );
        // Announce what is already in the topic: a query side started after the last
        // batch (or a topic older than its watermarks) learns it without waiting for one.
        kafka::publish(
            &producer,
            &self.config.topic,
            Vec::new(),
            &mut mark,
            self.config.kafka_timeout,
        )
        .await?;
        self.lock().cursor = Some(cursor);
        self.succeeded();
        *backoff = BACKOFF_START;
        let mut store_backoff = BACKOFF_START;
        loop {
            let mut batch = match self.store.read_log(cursor, self.config.batch_size).await {
                Ok(batch) => batch,
                Err(e) => {
                    let e = RelayError::Store(e);
                    tracing::warn!(error = %e, "reading the event log failed; retrying");
                    self.failed(&e);
                    tokio::time::sleep(store_backoff).await;
                    store_backoff = (store_backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            store_backoff = BACKOFF_START;
            if batch.events.is_empty() {
                self.succeeded();
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            let spans = publish_spans(&mut batch.events);
            let outgoing = kafka::encode(&batch.events, &encoder, store)?;
            mark.global_position = batch.next.position;
            kafka::publish(
                &producer,
                &self.config.topic,
                outgoing,
                &mut mark,
                self.config.kafka_timeout,
            )
            .await?;
            // Each event's span ends once its transaction is committed.
            drop(spans);
            cursor = batch.next;
            let count = batch.events.len() as u64;
            {
                let mut state = self.lock();
                state.cursor = Some(cursor);
                state.published += count;
                state.failing = None;
            }
            metrics::counter!("order_platform_relay_events_published_total").increment(count);
            metrics::gauge!("order_platform_relay_position").set(cursor.position as f64);
        }
    }

    /// Measures the backlog after the leader's cursor every [`LAG_SAMPLE_EVERY`] until
    /// `shutdown`, exporting `order_platform_relay_events_behind` and
    /// `order_platform_relay_lag_seconds`. A standby exports 0: it is not the one behind.
    pub async fn watch_lag(&self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = pin!(shutdown);
        loop {
            self.measure_lag().await;
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(LAG_SAMPLE_EVERY) => {}
            }
        }
    }

    /// One lag measurement (leader only).
    pub async fn measure_lag(&self) -> Option<Backlog> {
        let Some(cursor) = self.lock().cursor else {
            metrics::gauge!("order_platform_relay_events_behind").set(0.0);
            metrics::gauge!("order_platform_relay_lag_seconds").set(0.0);
            return None;
        };
        match self.store.backlog(cursor).await {
            Ok(backlog) => {
                metrics::gauge!("order_platform_relay_events_behind").set(backlog.events as f64);
                metrics::gauge!("order_platform_relay_lag_seconds")
                    .set(seconds_since(backlog.oldest));
                let mut state = self.lock();
                if state.role == Role::Leader {
                    state.backlog = Some(backlog);
                }
                Some(backlog)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not measure the relay's lag");
                None
            }
        }
    }

    pub fn health(&self) -> RelayHealth {
        let state = self.lock();
        RelayHealth {
            role: state.role,
            position: state.cursor.map(|c| c.position),
            events_behind: state.backlog.map(|b| b.events),
            seconds_behind: state.backlog.map(|b| seconds_since(b.oldest)),
            published: state.published,
            failing_on: state.failing.as_ref().map(|f| f.1),
            last_error: state.failing.as_ref().map(|f| f.2.clone()),
        }
    }

    /// Down when stopped, or failing for [`STALLED_AFTER`]; a standby is ready (it is waiting
    /// by design).
    fn verdict(&self) -> Result<(), String> {
        let state = self.lock();
        if state.role == Role::Stopped {
            return Err("the relay loop is not running".into());
        }
        match &state.failing {
            Some((since, dependency, e)) if since.elapsed() >= STALLED_AFTER => Err(format!(
                "failing on {dependency:?} for {}s: {e}",
                since.elapsed().as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// The `/health/ready` checks: Kafka, the registry, the store, and the relay itself.
    pub fn readiness_checks(self: &Arc<Self>) -> Vec<Arc<dyn ReadinessCheck>> {
        vec![
            Arc::new(KafkaCheck(self.clone())),
            Arc::new(RegistryCheck(self.clone())),
            Arc::new(StoreCheck(self.clone())),
            Arc::new(RelayCheck(self.clone())),
        ]
    }
}

/// Seconds from `then` until now; 0 for `None` or a time in the future.
/// One `relay.publish` span per event, the child of the context stored with it (the
/// command's append), open until the batch's transaction commits. The event's
/// `traceparent` becomes the span's own, so the message's `traceparent` header makes the
/// projector's span its child in turn. One span per event rather than one per batch with
/// links: a batch mixes many commands, and each command's trace should show its event
/// reaching Kafka. Without tracing the events keep the context they were stored with.
fn publish_spans(events: &mut [order_event_store::RecordedEvent]) -> Vec<tracing::Span> {
    events
        .iter_mut()
        .map(|event| {
            let span = tracing::info_span!(
                "relay.publish",
                otel.kind = "producer",
                event_id = %event.event_id,
                order_id = %event.stream_id,
                global_position = event.global_position,
                trace_id = tracing::field::Empty,
            );
            order_telemetry::continue_trace(&span, event.traceparent.as_deref());
            if let Some(own) = order_telemetry::traceparent(&span) {
                event.traceparent = Some(own);
            }
            span
        })
        .collect()
}

fn seconds_since(then: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    then.and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

struct KafkaCheck(Arc<Relay>);

#[async_trait]
impl ReadinessCheck for KafkaCheck {
    fn name(&self) -> &'static str {
        "kafka"
    }
    async fn check(&self) -> Result<(), String> {
        kafka::probe(&self.0.config).await
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"topic": self.0.config.topic}))
    }
}

struct RegistryCheck(Arc<Relay>);

#[async_trait]
impl ReadinessCheck for RegistryCheck {
    fn name(&self) -> &'static str {
        "schemaRegistry"
    }
    async fn check(&self) -> Result<(), String> {
        let url = format!(
            "{}/subjects",
            self.0.config.schema_registry_url.trim_end_matches('/')
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("GET {url} answered {}", r.status())),
            Err(e) => Err(format!("unreachable: {e}")),
        }
    }
}

struct StoreCheck(Arc<Relay>);

#[async_trait]
impl ReadinessCheck for StoreCheck {
    fn name(&self) -> &'static str {
        "eventStore"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.store.ping().await.map_err(|e| e.to_string())
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"kind": self.0.store.kind(), "storeId": self.0.store_id()}))
    }
}

struct RelayCheck(Arc<Relay>);

#[async_trait]
impl ReadinessCheck for RelayCheck {
    fn name(&self) -> &'static str {
        "relay"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.verdict()
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.0.health()).ok()
    }
}
