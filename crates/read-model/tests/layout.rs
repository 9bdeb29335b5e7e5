//! Versioned read-model layout: the SQLite store records the layout of what it
//! derived (`doc` = the domain `Order` JSON, named by `Order::SCHEMA`, plus its
//! own derived columns); a store of another layout is emptied when opened, so
//! the projector rebuilds it from the log instead of misreading it. And events
//! the projector cannot read (a schema version from newer code) stop it with a
//! typed error instead of being folded in wrongly.

mod support;

use order_read_model::{Checkpoint, OrderView, ReadError, ReadStore, SqliteReadStore};
use std::path::Path;
use support::{Log, at, checkpoint_at, item, open_store};

async fn sql(path: &Path, statement: &str) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(statement).execute(&pool).await.unwrap();
    pool.close().await;
}

async fn recorded_layout(path: &Path) -> Option<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let layout = sqlx::query_scalar("SELECT layout FROM layout WHERE id = 1")
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    layout
}

#[test]
fn the_layout_names_the_order_document_schema() {
    let layout = SqliteReadStore::layout();
    assert!(
        layout.contains(&format!("doc={}", order_domain::Order::SCHEMA)),
        "{layout}"
    );
}

#[tokio::test]
async fn a_new_store_records_the_current_layout() {
    let (_store, path) = open_store().await;
    assert_eq!(
        recorded_layout(&path).await,
        Some(SqliteReadStore::layout())
    );
}

#[tokio::test]
async fn a_store_of_another_layout_is_emptied_on_open_and_rebuilt_by_replay() {
    let (store, path) = open_store().await;
    let mut log = Log::default();
    let (id, _) = log.create("c", "USD", &[item("A", "Apple", 2, "1.50")], at(0));
    log.add(id, item("B", "Pear", 1, "0.75"), at(1));
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    drop(store);

    // What older code would have left: documents of a layout this code cannot read.
    sql(&path, r#"UPDATE orders SET doc = '{"orderId": "legacy"}'"#).await;
    // Under the current layout name such a document is misread: an error.
    let store = SqliteReadStore::open(&path).await.unwrap();
    assert!(matches!(store.get(id).await, Err(ReadError::Corrupt(_))));
    drop(store);

    // Named as the other layout it is, it is dropped instead, with the checkpoint.
    sql(&path, "UPDATE layout SET layout = 'doc=order/v0 sqlite=1'").await;
    let store = SqliteReadStore::open(&path).await.unwrap();
    assert_eq!(
        recorded_layout(&path).await,
        Some(SqliteReadStore::layout())
    );
    assert_eq!(store.get(id).await.unwrap(), None);
    assert_eq!(store.checkpoint().await.unwrap(), Checkpoint::default());

    // The projector starts from the beginning of the log and gets it all back.
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    let expected = log.order(id).unwrap();
    assert_eq!(
        store.get(id).await.unwrap(),
        Some(OrderView::from(&expected))
    );
}

#[tokio::test]
async fn a_store_written_before_layouts_were_recorded_is_rebuilt_once() {
    let (store, path) = open_store().await;
    let mut log = Log::default();
    let (id, _) = log.create("c", "USD", &[item("A", "Apple", 1, "1")], at(0));
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    drop(store);

    sql(&path, "DELETE FROM layout").await;
    let store = SqliteReadStore::open(&path).await.unwrap();
    assert_eq!(store.get(id).await.unwrap(), None);
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    drop(store);

    // Now recorded: reopening keeps everything.
    let store = SqliteReadStore::open(&path).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().map(|v| v.version), Some(1));
    assert_eq!(store.checkpoint().await.unwrap(), log.checkpoint());
}

#[tokio::test]
async fn an_event_of_a_newer_schema_version_stops_the_batch_with_its_identity() {
    let (store, _) = open_store().await;
    let mut log = Log::default();
    let (id, _) = log.create("c", "USD", &[item("A", "Apple", 1, "1")], at(0));
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    let before = store.checkpoint().await.unwrap();

    let mut newer = log.add(id, item("B", "Pear", 1, "2"), at(1)).remove(0);
    newer.schema_version = order_domain::EventPayload::SCHEMA_VERSION + 1;
    let err = store
        .apply(
            std::slice::from_ref(&newer),
            checkpoint_at(newer.global_position),
        )
        .await
        .unwrap_err();
    let ReadError::Corrupt(message) = err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert!(message.contains(&newer.event_id.to_string()), "{message}");
    assert!(message.contains("ItemAdded"), "{message}");
    assert!(
        message.contains(&format!("schema version {}", newer.schema_version)),
        "{message}"
    );
    // Nothing of the batch was applied: not the event, not the checkpoint.
    assert_eq!(store.checkpoint().await.unwrap(), before);
    assert_eq!(store.get(id).await.unwrap().unwrap().items.len(), 1);
}
