//! PostgreSQL adapter: the production event store.
//!
//! # Gap safety: the transaction-id horizon
//!
//! `global_position` comes from a sequence, and sequence values commit out of
//! order: transaction A takes position 10, B takes 11, B commits, A is still
//! open. A reader that saw 11 and moved its cursor past 10 would lose A's event.
//!
//! Every row therefore records the id of the transaction that wrote it
//! (`transaction_id xid8`, from `pg_current_xact_id()`), and the log is
//! delivered in `(transaction_id, global_position)` order, but only for
//! transactions below the *horizon* `pg_snapshot_xmin(pg_current_snapshot())`:
//! the oldest transaction id still running. Every transaction below it has
//! finished, so its rows are all visible (or it aborted and they never will
//! be); nothing the reader skips can appear later. No timeouts, no locks
//! between writers. The price: a transaction left open anywhere in the
//! database holds the horizon, and with it every reader, back until it ends —
//! keep transactions short (and set `idle_in_transaction_session_timeout`).
//!
//! The consistency token of an append is `pg_snapshot_xmax` taken right after
//! commit: every transaction acknowledged before then has a smaller id. A
//! reader covers it once its horizon has passed it.

use crate::{
    AppendRequest, Appended, ConsistencyToken, EventStore, LogBatch, LogCursor, RecordedEvent,
    Result, Snapshot, StoreError, StoredResponse, to_i64, to_u64,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresEventStore {
    pool: PgPool,
}

impl PostgresEventStore {
    /// Connects and runs migrations. `options` may carry a `search_path` to use a schema.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating the event store: {e}")))?;
        Ok(PostgresEventStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn current_version(tx: &mut Transaction<'_, Postgres>, stream: Uuid) -> Result<u64> {
        let v: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1")
                .bind(stream)
                .fetch_one(&mut **tx)
                .await?;
        to_u64(v, "version")
    }
}

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

fn parse_xid(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("transaction id {text:?}")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended> {
        let conflict = |actual| StoreError::Conflict {
            stream_id: request.stream_id,
            expected: request.expected_version,
            actual,
        };
        let mut tx = self.pool.begin().await?;
        let actual = Self::current_version(&mut tx, request.stream_id).await?;
        if actual != request.expected_version {
            return Err(conflict(actual));
        }
        if let Some((key, stored)) = &request.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency (key, request_hash, status, response) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(&stored.request_hash)
            .bind(i32::from(stored.status))
            .bind(&stored.response)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        let mut version = actual;
        let mut last_position = 0;
        let meta = &request.metadata;
        for event in &request.events {
            version += 1;
            let inserted = sqlx::query_scalar(&format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES \
                 (DEFAULT, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 RETURNING global_position"
            ))
            .bind(event.event_id)
            .bind(request.stream_id)
            .bind(to_i64(version)?)
            .bind(&event.event_type)
            .bind(event.schema_version as i32)
            .bind(&event.data)
            .bind(event.occurred_at)
            .bind(&event.actor)
            .bind(&meta.correlation_id)
            .bind(meta.command_id)
            .bind(&meta.traceparent)
            .bind(&meta.idempotency_key)
            .fetch_one(&mut *tx)
            .await;
            last_position = match inserted {
                Ok(position) => position,
                // A concurrent append took this version first.
                Err(e) if is_unique_violation(&e) => {
                    return Err(conflict(version - 1));
                }
                Err(e) => return Err(e.into()),
            };
        }
        match tx.commit().await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::IdempotencyKeyTaken),
            Err(e) => return Err(e.into()),
        }
        Ok(Appended {
            last_version: version,
            last_position,
            // Taken after commit: every transaction acknowledged before this
            // point (ours included) has an id below it.
            consistency_token: self.current_token().await?,
        })
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
        // The horizon first: it only grows, so using it in the next statement is safe.
        let horizon: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                .fetch_one(&self.pool)
                .await?;
        let horizon = parse_xid(&horizon)?;
        let rows = sqlx::query(&format!(
            "SELECT transaction_id::text AS tx, {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
               AND transaction_id < $3::text::xid8 \
             ORDER BY transaction_id, global_position LIMIT $4"
        ))
        .bind(after.commit.to_string())
        .bind(after.position)
        .bind(horizon.to_string())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        let mut next = after;
        for row in &rows {
            let event = decode(row)?;
            next = LogCursor {
                commit: parse_xid(row.try_get("tx")?)?,
                position: event.global_position,
            };
            events.push(event);
        }
        // A full batch may stop inside the transactions below the horizon; only
        // those before the last returned one are surely complete.
        let covered = if rows.len() < limit {
            horizon
        } else {
            next.commit
        };
        Ok(LogBatch {
            events,
            next,
            covered: ConsistencyToken(covered),
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
        let xmax: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
                .fetch_one(&self.pool)
                .await?;
        Ok(ConsistencyToken(parse_xid(&xmax)?))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}
