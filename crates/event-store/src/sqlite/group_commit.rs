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
use sqlx::{Sqlite, SqlitePool, Transaction};
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
async fn commit(pool: &SqlitePool, requests: &[AppendRequest]) -> Result<Vec<Result<Appended>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Versions as this batch has left them, and the keys it has used.
    let mut versions: HashMap<Uuid, u64> = HashMap::new();
    let mut used_keys: HashSet<&str> = HashSet::new();
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let actual = match versions.get(&request.stream_id) {
            Some(v) => *v,
            None => current_version(&mut tx, request.stream_id).await?,
        };
        if actual != request.expected_version {
            answers.push(Err(StoreError::Conflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            }));
            continue;
        }
        if let Some((key, _)) = &request.idempotency
            && (used_keys.contains(key.as_str()) || key_taken(&mut tx, key).await?)
        {
            answers.push(Err(StoreError::IdempotencyKeyTaken));
            continue;
        }
        let appended = insert(&mut tx, request, actual).await?;
        versions.insert(request.stream_id, appended.last_version);
        if let Some((key, _)) = &request.idempotency {
            used_keys.insert(key);
        }
        answers.push(Ok(appended));
    }
    tx.commit().await?;
    Ok(answers)
}

async fn current_version(tx: &mut Transaction<'_, Sqlite>, stream: Uuid) -> Result<u64> {
    let v: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?")
            .bind(stream.to_string())
            .fetch_one(&mut **tx)
            .await?;
    to_u64(v, "version")
}

async fn key_taken(tx: &mut Transaction<'_, Sqlite>, key: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM idempotency WHERE key = ?")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Writes one checked request: its idempotency record and its events.
async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    request: &AppendRequest,
    actual: u64,
) -> Result<Appended> {
    let stream = request.stream_id.to_string();
    if let Some((key, stored)) = &request.idempotency {
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
    }
    let mut version = actual;
    let mut last_position = 0;
    let meta = &request.metadata;
    for event in &request.events {
        version += 1;
        last_position = sqlx::query_scalar(&format!(
            "INSERT INTO events ({}) \
             VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING global_position",
            super::EVENT_COLUMNS
        ))
        .bind(event.event_id.to_string())
        .bind(&stream)
        .bind(to_i64(version)?)
        .bind(&event.event_type)
        .bind(i64::from(event.schema_version))
        .bind(event.data.to_string())
        .bind(event.occurred_at)
        .bind(&event.actor)
        .bind(&meta.correlation_id)
        .bind(meta.command_id.to_string())
        .bind(&meta.traceparent)
        .bind(&meta.idempotency_key)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| match violation(&e) {
            // Unreachable while this committer is the only writer, but the schema has the last word.
            Some(Violation::StreamVersion) => StoreError::Conflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual: version - 1,
            },
            _ => e.into(),
        })?;
    }
    Ok(Appended {
        last_version: version,
        last_position,
        consistency_token: ConsistencyToken(last_position as u64),
    })
}
