//! The Elasticsearch read store (DESIGN §7): the production [`ReadStore`].
//!
//! # Indices
//!
//! Orders live in `<prefix>orders_v<N>`, created from the mapping versioned in
//! this crate (`mapping/orders.json`), and are always read and written through
//! the alias `<prefix>orders`. A rebuild ([`EsReadStore::rebuild`]) fills
//! `orders_v<N+1>` from the event log while `orders_v<N>` serves, then moves the
//! alias in one atomic `_aliases` call. The prefix (empty in production) lets
//! tests and environments share a cluster without seeing each other.
//!
//! Where the projector is, and which event store the orders came from, are small
//! documents in `<prefix>orders_meta`, keyed by the *concrete* index they describe
//! (`<index>.checkpoint`, `<index>.store`). So a checkpoint always belongs to the
//! documents it counts, and moves with them when the alias moves.
//!
//! # Effectively once without transactions
//!
//! Elasticsearch has no transaction spanning a batch's documents and its
//! checkpoint, so the embedded store's "one commit" argument does not carry over.
//! Two rules replace it:
//!
//! - **A document's version only moves forward.** Each order is indexed with
//!   `version_type=external` and `version` = the order's stream version. A write
//!   whose version is not above the stored one is refused by Elasticsearch (409,
//!   ignored here), whoever sends it and in whatever order. The document at
//!   version `v` is a pure function of the order's events `1..=v` (the fold of
//!   `order_read_model::fold`), so two writers can never disagree about it.
//! - **The checkpoint is written after the documents are acknowledged**, itself
//!   with external versioning (`external_gte`, version = log position), so it too
//!   only moves forward.
//!
//! A crash between the two leaves documents ahead of the checkpoint, never
//! behind it. The projector then replays from the older checkpoint: every event
//! it redelivers has a version at or below its order's stored version and is
//! skipped by the fold (or, if two deliveries race, refused by the version check),
//! so redelivery is harmless, and nothing past the checkpoint can be missing.
//!
//! # Read-your-writes
//!
//! `_bulk` runs with `refresh=true` by default ([`Refresh`]): when `apply`
//! returns, its documents are searchable, and only then is the checkpoint (which
//! the query side waits on) written. `get`, `_mget` and the checkpoint are
//! real-time reads and need no refresh at all.
//!
//! Measured (`tests/throughput.rs`, 8,000 events of 2,000 orders, the dev
//! stack's single node on a shared, loaded 2-core machine): `refresh=true` took
//! 2,500 events/s in batches of 100 and 7,700 events/s in batches of 500 (the
//! projector's batch size); `refresh=wait_for` took 500 events/s in batches of
//! 500 and 100 events/s in batches of 100, because every batch waits for the 1 s
//! refresh interval. A refresh per batch costs little next to that wait, and a
//! projector under load sends big batches, so refreshes stay rare.
//!
//! # Same results as the embedded store
//!
//! Filters, sort (`createdAt` as `date_nanos`, then `orderId`, both in the
//! requested direction), keyset pages (`search_after`, with the very cursors of
//! `order_read_model::cursor`), search words (`doc.rs`) and exact sums (`doc.rs`,
//! `query.rs`) are built to give what the SQLite adapter gives on the same events;
//! the shared conformance suite and a differential property test hold them to it.

mod client;
mod doc;
mod indices;
mod meta;
mod query;
mod rebuild;
mod stream;
mod verify;

pub use rebuild::{RebuildProgress, RebuildReport};
pub use stream::{PartitionProgress, StreamOutcome};
pub use verify::Differences;

use async_trait::async_trait;
use client::{Es, failed};
use meta::meta_mapping;
use order_domain::Order;
use order_event_store::{RecordedEvent, StoreId};
use order_read_model::cursor::{self, Key};
use order_read_model::fold::fold_event;
use order_read_model::{
    Checkpoint, OrderFilter, OrderView, Page, PageRequest, ReadError, ReadStore, SortOrder, Stats,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

/// The index mapping, versioned with the code. Its `_meta.layout` names the
/// layout of the indexed documents; change it whenever the mapping or the
/// document changes, and stores holding another layout are rebuilt.
pub const MAPPING: &str = include_str!("../mapping/orders.json");

/// When documents written by `apply` become searchable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Refresh {
    /// `refresh=true`: the bulk request refreshes the shard before it answers.
    /// Costs a refresh (a small segment) per batch, which the projector's batching
    /// keeps rare under load; answers in milliseconds.
    #[default]
    Immediate,
    /// `refresh=wait_for`: the bulk request waits for the next scheduled refresh
    /// (`index.refresh_interval`, 1 s by default). Cheaper for the cluster, but
    /// every batch takes up to a second, which caps a lone projector's throughput.
    WaitFor,
}

impl Refresh {
    fn param(self) -> &'static str {
        match self {
            Refresh::Immediate => "true",
            Refresh::WaitFor => "wait_for",
        }
    }
}

/// How to reach the cluster and which indices to use.
#[derive(Clone, Debug)]
pub struct EsConfig {
    /// Base URL of a node, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Prepended to every index and alias name (`<prefix>orders`); empty in production.
    pub prefix: String,
    pub refresh: Refresh,
    /// Per request.
    pub timeout: Duration,
}

impl EsConfig {
    pub fn new(url: impl Into<String>) -> EsConfig {
        EsConfig {
            url: url.into(),
            prefix: String::new(),
            refresh: Refresh::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

pub struct EsReadStore {
    /// The REST client; every call goes through it.
    es: Es,
    /// `<prefix>`: the start of every index name this store owns.
    prefix: String,
    /// `<prefix>orders`: where reads and projector writes go.
    alias: String,
    /// `<prefix>orders_meta`: checkpoints and store bindings, per concrete index.
    meta: String,
    refresh: Refresh,
    /// Serialises this process's writers (`apply`, `bind_store`, `reset`), as the
    /// SQLite store does; writers in other processes are kept apart by the
    /// version rules (see the module doc).
    write_gate: Mutex<()>,
    /// The mapping with its layout, parsed once.
    mapping: Value,
}

impl EsReadStore {
    /// Connects, creating the meta index and the first orders index behind the
    /// alias if they do not exist. An index of another layout behind the alias is
    /// replaced by an empty one (as [`ReadStore::reset`]), so the projector
    /// rebuilds it from the event log rather than misread it.
    pub async fn open(config: EsConfig) -> Result<EsReadStore, ReadError> {
        let mapping: Value = serde_json::from_str(MAPPING)
            .map_err(|e| ReadError::Corrupt(format!("mapping/orders.json: {e}")))?;
        let store = EsReadStore {
            es: Es::new(&config.url, config.timeout)?,
            alias: format!("{}orders", config.prefix),
            meta: format!("{}orders_meta", config.prefix),
            prefix: config.prefix,
            refresh: config.refresh,
            write_gate: Mutex::new(()),
            mapping,
        };
        store
            .create_index(&store.meta.clone(), &meta_mapping())
            .await?;
        // A meta index created by older code lacks the fields added since (`dynamic:
        // strict` refuses unknown ones): adding fields to a mapping is always allowed.
        let path = format!("/{}/_mapping", store.meta);
        store
            .es
            .ok(Method::PUT, &path, Some(&meta_mapping()["mappings"]))
            .await?;
        match store.current_index().await? {
            None => {
                let first = store.next_index().await?;
                store.create_index(&first, &store.mapping).await?;
                store
                    .es
                    .ok(
                        Method::POST,
                        "/_aliases",
                        Some(&json!({ "actions": [{ "add": { "index": first, "alias": store.alias } }] })),
                    )
                    .await?;
            }
            Some(index) => {
                let ours = store.layout();
                let path = format!("/{index}/_mapping");
                let theirs = store.es.ok(Method::GET, &path, None).await?;
                let theirs = theirs
                    .pointer(&format!("/{index}/mappings/_meta/layout"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if theirs.as_deref() != Some(ours.as_str()) {
                    tracing::warn!(
                        index,
                        ?theirs,
                        ours,
                        "orders index of another layout: emptied, the projector rebuilds it"
                    );
                    store.reset().await?;
                }
            }
        }
        Ok(store)
    }

    /// The alias every read goes through.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The stored orders among `ids`, as of now (`_mget` is real-time).
    async fn load(&self, index: &str, ids: &[Uuid]) -> Result<HashMap<Uuid, Order>, ReadError> {
        let path = format!("/{index}/_mget?_source_includes=doc");
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let body = self
            .es
            .ok(Method::POST, &path, Some(&json!({ "ids": ids })))
            .await?;
        let mut loaded = HashMap::new();
        for doc in body["docs"].as_array().into_iter().flatten() {
            if doc["found"].as_bool() != Some(true) {
                if let Some(error) = doc.get("error") {
                    return Err(ReadError::Unavailable(format!("_mget: {error}")));
                }
                continue;
            }
            let order = decode_doc(&doc["_source"]["doc"])?;
            loaded.insert(order.id, order);
        }
        Ok(loaded)
    }

    /// Folds `events` into the stored orders behind the alias and writes back
    /// those that changed, then stores `checkpoint` (see the module doc for why
    /// in this order).
    async fn apply_to_alias(
        &self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ReadError> {
        let index = self.alias.as_str();
        let mut seen: Vec<Uuid> = Vec::new();
        for event in events {
            if !seen.contains(&event.stream_id) {
                seen.push(event.stream_id);
            }
        }
        let mut written_to: Option<String> = None;
        if !seen.is_empty() {
            let stored = self.load(index, &seen).await?;
            let mut slots: HashMap<Uuid, (Option<Order>, bool)> = seen
                .iter()
                .map(|id| (*id, (stored.get(id).cloned(), false)))
                .collect();
            for event in events {
                if let Some((order, dirty)) = slots.get_mut(&event.stream_id)
                    && fold_event(order, event)?
                {
                    *dirty = true;
                }
            }
            let mut body = String::new();
            for id in &seen {
                if let Some((Some(order), true)) = slots.get(id) {
                    doc::push_index_lines(&mut body, order);
                }
            }
            if !body.is_empty() {
                written_to = Some(self.bulk(index, self.refresh.param(), body).await?);
            }
        }
        let concrete = match written_to {
            Some(index) => index,
            None => self.current_index().await?.ok_or_else(|| {
                ReadError::Unavailable(format!("the alias {} is missing", self.alias))
            })?,
        };
        self.store_checkpoint(&concrete, checkpoint).await
    }

    /// Sends one `_bulk` request; returns the concrete index written. Version
    /// conflicts (409: a newer version is stored) are expected and skipped; any
    /// other failed item fails the batch.
    async fn bulk(&self, index: &str, refresh: &str, body: String) -> Result<String, ReadError> {
        let path = format!("/{index}/_bulk?refresh={refresh}");
        let answer = self.es.call_ndjson(&path, body).await?;
        if !answer.status.is_success() {
            return Err(failed(&Method::POST, &path, &answer));
        }
        let mut concrete = None;
        let mut conflicts = 0usize;
        for item in answer.body["items"].as_array().into_iter().flatten() {
            let result = &item["index"];
            let status = result["status"].as_u64().unwrap_or(0);
            if status == 409 {
                conflicts += 1;
            } else if !(200..300).contains(&status) {
                return Err(ReadError::Unavailable(format!(
                    "Elasticsearch refused order {} ({status}): {}",
                    result["_id"], result["error"]
                )));
            }
            if concrete.is_none() {
                concrete = result["_index"].as_str().map(str::to_string);
            }
        }
        if conflicts > 0 {
            tracing::debug!(
                conflicts,
                "orders already at a newer version were left as they are"
            );
        }
        concrete.ok_or_else(|| {
            ReadError::Unavailable(format!("Elasticsearch {path} answered without items"))
        })
    }

    async fn search(&self, body: &Value) -> Result<Value, ReadError> {
        let path = format!("/{}/_search", self.alias);
        self.es.ok(Method::POST, &path, Some(body)).await
    }
}

fn decode_doc(doc: &Value) -> Result<Order, ReadError> {
    Order::deserialize(doc).map_err(|e| ReadError::Corrupt(format!("stored order: {e}")))
}

#[async_trait]
impl ReadStore for EsReadStore {
    async fn get(&self, order_id: Uuid) -> Result<Option<OrderView>, ReadError> {
        let path = format!("/{}/_doc/{order_id}?_source_includes=doc", self.alias);
        let answer = self.es.call(Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.body["found"] == json!(false) {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(failed(&Method::GET, &path, &answer));
        }
        let order = decode_doc(&answer.body["_source"]["doc"])?;
        Ok(Some(OrderView::from(&order)))
    }

    async fn list(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page, ReadError> {
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(page.sort, c))
            .transpose()?;
        let dir = match page.sort {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        let limit = page.limit.max(1);
        let mut body = json!({
            "query": query::filter_query(filter)?,
            // One more than asked: whether it exists says if there is a next page.
            "size": limit + 1,
            "sort": [{ "createdAt": dir }, { "orderId": dir }],
            "_source": ["doc"],
            "track_total_hits": false,
        });
        if let Some(key) = after {
            let nanos = chrono::DateTime::parse_from_rfc3339(&key.created_at)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .ok_or(ReadError::InvalidCursor)?;
            body["search_after"] = json!([nanos, key.order_id]);
        }
        let result = self.search(&body).await?;
        let hits = result["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let more = hits.len() > limit as usize;
        let mut items = Vec::with_capacity(hits.len().min(limit as usize));
        let mut last = None;
        for hit in hits.iter().take(limit as usize) {
            let order = decode_doc(&hit["_source"]["doc"])?;
            last = Some(Key {
                created_at: cursor::time_key(&order.created_at),
                order_id: order.id.to_string(),
            });
            items.push(OrderView::from(&order));
        }
        let next_cursor = match last {
            Some(key) if more => Some(cursor::encode(page.sort, &key)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn stats(&self, filter: &OrderFilter) -> Result<Stats, ReadError> {
        let body = json!({
            "query": query::filter_query(filter)?,
            "size": 0,
            "track_total_hits": false,
            "aggs": query::stats_aggregations(),
        });
        let result = self.search(&body).await?;
        query::read_stats(&result["aggregations"])
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ReadError> {
        let _writer = self.write_gate.lock().await;
        self.apply_to_alias(events, checkpoint).await
    }

    async fn checkpoint(&self) -> Result<Checkpoint, ReadError> {
        let index = self.current_index().await?.ok_or_else(|| {
            ReadError::Unavailable(format!("the alias {} is missing", self.alias))
        })?;
        self.checkpoint_of(&index).await
    }

    async fn bind_store(&self, store: StoreId) -> Result<(), ReadError> {
        let _writer = self.write_gate.lock().await;
        let index = self.current_index().await?.ok_or_else(|| {
            ReadError::Unavailable(format!("the alias {} is missing", self.alias))
        })?;
        let bound = self.bind_index(&index, store).await?;
        if bound == store {
            Ok(())
        } else {
            Err(ReadError::OtherStore {
                bound,
                offered: store,
            })
        }
    }

    /// Puts a new, empty index behind the alias (one atomic alias move) and deletes
    /// the old one with its checkpoint and binding.
    async fn reset(&self) -> Result<(), ReadError> {
        let _writer = self.write_gate.lock().await;
        let old = self.current_index().await?;
        let next = self.next_index().await?;
        self.create_index(&next, &self.mapping).await?;
        self.swap_alias(old.as_deref(), &next).await?;
        if let Some(old) = old {
            self.drop_index(&old).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), ReadError> {
        let path = format!("/{}/_count", self.alias);
        self.es.ok(Method::GET, &path, None).await.map(|_| ())
    }
}
