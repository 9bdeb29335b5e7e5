//! The event store port and its adapters.
//!
//! One append-only log of events. Each event belongs to a stream (an order)
//! with a contiguous per-stream `version`, and has a `global_position` in the
//! whole log. An append is atomic: all events of one command and its
//! idempotency record commit together or not at all.
//!
//! Consumers read the global log through [`EventStore::read_log`], which is
//! *gap-safe*: it never returns a position past a write that may still commit.
//! How each adapter guarantees that is documented on the adapter.

mod codec;
mod migrations;
mod postgres;
mod sqlite;

#[cfg(feature = "testsuite")]
pub mod conformance;

pub use codec::UndecodableEvent;
pub use migrations::{EmbeddedMigrations, assert_same_as_folder};
pub use postgres::PostgresEventStore;
pub use sqlite::{
    BUSY_TIMEOUT as SQLITE_BUSY_TIMEOUT, SqliteEventStore, open_pool as open_sqlite_pool,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event about to be appended.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
}

/// Where a command came from; stored on every event it produced.
#[derive(Clone, Debug, Default)]
pub struct CommandMetadata {
    /// The command's own id; becomes each event's `causationId`.
    pub command_id: Uuid,
    pub correlation_id: String,
    /// W3C `traceparent` of the request, when there was one.
    pub traceparent: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The response to a command, stored with its events so that a retry with the
/// same idempotency key gets the very same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// Digest of the request the key was first used with.
    pub request_hash: String,
    pub status: u16,
    /// Whatever the command service needs to rebuild the response.
    pub response: serde_json::Value,
}

/// One command's worth of events.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub stream_id: Uuid,
    /// The stream's version the command was decided against (0: the stream must not exist).
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
    pub metadata: CommandMetadata,
    /// Scoped idempotency key and the response to keep under it.
    pub idempotency: Option<(String, StoredResponse)>,
}

/// What an append committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub last_version: u64,
    pub last_position: i64,
    /// Covers this append and every append acknowledged before it.
    pub consistency_token: ConsistencyToken,
}

/// An event as stored, with its envelope (DESIGN.md §3.2).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub version: u64,
    pub global_position: i64,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: String,
    pub causation_id: Uuid,
    pub traceparent: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A point in the global log: the last position a consumer has seen. Consumers
/// store it as their checkpoint and hand it back to resume. Every adapter
/// delivers the log in position order, and positions survive backups and
/// restores of the store (they are plain column values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogCursor {
    pub position: i64,
}

/// A watermark in the log: a token `t` is covered by a reader once the reader's
/// [`LogBatch::covered`] is at least `t`. Stable across restarts.
///
/// On the wire (the `X-Consistency-Token` header) a token also names the store
/// it came from, see [`ConsistencyToken::to_header`]: a position means nothing
/// in another store.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ConsistencyToken(pub u64);

impl ConsistencyToken {
    /// `<store id in 32 hex digits>:<position>`: opaque to clients, readable in a log.
    pub fn to_header(self, store: StoreId) -> String {
        format!("{}:{}", store.0.simple(), self.0)
    }

    /// Reads a header value written by [`ConsistencyToken::to_header`] for `store`.
    pub fn from_header(text: &str, store: StoreId) -> Result<ConsistencyToken, TokenError> {
        let (id, position) = text.trim().split_once(':').ok_or(TokenError::Malformed)?;
        let id = Uuid::try_parse(id).map_err(|_| TokenError::Malformed)?;
        let position = position.parse().map_err(|_| TokenError::Malformed)?;
        if id != store.0 {
            return Err(TokenError::OtherStore);
        }
        Ok(ConsistencyToken(position))
    }
}

/// Why an `X-Consistency-Token` header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a consistency token of this API")]
    Malformed,
    #[error("the consistency token comes from another event store")]
    OtherStore,
}

/// The identity of one event store, created with it and kept by its backups.
/// Checkpoints and consistency tokens carry it, so that nothing positioned in
/// one store is ever used against another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoreId(pub Uuid);

impl std::fmt::Display for StoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a consumer at some cursor still has to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events after the cursor.
    pub events: u64,
    /// When the oldest of them happened; `None` when there are none.
    pub oldest: Option<DateTime<Utc>>,
}

/// One read of the global log.
#[derive(Clone, Debug)]
pub struct LogBatch {
    pub events: Vec<RecordedEvent>,
    /// Resume from here.
    pub next: LogCursor,
    /// Every write whose token is at most this has been returned by this read or earlier ones.
    pub covered: ConsistencyToken,
}

impl LogBatch {
    /// A gap-safe read of `events` (in position order) that started after `after`:
    /// the read has seen every position up to its last event.
    pub fn after(after: LogCursor, events: Vec<RecordedEvent>) -> LogBatch {
        let next = events.last().map_or(after, |e| LogCursor {
            position: e.global_position,
        });
        LogBatch {
            events,
            next,
            covered: ConsistencyToken(next.position.max(0) as u64),
        }
    }
}

/// A cached state of a stream; an optimisation only.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub stream_id: Uuid,
    pub version: u64,
    /// Identifies the code that wrote `state`; readers ignore snapshots of other layouts.
    pub schema: String,
    pub state: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    Conflict {
        stream_id: Uuid,
        expected: u64,
        actual: u64,
    },
    #[error("idempotency key is already used")]
    IdempotencyKeyTaken,
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store holds data it cannot read: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A broken unique rule of the schema that means something to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Violation {
    /// `(stream_id, version)`: a concurrent append took this version first.
    StreamVersion,
    /// The idempotency key's primary key: a concurrent request with the key won.
    IdempotencyKey,
}

/// Names the rule a failed write broke, by the constraint that reported it:
/// PostgreSQL names the constraint, SQLite the table and columns in its message.
fn violation(e: &sqlx::Error) -> Option<Violation> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if !matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
        return None;
    }
    match db.constraint() {
        Some("events_stream_id_version_key") => Some(Violation::StreamVersion),
        Some("idempotency_pkey") => Some(Violation::IdempotencyKey),
        Some(_) => None,
        None => match db.message() {
            m if m.ends_with("events.stream_id, events.version") => Some(Violation::StreamVersion),
            m if m.ends_with("idempotency.key") => Some(Violation::IdempotencyKey),
            _ => None,
        },
    }
}

/// The event store port.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends atomically, checking `expected_version` and the idempotency key.
    async fn append(&self, request: AppendRequest) -> Result<Appended>;

    /// Events of one stream with `after < version <= up_to`, in version order.
    async fn read_stream(
        &self,
        stream_id: Uuid,
        after: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<RecordedEvent>>;

    /// Up to `limit` events of the global log after `after`, gap-safely.
    async fn read_log(&self, after: LogCursor, limit: usize) -> Result<LogBatch>;

    /// The response stored under a scoped idempotency key.
    async fn find_response(&self, key: &str) -> Result<Option<StoredResponse>>;

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>>;

    /// What a command loads: the stream's snapshot, if any, and the events
    /// after its version (all events when there is none). A caller that does
    /// not trust the snapshot reads the stream from 0 itself. Adapters may
    /// answer in one query; this default takes two (an append between them
    /// only adds events after the snapshot, which is still a valid load).
    async fn load_stream(&self, stream_id: Uuid) -> Result<(Option<Snapshot>, Vec<RecordedEvent>)> {
        let snapshot = self.load_snapshot(stream_id).await?;
        let after = snapshot.as_ref().map_or(0, |s| s.version);
        let events = self.read_stream(stream_id, after, None).await?;
        Ok((snapshot, events))
    }

    /// Saves a snapshot unless a newer one exists.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()>;

    /// A token covering every append acknowledged so far (for replayed responses).
    async fn current_token(&self) -> Result<ConsistencyToken>;

    /// Checks the store answers; used by readiness probes.
    async fn ping(&self) -> Result<()>;

    /// What a reader at `after` has not read yet (for lag metrics and health).
    async fn backlog(&self, after: LogCursor) -> Result<Backlog>;

    /// Short adapter name for logs and metrics ("sqlite", "postgres").
    fn kind(&self) -> &'static str;

    /// This store's identity.
    fn store_id(&self) -> StoreId;
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Unavailable(format!("version {v} out of range")))
}
