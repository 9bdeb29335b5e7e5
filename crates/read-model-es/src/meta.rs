//! The small documents of `<prefix>orders_meta`, keyed by the concrete index they
//! describe: its checkpoint (`<index>.checkpoint`) and the event store it was built
//! from (`<index>.store`), each written so that it only moves forward or is set once.

use crate::EsReadStore;
use crate::client::failed;
use order_event_store::{ConsistencyToken, LogCursor, StoreId};
use order_read_model::{Checkpoint, ReadError};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

impl EsReadStore {
    pub(crate) async fn store_checkpoint(
        &self,
        index: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), ReadError> {
        let position = checkpoint.cursor.position;
        if position < 0 {
            return Err(ReadError::Unavailable(format!(
                "checkpoint position {position} is negative"
            )));
        }
        let path = format!(
            "/{}/_doc/{index}.checkpoint?version={position}&version_type=external_gte",
            self.meta
        );
        let body = json!({ "position": position, "covered": checkpoint.covered.0 });
        let answer = self.es.call(Method::PUT, &path, Some(&body)).await?;
        // 409: a checkpoint further on is stored already; it stays.
        if answer.status.is_success() || answer.status == StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(failed(&Method::PUT, &path, &answer))
        }
    }

    pub(crate) async fn checkpoint_of(&self, index: &str) -> Result<Checkpoint, ReadError> {
        let path = format!("/{}/_doc/{index}.checkpoint", self.meta);
        let answer = self.es.call(Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Checkpoint::default());
        }
        if !answer.status.is_success() {
            return Err(failed(&Method::GET, &path, &answer));
        }
        let source = &answer.body["_source"];
        let (Some(position), Some(covered)) =
            (source["position"].as_i64(), source["covered"].as_u64())
        else {
            return Err(ReadError::Corrupt(format!(
                "checkpoint of {index}: {source}"
            )));
        };
        Ok(Checkpoint {
            cursor: LogCursor { position },
            covered: ConsistencyToken(covered),
        })
    }

    /// The event store `index` was built from, if bound.
    pub(crate) async fn bound_store(&self, index: &str) -> Result<Option<StoreId>, ReadError> {
        let path = format!("/{}/_doc/{index}.store", self.meta);
        let answer = self.es.call(Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(failed(&Method::GET, &path, &answer));
        }
        let text = answer.body["_source"]["storeId"]
            .as_str()
            .unwrap_or_default();
        let id = Uuid::parse_str(text)
            .map_err(|e| ReadError::Corrupt(format!("store id of {index} {text:?}: {e}")))?;
        Ok(Some(StoreId(id)))
    }

    /// Binds `index` to `store` unless it is bound already; returns the binding.
    pub(crate) async fn bind_index(
        &self,
        index: &str,
        store: StoreId,
    ) -> Result<StoreId, ReadError> {
        let path = format!("/{}/_doc/{index}.store?op_type=create", self.meta);
        let body = json!({ "storeId": store.0.to_string() });
        let answer = self.es.call(Method::PUT, &path, Some(&body)).await?;
        if answer.status.is_success() {
            return Ok(store);
        }
        if answer.status != StatusCode::CONFLICT {
            return Err(failed(&Method::PUT, &path, &answer));
        }
        self.bound_store(index)
            .await?
            .ok_or_else(|| ReadError::Corrupt(format!("store binding of {index} vanished")))
    }
}

/// The mapping of the meta index.
pub(crate) fn meta_mapping() -> Value {
    json!({
        "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "position": { "type": "long" },
                "covered": { "type": "long" },
                "storeId": { "type": "keyword" },
                // Progress of a Kafka partition (`stream.rs`).
                "topic": { "type": "keyword" },
                "partition": { "type": "integer" },
                "offset": { "type": "long" },
                "globalPosition": { "type": "long" }
            }
        }
    })
}
