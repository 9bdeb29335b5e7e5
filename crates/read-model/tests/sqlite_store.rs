//! The SQLite read store: the shared conformance suite, plus what only a file-backed
//! store can show (surviving a reopen).

mod support;

use order_read_model::{ReadError, ReadStore, SqliteReadStore, read_store_conformance_tests};
use support::{Log, at, item, open_store};

async fn open() -> Box<SqliteReadStore> {
    Box::new(open_store().await.0)
}

read_store_conformance_tests!(open());

#[tokio::test]
async fn the_checkpoint_commits_with_the_views_and_survives_reopening() {
    let (store, path) = open_store().await;
    let mut log = Log::default();
    let (id, _) = log.create("c", "USD", &[item("A", "Apple", 1, "1")], at(0));
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    let applied = log.checkpoint();
    let mut bad = log.add(id, item("C", "Cherry", 1, "3"), at(2));
    bad[0].data = serde_json::json!({"line": "not a line"});
    let err = store.apply(&bad, log.checkpoint()).await.unwrap_err();
    assert!(matches!(err, ReadError::Corrupt(_)), "{err:?}");
    drop(store);

    let store = SqliteReadStore::open(&path).await.unwrap();
    assert_eq!(store.checkpoint().await.unwrap(), applied);
    assert_eq!(store.get(id).await.unwrap().unwrap().version, 1);
}
