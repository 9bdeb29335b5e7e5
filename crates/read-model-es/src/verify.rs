//! Comparing the orders index with a replay of the event store: the proof that
//! the read model holds every event exactly once (`order-platform verify`,
//! `dev/chaos`).
//!
//! The whole log is folded in memory with the projector's own fold, then every
//! document behind the alias is read (a scroll) and compared with its replay. Run
//! it when no commands are being appended (or accept that orders changed during
//! the comparison show up as differences): the log is read first, the index
//! after.

use crate::{EsReadStore, decode_doc};
use order_domain::Order;
use order_event_store::{EventStore, LogCursor};
use order_read_model::ReadError;
use order_read_model::fold::fold_event;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

/// Where the index and the replay of the log disagree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Differences {
    /// Orders in the log.
    pub orders: u64,
    /// Documents in the index.
    pub documents: u64,
    /// In the log, not in the index.
    pub missing: Vec<Uuid>,
    /// Behind their replay (a lower version), or at its version with other content.
    pub stale: Vec<Uuid>,
    /// Ahead of their replay (more events applied than the log holds: one applied
    /// twice), or an order the log does not have.
    pub duplicated: Vec<Uuid>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty() && self.duplicated.is_empty()
    }
}

impl std::fmt::Display for Differences {
    /// `missing=0 stale=0 duplicated=0` (and the first few ids of each kind).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "missing={} stale={} duplicated={}",
            self.missing.len(),
            self.stale.len(),
            self.duplicated.len()
        )?;
        for (kind, ids) in [
            ("missing", &self.missing),
            ("stale", &self.stale),
            ("duplicated", &self.duplicated),
        ] {
            if !ids.is_empty() {
                let shown: Vec<String> = ids.iter().take(5).map(Uuid::to_string).collect();
                write!(f, "\n  {kind}: {}", shown.join(", "))?;
                if ids.len() > 5 {
                    write!(f, " and {} more", ids.len() - 5)?;
                }
            }
        }
        Ok(())
    }
}

/// Documents read per scroll page.
const PAGE: usize = 1_000;

impl EsReadStore {
    /// Compares every document behind the alias with the replay of `log`.
    pub async fn verify(&self, log: &dyn EventStore) -> Result<Differences, ReadError> {
        let mut replayed = replay(log).await?;
        let mut differences = Differences {
            orders: replayed.len() as u64,
            ..Differences::default()
        };
        let mut page = self
            .es
            .ok(
                Method::POST,
                &format!("/{}/_search?scroll=1m", self.alias),
                Some(&json!({ "size": PAGE, "_source": ["doc"], "sort": ["_doc"] })),
            )
            .await?;
        loop {
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for hit in &hits {
                differences.documents += 1;
                let stored = decode_doc(&hit["_source"]["doc"])?;
                match replayed.remove(&stored.id) {
                    None => differences.duplicated.push(stored.id),
                    Some(expected) if stored.version > expected.version => {
                        differences.duplicated.push(stored.id)
                    }
                    Some(expected) if stored != expected => differences.stale.push(stored.id),
                    Some(_) => {}
                }
            }
            let Some(scroll_id) = page["_scroll_id"].as_str().map(str::to_string) else {
                break;
            };
            page = self
                .es
                .ok(
                    Method::POST,
                    "/_search/scroll",
                    Some(&json!({ "scroll": "1m", "scroll_id": scroll_id })),
                )
                .await?;
        }
        if let Some(scroll_id) = page["_scroll_id"].as_str() {
            let _ = self
                .es
                .call(
                    Method::DELETE,
                    "/_search/scroll",
                    Some(&json!({ "scroll_id": scroll_id })),
                )
                .await;
        }
        differences.missing = replayed.into_keys().collect();
        differences.missing.sort();
        Ok(differences)
    }
}

/// Every order of the log, folded as the projector folds it.
async fn replay(log: &dyn EventStore) -> Result<HashMap<Uuid, Order>, ReadError> {
    let mut orders: HashMap<Uuid, Option<Order>> = HashMap::new();
    let mut cursor = LogCursor::default();
    loop {
        let read = log
            .read_log(cursor, 5_000)
            .await
            .map_err(|e| ReadError::Unavailable(format!("reading the event log: {e}")))?;
        if read.events.is_empty() {
            break;
        }
        for event in &read.events {
            fold_event(orders.entry(event.stream_id).or_default(), event)?;
        }
        cursor = read.next;
    }
    Ok(orders
        .into_iter()
        .filter_map(|(id, order)| Some((id, order?)))
        .collect())
}
