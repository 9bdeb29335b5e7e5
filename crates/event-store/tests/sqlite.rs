//! The conformance suite against the SQLite adapter, each test on a fresh file.

use order_event_store::{EventStore, SqliteEventStore, conformance_tests};
use std::sync::Arc;

async fn open() -> Arc<SqliteEventStore> {
    let path = std::env::temp_dir().join(format!("order-events-{}.db", uuid::Uuid::new_v4()));
    Arc::new(
        SqliteEventStore::open(&path)
            .await
            .expect("open sqlite store"),
    )
}

conformance_tests!(open());

#[tokio::test]
async fn events_survive_reopening_the_file() {
    let path = std::env::temp_dir().join(format!("order-events-{}.db", uuid::Uuid::new_v4()));
    let stream = uuid::Uuid::new_v4();
    {
        let store = SqliteEventStore::open(&path).await.unwrap();
        order_event_store::EventStore::append(
            &store,
            order_event_store::conformance::request(stream, 0, 3),
        )
        .await
        .unwrap();
    }
    let store = SqliteEventStore::open(&path).await.unwrap();
    let events = order_event_store::EventStore::read_stream(&store, stream, 0, None)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
}

/// The store's identity is created with the file and kept by it.
#[tokio::test]
async fn a_store_keeps_its_identity_and_a_new_one_gets_another() {
    let path = std::env::temp_dir().join(format!("order-events-{}.db", uuid::Uuid::new_v4()));
    let first = SqliteEventStore::open(&path).await.unwrap().store_id();
    let again = SqliteEventStore::open(&path).await.unwrap().store_id();
    assert_eq!(first, again);
    let other = open().await;
    assert_ne!(first, other.store_id());
}

/// Opening fresh files, many at once, never fails with `database is locked`
/// (the pool used to switch each new file to WAL from several connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fresh_files_open_without_racing_themselves() {
    let dir = std::env::temp_dir().join(format!("order-events-race-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for round in 0..25 {
        let opens = (0..4).map(|i| {
            let path = dir.join(format!("{round}-{i}.db"));
            tokio::spawn(async move { SqliteEventStore::open(&path).await.map(|_| ()) })
        });
        for open in futures_join(opens).await {
            open.unwrap().expect("a fresh store opens");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await);
    }
    out
}
