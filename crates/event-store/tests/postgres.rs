//! The conformance suite against a real PostgreSQL server (DATABASE_URL, as
//! printed by `dev/stack env`), each test in a schema of its own; plus the
//! proof that the global log is gap-safe.

use order_event_store::conformance::{read_all, request};
use order_event_store::{EventStore, LogCursor, PostgresEventStore, conformance_tests};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// Options for a new, empty schema on the test server.
async fn fresh_schema() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `dev/stack up postgres` \
         and run `eval \"$(dev/stack env)\"`",
    );
    let base = PgConnectOptions::from_str(&url).expect("DATABASE_URL is a postgres URL");
    let schema = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect_with(&base)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    base.options([("search_path", schema.as_str())])
}

async fn open() -> Arc<PostgresEventStore> {
    Arc::new(
        PostgresEventStore::connect(fresh_schema().await, 10)
            .await
            .expect("connect"),
    )
}

use sqlx::Connection;

conformance_tests!(open());

/// Holds a transaction open after it wrote an event, lets later appends
/// commit, and checks the reader neither skips the open one nor passes it.
#[tokio::test]
async fn the_global_log_never_moves_past_an_open_transaction() {
    let store = open().await;
    let early_stream = Uuid::new_v4();

    // An earlier append that stays open: it has its position and transaction id.
    let mut open_tx = store.pool().begin().await.unwrap();
    let early_position: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, \
         occurred_at, actor, correlation_id, causation_id) \
         VALUES ($1, $2, 1, 'Early', 1, '{}', now(), 'a', 'c', $3) RETURNING global_position",
    )
    .bind(Uuid::now_v7())
    .bind(early_stream)
    .bind(Uuid::now_v7())
    .fetch_one(&mut *open_tx)
    .await
    .unwrap();

    // Later appends commit while it is open.
    let mut later_tokens = Vec::new();
    for _ in 0..3 {
        let appended = store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();
        assert!(appended.last_position > early_position);
        later_tokens.push(appended.consistency_token);
    }

    let batch = store.read_log(LogCursor::default(), 100).await.unwrap();
    assert!(
        batch.events.is_empty(),
        "the reader moved past an open transaction: {:?}",
        batch
            .events
            .iter()
            .map(|e| e.global_position)
            .collect::<Vec<_>>()
    );
    for token in &later_tokens {
        assert!(
            batch.covered < *token,
            "claimed to cover a write it has not delivered"
        );
    }

    open_tx.commit().await.unwrap();
    let all = read_all(&*store, *later_tokens.last().unwrap()).await;
    assert_eq!(
        all.len(),
        4,
        "nothing skipped once the early transaction commits"
    );
    assert_eq!(all[0].global_position, early_position);
    assert_eq!(all[0].stream_id, early_stream);
}

/// A transaction that rolls back leaves a permanent hole in the positions;
/// the reader must step over it rather than wait forever.
#[tokio::test]
async fn a_rolled_back_append_leaves_a_hole_the_reader_steps_over() {
    let store = open().await;
    store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, \
         occurred_at, actor, correlation_id, causation_id) \
         VALUES ($1, $2, 1, 'Doomed', 1, '{}', now(), 'a', 'c', $3)",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::new_v4())
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let last = store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();

    let all = read_all(&*store, last.consistency_token).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.event_type != "Doomed"));
}
