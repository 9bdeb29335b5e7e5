//! The conformance suite against the SQLite adapter, each test on a fresh file.

use order_event_store::{SqliteEventStore, conformance_tests};
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
