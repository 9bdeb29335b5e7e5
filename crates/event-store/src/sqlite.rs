//! SQLite adapter: the embedded default.
//!
//! Gap safety comes for free here: this process is the only writer (the data
//! dir is locked by the binary), appends go through one committer task
//! (`group_commit`) that writes in `BEGIN IMMEDIATE` transactions while
//! holding `write_gate`, so global positions become visible in increasing
//! order and a reader can never see position `n + 1` before `n`. The
//! consistency token is therefore simply the last position appended.

use crate::EmbeddedMigrations;
use crate::{
    AppendRequest, Appended, Backlog, ConsistencyToken, EventStore, LogBatch, LogCursor,
    RecordedEvent, Result, Snapshot, StoreError, StoreId, StoredResponse, to_i64, to_u64,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

mod group_commit;

/// Opens a SQLite database file of this process for a connection pool, creating
/// and migrating it first, without racing itself.
///
/// Switching a file to WAL and migrating it need the file to themselves; done
/// by the pool's connections as they open, two of them could try at once and
/// one would fail with `database is locked` (seen on about 1 fresh start in
/// 10). So one connection creates the file, switches it to WAL (which then
/// sticks to the file) and migrates it, and closes; only then does the pool
/// open, every connection waiting up to [`BUSY_TIMEOUT`] for a lock.
///
/// `synchronous` is the file's durability: `Full` for a file whose commits
/// must survive power loss (the event store); `Normal` (in WAL mode: survives
/// a crash of the process, may lose the last commits on power loss) for a
/// file that can be rebuilt from one that is `Full`.
pub async fn open_pool(
    path: &Path,
    migrations: EmbeddedMigrations,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, sqlx::Error> {
    let migrator = migrations.migrator().await?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(BUSY_TIMEOUT)
        .synchronous(synchronous);
    // A pool of exactly one connection: `Migrator::run` on a bare connection
    // makes the future unusable with `tokio::spawn` (sqlx's `Acquire` bound).
    let first = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            options
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await?;
    migrator.run(&first).await?;
    first.close().await;
    SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        // A connection to a local file does not go stale; sqlx's ping before
        // every acquire would cost a hop to the connection's thread per query.
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// How long a connection waits for another one's lock before `database is locked`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteEventStore {
    pool: SqlitePool,
    /// Held by whoever writes: the committer for a batch of appends, and
    /// `save_snapshot`. One writer at a time is all SQLite allows; queueing
    /// here instead of in SQLite's busy handler keeps writers from sleeping.
    write_gate: Arc<Mutex<()>>,
    store_id: StoreId,
    /// Every append of this process goes through it (see `group_commit`).
    group: group_commit::GroupCommit,
}

impl SqliteEventStore {
    /// Opens (creating if needed) the store in `path` and runs its migrations.
    pub async fn open(path: &Path) -> Result<SqliteEventStore> {
        // FULL: an acknowledged append survives power loss, not just a crash.
        let pool = open_pool(path, crate::migrations::SQLITE, SqliteSynchronous::Full)
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        let store_id: String = sqlx::query_scalar("SELECT store_id FROM store_identity")
            .fetch_one(&pool)
            .await?;
        let store_id = Uuid::parse_str(&store_id)
            .map_err(|e| StoreError::Corrupt(format!("store id {store_id:?}: {e}")))?;
        let write_gate = Arc::new(Mutex::new(()));
        Ok(SqliteEventStore {
            group: group_commit::GroupCommit::start(pool.clone(), write_gate.clone()),
            pool,
            write_gate,
            store_id: StoreId(store_id),
        })
    }
}

const EVENT_COLUMNS: &str = "global_position, event_id, stream_id, version, event_type, \
     schema_version, data, occurred_at, actor, correlation_id, causation_id, traceparent, \
     idempotency_key";

fn decode(row: &SqliteRow) -> Result<RecordedEvent> {
    let uuid = |col: &str| -> Result<Uuid> {
        let text: String = row.try_get(col)?;
        Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("{col} {text:?}: {e}")))
    };
    let data: String = row.try_get("data")?;
    Ok(RecordedEvent {
        event_id: uuid("event_id")?,
        stream_id: uuid("stream_id")?,
        version: to_u64(row.try_get("version")?, "version")?,
        global_position: row.try_get("global_position")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get::<i64, _>("schema_version")? as u32,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
        occurred_at: row.try_get::<DateTime<Utc>, _>("occurred_at")?,
        actor: row.try_get("actor")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: uuid("causation_id")?,
        traceparent: row.try_get("traceparent")?,
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended> {
        self.group.append(request).await
    }

    async fn read_stream(
        &self,
        stream_id: Uuid,
        after: u64,
        up_to: Option<u64>,
    ) -> Result<Vec<RecordedEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE stream_id = ? AND version > ? AND version <= ? ORDER BY version"
        ))
        .bind(stream_id.to_string())
        .bind(to_i64(after)?)
        .bind(up_to.map_or(Ok(i64::MAX), to_i64)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn read_log(&self, after: LogCursor, limit: usize) -> Result<LogBatch> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > ? \
             ORDER BY global_position LIMIT ?"
        ))
        .bind(after.position)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let events = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(LogBatch::after(after, events))
    }

    async fn backlog(&self, after: LogCursor) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events WHERE global_position > ?1) AS behind, \
                    (SELECT occurred_at FROM events WHERE global_position > ?1 \
                      ORDER BY global_position LIMIT 1) AS oldest",
        )
        .bind(after.position)
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            events: to_u64(row.try_get("behind")?, "count")?,
            oldest: row.try_get::<Option<DateTime<Utc>>, _>("oldest")?,
        })
    }

    async fn find_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        let row =
            sqlx::query("SELECT request_hash, status, response FROM idempotency WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            let response: String = row.try_get("response")?;
            Ok(StoredResponse {
                request_hash: row.try_get("request_hash")?,
                status: row.try_get::<i64, _>("status")? as u16,
                response: serde_json::from_str(&response)
                    .map_err(|e| StoreError::Corrupt(format!("stored response: {e}")))?,
            })
        })
        .transpose()
    }

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>> {
        let row = sqlx::query("SELECT version, schema, state FROM snapshots WHERE stream_id = ?")
            .bind(stream_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let state: String = row.try_get("state")?;
            Ok(Snapshot {
                stream_id,
                version: to_u64(row.try_get("version")?, "snapshot version")?,
                schema: row.try_get("schema")?,
                state: serde_json::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot state: {e}")))?,
            })
        })
        .transpose()
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let _writer = self.write_gate.lock().await;
        sqlx::query(
            "INSERT INTO snapshots (stream_id, version, schema, state) VALUES (?, ?, ?, ?) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
             schema = excluded.schema, state = excluded.state \
             WHERE excluded.version > snapshots.version OR excluded.schema <> snapshots.schema",
        )
        .bind(snapshot.stream_id.to_string())
        .bind(to_i64(snapshot.version)?)
        .bind(&snapshot.schema)
        .bind(snapshot.state.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn current_token(&self) -> Result<ConsistencyToken> {
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(global_position), 0) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(ConsistencyToken(to_u64(last, "position")?))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn store_id(&self) -> StoreId {
        self.store_id
    }
}
