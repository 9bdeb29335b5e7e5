//! Test support: the domain-built logs of the conformance suite, and a fresh SQLite store.
#![allow(dead_code, unused_imports)]

use order_read_model::SqliteReadStore;
pub use order_read_model::conformance::{Log, at, checkpoint_at, item};
use uuid::Uuid;

pub async fn open_store() -> (SqliteReadStore, std::path::PathBuf) {
    let path = temp_path("order-read");
    let store = SqliteReadStore::open(&path).await.expect("open read store");
    (store, path)
}

pub fn temp_path(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}.db", Uuid::new_v4()))
}
