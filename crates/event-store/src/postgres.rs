//! PostgreSQL adapter: the production event store.
//!
//! # Gap safety: appends commit in position order
//!
//! `global_position` comes from a sequence, and in general sequence values
//! commit out of order: transaction A takes position 10, B takes 11, B commits,
//! A is still open. A reader that saw 11 and moved its cursor past 10 would
//! lose A's event when A commits.
//!
//! So appends to one store never overlap between drawing a position and
//! committing: a statement-level trigger on `events` (migration 0002) takes the
//! store's *append lock*, a transaction-scoped advisory lock, before the first
//! row of any insert is formed and so before `nextval` runs. The lock is held
//! until the transaction ends, and PostgreSQL makes a commit visible before it
//! releases the committing transaction's locks. Hence, whenever a reader's
//! snapshot shows position `p`, every smaller position is either visible in the
//! same snapshot or belongs to a transaction that aborted and will never
//! appear. The reader simply reads `global_position > cursor` in order; no
//! horizon, no timeout, nothing to skip.
//!
//! What this buys, compared with the transaction-id horizon used before:
//! - the cursor depends only on transactions that append to *this* store: an
//!   idle session, a long report or a prepared transaction anywhere else in the
//!   cluster holds nothing back;
//! - positions are plain column values, so a `pg_dump` and restore into another
//!   cluster keeps every checkpoint meaningful (transaction ids do not survive);
//! - the consistency token of an append is its last position, known before the
//!   commit: nothing runs after the commit that could fail.
//!
//! The price: the window from an append's first insert to its commit is
//! serialised per store. It is short (the inserts and the commit), and the
//! command service keeps it short; a session that inserts into `events` by hand
//! and stays open stops every other append until it ends (our own sessions run
//! with `lock_timeout` and `idle_in_transaction_session_timeout`, so such a
//! stall turns into errors, never into a skipped event).

use crate::{
    AppendRequest, Appended, Backlog, ConsistencyToken, EventStore, LogBatch, LogCursor,
    RecordedEvent, Result, Snapshot, StoreError, StoreId, StoredResponse, to_i64, to_u64,
};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use std::time::Duration;
use uuid::Uuid;

mod group_commit;

pub struct PostgresEventStore {
    pool: PgPool,
    store_id: StoreId,
    /// Every append of this process goes through it (see `group_commit`).
    group: group_commit::GroupCommit,
}

impl PostgresEventStore {
    /// Connects and runs migrations. `options` may carry a `search_path` to use a schema.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let options = options.options([
            // An append waiting this long for the append lock fails (503) instead of hanging.
            ("lock_timeout", "10s"),
            // A session of ours that stops mid-transaction cannot hold the lock for long.
            ("idle_in_transaction_session_timeout", "60s"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every idle connection before handing it out: one more
            // round trip for every query. Only a connection that has been idle
            // for a while (where a restarted server or a dropped socket is
            // plausible) is checked; a busy one goes straight to its query.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        let migrated = match crate::migrations::POSTGRES.migrator().await {
            Ok(migrator) => migrator.run(&pool).await,
            Err(e) => Err(e),
        };
        migrated.map_err(|e| StoreError::Unavailable(format!("migrating the event store: {e}")))?;
        let store_id = sqlx::query_scalar("SELECT store_id FROM store_identity")
            .fetch_one(&pool)
            .await?;
        Ok(PostgresEventStore {
            group: group_commit::GroupCommit::start(pool.clone()),
            pool,
            store_id: StoreId(store_id),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// [`EventStore::load_stream`] in one query (one statement, so one snapshot
/// of the database): the snapshot row, if any, first, then the events after
/// its version. The snapshot's state is sent once, not with every event (a
/// join would repeat it, and encoding JSONB is most of the query's cost).
const LOAD_STREAM: &str = "SELECT 0 AS part, version AS snapshot_version, \
     schema AS snapshot_schema, state AS snapshot_state, NULL::bigint AS global_position, \
     NULL::uuid AS event_id, NULL::uuid AS stream_id, NULL::bigint AS version, \
     NULL::text AS event_type, NULL::int AS schema_version, NULL::jsonb AS data, \
     NULL::timestamptz AS occurred_at, NULL::text AS actor, NULL::text AS correlation_id, \
     NULL::uuid AS causation_id, NULL::text AS traceparent, NULL::text AS idempotency_key \
     FROM snapshots WHERE stream_id = $1 \
     UNION ALL \
     SELECT 1, NULL, NULL, NULL, e.global_position, e.event_id, e.stream_id, e.version, \
     e.event_type, e.schema_version, e.data, e.occurred_at, e.actor, e.correlation_id, \
     e.causation_id, e.traceparent, e.idempotency_key \
     FROM events e WHERE e.stream_id = $1 \
     AND e.version > COALESCE((SELECT version FROM snapshots WHERE stream_id = $1), 0) \
     ORDER BY part, version";

/// A pooled connection idle for this long is pinged before it is used again.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

const EVENT_COLUMNS: &str = "global_position, event_id, stream_id, version, event_type, \
     schema_version, data, occurred_at, actor, correlation_id, causation_id, traceparent, \
     idempotency_key";

fn decode(row: &PgRow) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        event_id: row.try_get("event_id")?,
        stream_id: row.try_get("stream_id")?,
        version: to_u64(row.try_get("version")?, "version")?,
        global_position: row.try_get("global_position")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get::<i32, _>("schema_version")? as u32,
        data: row.try_get("data")?,
        occurred_at: row.try_get("occurred_at")?,
        actor: row.try_get("actor")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        traceparent: row.try_get("traceparent")?,
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

#[async_trait]
impl EventStore for PostgresEventStore {
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
             WHERE stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version"
        ))
        .bind(stream_id)
        .bind(to_i64(after)?)
        .bind(up_to.map_or(Ok(i64::MAX), to_i64)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn read_log(&self, after: LogCursor, limit: usize) -> Result<LogBatch> {
        // Gap-safe as it stands: positions become visible in order (module docs).
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > $1 \
             ORDER BY global_position LIMIT $2"
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
            "SELECT (SELECT count(*) FROM events WHERE global_position > $1) AS behind, \
                    (SELECT occurred_at FROM events WHERE global_position > $1 \
                      ORDER BY global_position LIMIT 1) AS oldest",
        )
        .bind(after.position)
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            events: to_u64(row.try_get("behind")?, "count")?,
            oldest: row.try_get("oldest")?,
        })
    }

    async fn find_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        let row =
            sqlx::query("SELECT request_hash, status, response FROM idempotency WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(StoredResponse {
                request_hash: row.try_get("request_hash")?,
                status: row.try_get::<i32, _>("status")? as u16,
                response: row.try_get("response")?,
            })
        })
        .transpose()
    }

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>> {
        let row = sqlx::query("SELECT version, schema, state FROM snapshots WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Snapshot {
                stream_id,
                version: to_u64(row.try_get("version")?, "snapshot version")?,
                schema: row.try_get("schema")?,
                state: row.try_get("state")?,
            })
        })
        .transpose()
    }

    async fn load_stream(&self, stream_id: Uuid) -> Result<(Option<Snapshot>, Vec<RecordedEvent>)> {
        // One round trip (and one statement snapshot) instead of two.
        let rows = sqlx::query(LOAD_STREAM)
            .bind(stream_id)
            .fetch_all(&self.pool)
            .await?;
        let mut snapshot = None;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if snapshot.is_none()
                && let Some(version) = row.try_get::<Option<i64>, _>("snapshot_version")?
            {
                snapshot = Some(Snapshot {
                    stream_id,
                    version: to_u64(version, "snapshot version")?,
                    schema: row.try_get("snapshot_schema")?,
                    state: row.try_get("snapshot_state")?,
                });
            }
            if row.try_get::<Option<i64>, _>("global_position")?.is_some() {
                events.push(decode(row)?);
            }
        }
        Ok((snapshot, events))
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        sqlx::query(
            "INSERT INTO snapshots (stream_id, version, schema, state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
             schema = excluded.schema, state = excluded.state \
             WHERE excluded.version > snapshots.version OR excluded.schema <> snapshots.schema",
        )
        .bind(snapshot.stream_id)
        .bind(to_i64(snapshot.version)?)
        .bind(&snapshot.schema)
        .bind(&snapshot.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn current_token(&self) -> Result<ConsistencyToken> {
        // Every committed append is at or below the highest visible position.
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
        "postgres"
    }

    fn store_id(&self) -> StoreId {
        self.store_id
    }
}
