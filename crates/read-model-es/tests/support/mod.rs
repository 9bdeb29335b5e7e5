//! A fresh, isolated Elasticsearch read store per test, against the real cluster
//! of the dev stack (`eval "$(dev/stack env)"` sets `ELASTICSEARCH_URL`). Each
//! store gets its own index prefix; the guard deletes its indices when dropped,
//! also when the test fails.
#![allow(dead_code)]

use order_read_model_es::{EsConfig, EsReadStore, Refresh};
use std::ops::Deref;
use uuid::Uuid;

pub fn es_url() -> String {
    std::env::var("ELASTICSEARCH_URL").expect(
        "ELASTICSEARCH_URL is not set: start the dev stack and run `eval \"$(dev/stack env)\"`",
    )
}

pub struct TestStore {
    pub store: EsReadStore,
    pub config: EsConfig,
}

impl Deref for TestStore {
    type Target = EsReadStore;
    fn deref(&self) -> &EsReadStore {
        &self.store
    }
}

pub fn config() -> EsConfig {
    let mut config = EsConfig::new(es_url());
    config.prefix = format!("test-{}-", Uuid::new_v4().simple());
    config.refresh = Refresh::Immediate;
    config
}

pub async fn open() -> TestStore {
    open_with(config()).await
}

pub async fn open_with(config: EsConfig) -> TestStore {
    let store = EsReadStore::open(config.clone())
        .await
        .expect("open the Elasticsearch read store");
    TestStore { store, config }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let url = self.config.url.clone();
        let prefix = self.config.prefix.clone();
        // Drop cannot await; a thread with its own runtime does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let http = reqwest::Client::new();
                let listed = http
                    .get(format!(
                        "{url}/_cat/indices/{prefix}*?format=json&h=index&expand_wildcards=all"
                    ))
                    .send()
                    .await;
                let Ok(listed) = listed else { return };
                let rows: serde_json::Value = listed.json().await.unwrap_or_default();
                let names: Vec<&str> = rows
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["index"].as_str())
                    .collect();
                if !names.is_empty() {
                    let _ = http
                        .delete(format!("{url}/{}", names.join(",")))
                        .send()
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
