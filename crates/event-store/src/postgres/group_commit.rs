//! Group commit: concurrent appends share one transaction and one flush.
//!
//! Appends to a store are serialised by its append lock (see the parent
//! module), so one transaction per command would allow one command per commit
//! round trip and flush. Instead, every append of this process goes through
//! one committer task: it takes whatever appends are waiting, and commits them
//! together. While one batch commits, the next one gathers, so batches grow
//! with the load and a lone command is not delayed at all.
//!
//! Each command keeps its own optimistic-concurrency check and its own answer.
//! The batch takes the append lock *first*; from then on no one else can
//! append to the store, so the versions and idempotency keys it reads are the
//! truth until it commits. Commands that fail their check (a stale expected
//! version, an idempotency key already used — by an earlier command or by one
//! earlier in the same batch) are answered with their own error and left out;
//! the others are inserted with one statement per table and commit together.
//! A database error fails the whole batch (none of it committed), and each of
//! its commands is answered with that error.

use crate::{AppendRequest, Appended, ConsistencyToken, Result, StoreError, to_i64, to_u64};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most commands committed in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Appended>>;

/// The handle appends go through; the committer task ends when it is dropped.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<(AppendRequest, Reply)>,
}

impl GroupCommit {
    pub(super) fn start(pool: PgPool) -> GroupCommit {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(committer(pool, waiting));
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

async fn committer(pool: PgPool, mut waiting: mpsc::UnboundedReceiver<(AppendRequest, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // `recv_many` waits for the first and takes every other one already waiting.
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        metrics::histogram!("order_platform_event_store_batch_commands")
            .record(requests.len() as f64);
        let answers = match commit(&pool, &requests).await {
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
async fn commit(pool: &PgPool, requests: &[AppendRequest]) -> Result<Vec<Result<Appended>>> {
    // One round trip: the transaction starts holding the append lock (simple
    // query protocol, two statements; the batch reads nothing before the lock).
    let mut tx = pool
        .begin_with(
            "BEGIN; SELECT pg_advisory_xact_lock((x'4f50'::bigint << 32) \
             | 'events'::regclass::oid::bigint)",
        )
        .await?;

    let streams: Vec<Uuid> = requests.iter().map(|r| r.stream_id).collect();
    let mut versions: HashMap<Uuid, u64> = HashMap::new();
    for (stream, version) in sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT stream_id, MAX(version) FROM events WHERE stream_id = ANY($1) GROUP BY stream_id",
    )
    .bind(&streams)
    .fetch_all(&mut *tx)
    .await?
    {
        versions.insert(stream, to_u64(version, "version")?);
    }
    let keys: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.idempotency.as_ref().map(|(k, _)| k.as_str()))
        .collect();
    // Most commands carry no key: no round trip for them.
    let mut taken: HashSet<String> = if keys.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar::<_, String>("SELECT key FROM idempotency WHERE key = ANY($1)")
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
    };

    // Decide each request in arrival order against the store and the batch so far.
    let mut answers: Vec<Result<Appended>> = Vec::with_capacity(requests.len());
    let mut rows = EventRows::default();
    let mut records = IdempotencyRows::default();
    for request in requests {
        let actual = versions.get(&request.stream_id).copied().unwrap_or(0);
        if actual != request.expected_version {
            answers.push(Err(StoreError::Conflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            }));
            continue;
        }
        if let Some((key, _)) = &request.idempotency
            && !taken.insert(key.clone())
        {
            answers.push(Err(StoreError::IdempotencyKeyTaken));
            continue;
        }
        let last_version = actual + request.events.len() as u64;
        versions.insert(request.stream_id, last_version);
        rows.push(request, actual)?;
        if let Some((key, stored)) = &request.idempotency {
            records.push(key, stored);
        }
        answers.push(Ok(Appended {
            last_version,
            last_position: 0,
            consistency_token: ConsistencyToken(0),
        }));
    }

    if !records.keys.is_empty() {
        sqlx::query(
            "INSERT INTO idempotency (key, request_hash, status, response) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::jsonb[])",
        )
        .bind(&records.keys)
        .bind(&records.hashes)
        .bind(&records.statuses)
        .bind(&records.responses)
        .execute(&mut *tx)
        .await?;
    }
    let mut positions: HashMap<Uuid, i64> = HashMap::new();
    if !rows.event_ids.is_empty() {
        // Ordered by ordinality: positions are drawn in the order the requests came.
        let inserted = sqlx::query_as::<_, (Uuid, i64)>(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, \
             data, occurred_at, actor, correlation_id, causation_id, traceparent, idempotency_key) \
             SELECT e, s, v, t, sv, d, o, a, c, ca, tp, ik FROM unnest($1::uuid[], $2::uuid[], \
             $3::bigint[], $4::text[], $5::int[], $6::jsonb[], $7::timestamptz[], $8::text[], \
             $9::text[], $10::uuid[], $11::text[], $12::text[]) WITH ORDINALITY \
             AS x(e, s, v, t, sv, d, o, a, c, ca, tp, ik, n) ORDER BY n \
             RETURNING event_id, global_position",
        )
        .bind(&rows.event_ids)
        .bind(&rows.stream_ids)
        .bind(&rows.versions)
        .bind(&rows.types)
        .bind(&rows.schema_versions)
        .bind(&rows.data)
        .bind(&rows.occurred_at)
        .bind(&rows.actors)
        .bind(&rows.correlation_ids)
        .bind(&rows.causation_ids)
        .bind(&rows.traceparents)
        .bind(&rows.idempotency_keys)
        .fetch_all(&mut *tx)
        .await?;
        positions.extend(inserted);
    }
    tx.commit().await?;

    // Nothing may fail from here on: the batch is committed.
    let mut accepted = requests.iter().zip(answers.iter_mut());
    for (request, answer) in &mut accepted {
        if let Ok(appended) = answer {
            let last = request
                .events
                .last()
                .and_then(|e| positions.get(&e.event_id))
                .copied()
                .unwrap_or(0);
            appended.last_position = last;
            appended.consistency_token = ConsistencyToken(last.max(0) as u64);
        }
    }
    Ok(answers)
}

/// The columns of the events of one batch, for `unnest`.
#[derive(Default)]
struct EventRows {
    event_ids: Vec<Uuid>,
    stream_ids: Vec<Uuid>,
    versions: Vec<i64>,
    types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<serde_json::Value>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    actors: Vec<String>,
    correlation_ids: Vec<String>,
    causation_ids: Vec<Uuid>,
    traceparents: Vec<Option<String>>,
    idempotency_keys: Vec<Option<String>>,
}

impl EventRows {
    fn push(&mut self, request: &AppendRequest, from_version: u64) -> Result<()> {
        let meta = &request.metadata;
        for (i, event) in request.events.iter().enumerate() {
            self.event_ids.push(event.event_id);
            self.stream_ids.push(request.stream_id);
            self.versions.push(to_i64(from_version + 1 + i as u64)?);
            self.types.push(event.event_type.clone());
            self.schema_versions.push(event.schema_version as i32);
            self.data.push(event.data.clone());
            self.occurred_at.push(event.occurred_at);
            self.actors.push(event.actor.clone());
            self.correlation_ids.push(meta.correlation_id.clone());
            self.causation_ids.push(meta.command_id);
            self.traceparents.push(meta.traceparent.clone());
            self.idempotency_keys.push(meta.idempotency_key.clone());
        }
        Ok(())
    }
}

/// The idempotency records of one batch, for `unnest`.
#[derive(Default)]
struct IdempotencyRows {
    keys: Vec<String>,
    hashes: Vec<String>,
    statuses: Vec<i32>,
    responses: Vec<serde_json::Value>,
}

impl IdempotencyRows {
    fn push(&mut self, key: &str, stored: &crate::StoredResponse) {
        self.keys.push(key.to_string());
        self.hashes.push(stored.request_hash.clone());
        self.statuses.push(i32::from(stored.status));
        self.responses.push(stored.response.clone());
    }
}
