//! The orders indices behind the alias: `<prefix>orders_v<N>`, created from the
//! versioned mapping, listed, dropped, and the alias moved from one to the next in one
//! call (see the crate's header).

use crate::EsReadStore;
use crate::client::failed;
use order_read_model::ReadError;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl EsReadStore {
    pub(crate) fn layout(&self) -> String {
        self.mapping
            .pointer("/mappings/_meta/layout")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Creates an index unless it exists.
    pub(crate) async fn create_index(&self, index: &str, body: &Value) -> Result<(), ReadError> {
        let path = format!("/{index}");
        let answer = self.es.call(Method::PUT, &path, Some(body)).await?;
        let exists = answer.body.pointer("/error/type").and_then(Value::as_str)
            == Some("resource_already_exists_exception");
        if answer.status.is_success() || exists {
            Ok(())
        } else {
            Err(failed(&Method::PUT, &path, &answer))
        }
    }

    /// The concrete index behind the alias, if the alias exists.
    pub async fn current_index(&self) -> Result<Option<String>, ReadError> {
        let path = format!("/_alias/{}", self.alias);
        let answer = self.es.call(Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(failed(&Method::GET, &path, &answer));
        }
        let names: Vec<&String> = answer
            .body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        match names.as_slice() {
            [one] => Ok(Some(one.to_string())),
            _ => Err(ReadError::Corrupt(format!(
                "alias {} names {} indices, not one: {names:?}",
                self.alias,
                names.len()
            ))),
        }
    }

    /// Every `<prefix>orders_v<N>` index, by `N`.
    pub async fn versioned_indices(&self) -> Result<Vec<(u64, String)>, ReadError> {
        let stem = format!("{}orders_v", self.prefix);
        let path = format!("/_cat/indices/{stem}*?format=json&h=index&expand_wildcards=all");
        let rows = self.es.ok(Method::GET, &path, None).await?;
        let mut found: Vec<(u64, String)> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row["index"].as_str())
            .filter_map(|name| {
                let n = name.strip_prefix(&stem)?.parse().ok()?;
                Some((n, name.to_string()))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// The name of a new index: one past the highest version that exists.
    pub(crate) async fn next_index(&self) -> Result<String, ReadError> {
        let n = self
            .versioned_indices()
            .await?
            .last()
            .map_or(0, |(n, _)| *n);
        Ok(format!("{}orders_v{}", self.prefix, n + 1))
    }

    /// Deletes an orders index and its meta documents. Refuses the one behind the alias.
    pub async fn drop_index(&self, index: &str) -> Result<(), ReadError> {
        if self.current_index().await?.as_deref() == Some(index) {
            return Err(ReadError::Unavailable(format!(
                "{index} is behind the alias {}; rebuild before dropping it",
                self.alias
            )));
        }
        if !index.starts_with(&format!("{}orders_v", self.prefix)) {
            return Err(ReadError::Unavailable(format!(
                "{index} is not an orders index of this store"
            )));
        }
        let path = format!("/{index}");
        let answer = self.es.call(Method::DELETE, &path, None).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(failed(&Method::DELETE, &path, &answer));
        }
        for doc in ["checkpoint", "store"] {
            let path = format!("/{}/_doc/{index}.{doc}", self.meta);
            self.es.call(Method::DELETE, &path, None).await?;
        }
        Ok(())
    }

    /// Moves the alias from `old` to `new` in one `_aliases` call: readers see one
    /// index or the other, never none or both.
    pub(crate) async fn swap_alias(&self, old: Option<&str>, new: &str) -> Result<(), ReadError> {
        let mut actions = Vec::new();
        if let Some(old) = old {
            actions.push(json!({ "remove": { "index": old, "alias": self.alias } }));
        }
        actions.push(json!({ "add": { "index": new, "alias": self.alias } }));
        self.es
            .ok(
                Method::POST,
                "/_aliases",
                Some(&json!({ "actions": actions })),
            )
            .await
            .map(|_| ())
    }
}
