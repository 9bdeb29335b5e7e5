//! Group commit for SQLite: concurrent appends share one transaction and one fsync.
//!
//! SQLite has one writer, and with `synchronous=FULL` every commit waits for
//! an fsync of the WAL. One transaction per command therefore allows one
//! command per flush, however many clients wait. Instead, every append of
//! this process goes through one committer task, which takes whatever appends
//! are waiting and commits them together in one `BEGIN IMMEDIATE`
//! transaction: while one batch is being flushed the next one gathers, so
//! batches grow with the load, and a lone command is not delayed at all.
//!
//! Each command keeps its own checks and its own answer. Inside the
//! transaction this process is the only writer (the data dir is locked and
//! `write_gate` is held), so the versions and idempotency keys it reads are
//! the truth until it commits. A command that fails its check (a stale
//! expected version, an idempotency key already used, by an earlier command
//! or by one earlier in the same batch) is answered with its own error and
//! has written nothing; the others commit together. A database error fails the
//! whole batch (none of it committed), and each of its commands is answered
//! with that error. Positions are assigned in arrival order within the batch
//! and become visible together at the commit, so the log stays gap-free.

use crate::{
    AppendRequest, Appended, ConsistencyToken, Result, StoreError, Violation, to_i64, to_u64,
    violation,
};
use chrono::Utc;
use sqlx::{QueryBuilder, Row as _, Sqlite, SqlitePool, Transaction};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// Most commands committed in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Appended>>;

/// The handle appends go through; the committer task ends when it is dropped.
pub(super) struct GroupCommit {
    /// Appends waiting for the committer; it is their only reader.
    queue: mpsc::UnboundedSender<(AppendRequest, Reply)>,
}

impl GroupCommit {
    /// Starts the committer. It holds `write_gate` while a batch is open, so
    /// that the store's other writer (snapshots) never waits on SQLite's lock.
    pub(super) fn start(pool: SqlitePool, write_gate: Arc<Mutex<()>>) -> GroupCommit {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(committer(pool, write_gate, waiting));
        GroupCommit { queue }
    }

    pub(super) async fn append(&self, request: AppendRequest) -> Result<Appended> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?
    }
}

async fn committer(
    pool: SqlitePool,
    write_gate: Arc<Mutex<()>>,
    mut waiting: mpsc::UnboundedReceiver<(AppendRequest, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // `recv_many` waits for the first and takes every other one already waiting.
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        metrics::histogram!("order_platform_event_store_batch_commands")
            .record(requests.len() as f64);
        let answers = {
            let _writer = write_gate.lock().await;
            commit(&pool, &requests).await
        };
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => {
                let shared = e.to_string();
                (0..requests.len())
                    .map(|_| Err(StoreError::Unavailable(shared.clone())))
                    .collect()
            }
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The caller may have gone (its request was cancelled): nothing to tell.
            let _ = reply.send(answer);
        }
    }
}

/// Commits the requests that pass their checks; one answer per request, in order.
///
/// A few statements per batch, not per command: each is a round trip to the thread the
/// connection runs on. The stored versions of the batch's streams in one query; then the
/// checks, in arrival order, against the versions as the batch leaves them; then every
/// accepted event in one insert (per [`ROWS_PER_STATEMENT`]), in arrival order, so positions
/// are drawn in that order.
async fn commit(pool: &SqlitePool, requests: &[AppendRequest]) -> Result<Vec<Result<Appended>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut versions = stored_versions(&mut tx, requests).await?;
    let mut used_keys: HashSet<&str> = HashSet::new();
    // (request, its stream's version before it) for every request that passed.
    let mut accepted: Vec<(usize, u64)> = Vec::with_capacity(requests.len());
    let mut answers: Vec<Option<Result<Appended>>> = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        let actual = versions.get(&request.stream_id).copied().unwrap_or(0);
        if actual != request.expected_version {
            answers.push(Some(Err(StoreError::Conflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            })));
            continue;
        }
        if let Some((key, stored)) = &request.idempotency {
            if used_keys.contains(key.as_str()) || key_taken(&mut tx, key).await? {
                answers.push(Some(Err(StoreError::IdempotencyKeyTaken)));
                continue;
            }
            record_key(&mut tx, key, stored).await?;
            used_keys.insert(key);
        }
        versions.insert(request.stream_id, actual + request.events.len() as u64);
        accepted.push((index, actual));
        answers.push(None);
    }
    let positions = insert_events(&mut tx, requests, &accepted).await?;
    for (index, before) in accepted {
        let request = &requests[index];
        let last_position = match request.events.last() {
            Some(event) => *positions.get(&event.event_id).ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "the insert returned no position for event {}",
                    event.event_id
                ))
            })?,
            None => 0,
        };
        answers[index] = Some(Ok(Appended {
            last_version: before + request.events.len() as u64,
            last_position,
            consistency_token: ConsistencyToken(last_position as u64),
        }));
    }
    tx.commit().await?;
    Ok(answers
        .into_iter()
        .map(|answer| answer.expect("every request was answered"))
        .collect())
}

/// Rows (or stream ids) per statement: an event row binds 12 values, well under SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 500;

/// The stored version of each stream of `requests` (absent: none stored yet).
async fn stored_versions(
    tx: &mut Transaction<'_, Sqlite>,
    requests: &[AppendRequest],
) -> Result<HashMap<Uuid, u64>> {
    let streams: Vec<String> = requests
        .iter()
        .map(|r| r.stream_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    let mut versions = HashMap::with_capacity(streams.len());
    for chunk in streams.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT stream_id, MAX(version) FROM events WHERE stream_id IN (",
        );
        let mut list = query.separated(", ");
        for stream in chunk {
            list.push_bind(stream);
        }
        query.push(") GROUP BY stream_id");
        for row in query.build().fetch_all(&mut **tx).await? {
            let stream: String = row.try_get(0)?;
            let stream = Uuid::parse_str(&stream)
                .map_err(|e| StoreError::Corrupt(format!("stream id {stream:?}: {e}")))?;
            versions.insert(stream, to_u64(row.try_get(1)?, "version")?);
        }
    }
    Ok(versions)
}

async fn key_taken(tx: &mut Transaction<'_, Sqlite>, key: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM idempotency WHERE key = ?")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

async fn record_key(
    tx: &mut Transaction<'_, Sqlite>,
    key: &str,
    stored: &crate::StoredResponse,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO idempotency (key, request_hash, status, response, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(key)
    .bind(&stored.request_hash)
    .bind(i64::from(stored.status))
    .bind(stored.response.to_string())
    .bind(Utc::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts the events of the `accepted` requests, in that order; the position of each.
async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    requests: &[AppendRequest],
    accepted: &[(usize, u64)],
) -> Result<HashMap<Uuid, i64>> {
    struct Row<'a> {
        request: &'a AppendRequest,
        event: &'a crate::NewEvent,
        stream: String,
        version: i64,
    }
    let mut rows = Vec::new();
    for (index, before) in accepted {
        let request = &requests[*index];
        let stream = request.stream_id.to_string();
        for (offset, event) in request.events.iter().enumerate() {
            rows.push(Row {
                request,
                event,
                stream: stream.clone(),
                version: to_i64(before + offset as u64 + 1)?,
            });
        }
    }
    let mut positions = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert =
            QueryBuilder::<Sqlite>::new(format!("INSERT INTO events ({}) ", super::EVENT_COLUMNS));
        insert.push_values(chunk, |mut values, row| {
            let meta = &row.request.metadata;
            values
                .push("NULL")
                .push_bind(row.event.event_id.to_string())
                .push_bind(&row.stream)
                .push_bind(row.version)
                .push_bind(&row.event.event_type)
                .push_bind(i64::from(row.event.schema_version))
                .push_bind(row.event.data.to_string())
                .push_bind(row.event.occurred_at)
                .push_bind(&row.event.actor)
                .push_bind(&meta.correlation_id)
                .push_bind(meta.command_id.to_string())
                .push_bind(&meta.traceparent)
                .push_bind(&meta.idempotency_key);
        });
        insert.push(" RETURNING event_id, global_position");
        let returned =
            insert
                .build()
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| match violation(&e) {
                    // Unreachable while this committer is the only writer, but the schema has the
                    // last word: the whole batch fails, none of it committed.
                    Some(Violation::StreamVersion) => StoreError::Unavailable(
                        "a version of a stream in this batch was written by another writer".into(),
                    ),
                    _ => e.into(),
                })?;
        for row in returned {
            let event_id: String = row.try_get(0)?;
            let event_id = Uuid::parse_str(&event_id)
                .map_err(|e| StoreError::Corrupt(format!("event id {event_id:?}: {e}")))?;
            positions.insert(event_id, row.try_get(1)?);
        }
    }
    Ok(positions)
}
