//! Rebuilding the orders index from the event log with no downtime (DESIGN §7).
//!
//! 1. Create `orders_v<N+1>` (the next free version) from the current mapping.
//! 2. Fill it from the start of the event log, batch by batch, with the same
//!    fold and version rules as the projector, while `orders_v<N>` keeps serving
//!    every query and keeps being fed by the live projector. The new index is
//!    not refreshed per batch (nobody reads it yet), only once before the swap.
//! 3. Fence: put a write block on `orders_v<N>`. From here the live projector's
//!    batches fail (it retries them: nothing is lost, see `lib.rs`), so the old
//!    index can no longer move past what the log holds now.
//! 4. Catch up to the head of the log (a read shorter than a batch): the new
//!    index now holds everything the old one does, since the old one cannot
//!    have applied anything appended after the fence. Commands keep being
//!    appended throughout; the rebuild does not chase them to an empty read.
//! 5. Move the alias in one `_aliases` call. Readers see the old index or the
//!    new one, never neither. The live projector's retried batch lands in the new
//!    index; what the rebuild applied already is skipped by version, and its
//!    checkpoint (written with `external_gte`) never moves the new one back.
//!
//! The old index stays (write-blocked) until [`EsReadStore::drop_index`], so a
//! bad rebuild can be undone by moving the alias back. Readers never wait; the
//! projector waits only for step 4, which covers the events appended during the
//! rebuild's last batch. If anything fails before the swap, the block is lifted
//! and the half-built index deleted.

use crate::{EsReadStore, doc};
use order_domain::Order;
use order_event_store::{EventStore, LogCursor, RecordedEvent};
use order_read_model::fold::fold_event;
use order_read_model::{Checkpoint, ReadError};
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many orders a rebuild keeps folded in memory (a few KiB each) before it
/// starts over from an empty set, reading orders back from the index instead.
const FOLDED_CAP: usize = 200_000;

/// The orders a rebuild has folded so far (see [`FOLDED_CAP`]).
#[derive(Default)]
struct Folded {
    orders: HashMap<Uuid, Order>,
}

/// Reported after every batch.
#[derive(Clone, Debug)]
pub struct RebuildProgress {
    /// Events applied to the new index so far.
    pub done: u64,
    /// Events in the log when the rebuild started, plus any it has read since.
    pub total: u64,
    pub elapsed: Duration,
    /// Events per second so far.
    pub rate: f64,
    /// At the current rate; `None` before the first batch.
    pub remaining: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct RebuildReport {
    /// The index that served before; kept until dropped.
    pub old_index: Option<String>,
    /// The index now behind the alias.
    pub new_index: String,
    pub events: u64,
    pub checkpoint: Checkpoint,
    pub elapsed: Duration,
}

impl EsReadStore {
    /// Builds the next orders index from `log` and swaps the alias to it (see the
    /// module doc). `batch` events are read and written per round trip.
    pub async fn rebuild(
        &self,
        log: &dyn EventStore,
        batch: usize,
        progress: &mut (dyn FnMut(&RebuildProgress) + Send),
    ) -> Result<RebuildReport, ReadError> {
        let old = self.current_index().await?;
        if let Some(old) = &old
            && let Some(bound) = self.bound_store(old).await?
            && bound != log.store_id()
        {
            return Err(ReadError::OtherStore {
                bound,
                offered: log.store_id(),
            });
        }
        let new = self.next_index().await?;
        self.create_index(&new, &self.mapping).await?;
        let result = self
            .fill_and_swap(log, batch, old.as_deref(), &new, progress)
            .await;
        match result {
            Ok(report) => Ok(report),
            Err(e) => {
                if let Some(old) = &old {
                    let _ = self.set_write_block(old, false).await;
                }
                let _ = self.drop_index(&new).await;
                Err(e)
            }
        }
    }

    async fn fill_and_swap(
        &self,
        log: &dyn EventStore,
        batch: usize,
        old: Option<&str>,
        new: &str,
        progress: &mut (dyn FnMut(&RebuildProgress) + Send),
    ) -> Result<RebuildReport, ReadError> {
        let batch = batch.max(1);
        let unavailable = |e: order_event_store::StoreError| {
            ReadError::Unavailable(format!("reading the event log: {e}"))
        };
        self.bind_index(new, log.store_id()).await?;
        self.tune_for_bulk_load(new, true).await?;
        let started = Instant::now();
        let mut total = log
            .backlog(LogCursor::default())
            .await
            .map_err(unavailable)?
            .events;
        let mut done = 0u64;
        let mut checkpoint = Checkpoint::default();
        let mut fenced = false;
        let mut folded = Folded::default();
        let mut read = log
            .read_log(LogCursor::default(), batch)
            .await
            .map_err(unavailable)?;
        loop {
            // A short read reached the head of the log as it was then.
            let short = read.events.len() < batch;
            let body = self.fold_batch(new, &mut folded, &read.events).await?;
            if !read.events.is_empty() {
                checkpoint = Checkpoint {
                    cursor: read.next,
                    covered: read.covered,
                };
            }
            let cursor = read.next;
            let count = read.events.len() as u64;
            if short {
                self.bulk_load(new, body).await?;
            } else {
                // Write this batch while the next one is read.
                let (written, next) =
                    tokio::join!(self.bulk_load(new, body), log.read_log(cursor, batch));
                written?;
                read = next.map_err(unavailable)?;
            }
            if count > 0 {
                done += count;
                total = total.max(done);
                let elapsed = started.elapsed();
                let rate = done as f64 / elapsed.as_secs_f64().max(1e-6);
                progress(&RebuildProgress {
                    done,
                    total,
                    elapsed,
                    rate,
                    remaining: (rate > 0.0)
                        .then(|| Duration::from_secs_f64((total - done) as f64 / rate)),
                });
            }
            if short {
                match old {
                    // Fenced already: the old index holds nothing past that head.
                    _ if fenced => break,
                    None => break,
                    // Near the head with a live old index: fence it, then catch up
                    // with whatever its projector applied before the fence.
                    Some(old) => {
                        self.set_write_block(old, true).await?;
                        fenced = true;
                        read = log.read_log(cursor, batch).await.map_err(unavailable)?;
                    }
                }
            }
        }
        self.tune_for_bulk_load(new, false).await?;
        self.es
            .ok(Method::POST, &format!("/{new}/_refresh"), None)
            .await?;
        // An empty log still gets its checkpoint document.
        self.store_checkpoint(new, checkpoint).await?;
        self.swap_alias(old, new).await?;
        Ok(RebuildReport {
            old_index: old.map(str::to_string),
            new_index: new.to_string(),
            events: done,
            checkpoint,
            elapsed: started.elapsed(),
        })
    }

    /// Folds `events` into the orders they touch and returns the `_bulk` lines
    /// of those that changed. Orders are taken from `folded` when this rebuild
    /// holds them, created by their first event, and otherwise read back from
    /// `index` (`_mget` is real-time: it sees every bulk acknowledged so far).
    async fn fold_batch(
        &self,
        index: &str,
        folded: &mut Folded,
        events: &[RecordedEvent],
    ) -> Result<String, ReadError> {
        let mut missing: Vec<Uuid> = Vec::new();
        for event in events {
            if event.version > 1
                && !folded.orders.contains_key(&event.stream_id)
                && !missing.contains(&event.stream_id)
            {
                missing.push(event.stream_id);
            }
        }
        if !missing.is_empty() {
            folded.orders.extend(self.load(index, &missing).await?);
        }
        let mut dirty: Vec<Uuid> = Vec::new();
        for event in events {
            let slot = folded.orders.get(&event.stream_id).cloned();
            let mut order = slot;
            if fold_event(&mut order, event)?
                && let Some(order) = order
            {
                if !dirty.contains(&order.id) {
                    dirty.push(order.id);
                }
                folded.orders.insert(order.id, order);
            }
        }
        let mut body = String::new();
        for id in &dirty {
            if let Some(order) = folded.orders.get(id) {
                doc::push_index_lines(&mut body, order);
            }
        }
        // Written below before the next fold, so anything dropped here can be
        // read back from the index.
        if folded.orders.len() > FOLDED_CAP {
            folded.orders.clear();
        }
        Ok(body)
    }

    /// One `_bulk` into the index being built, unrefreshed (nobody reads it yet).
    async fn bulk_load(&self, index: &str, body: String) -> Result<(), ReadError> {
        if body.is_empty() {
            return Ok(());
        }
        self.bulk(index, "false", body).await.map(|_| ())
    }

    /// While an index is being filled, nobody searches it: no periodic refresh,
    /// and the translog fsynced in the background rather than per request (a
    /// crash fails the rebuild, which drops the index anyway). Reset to the
    /// defaults before the swap.
    async fn tune_for_bulk_load(&self, index: &str, on: bool) -> Result<(), ReadError> {
        let settings = if on {
            json!({ "index.refresh_interval": "-1", "index.translog.durability": "async" })
        } else {
            json!({ "index.refresh_interval": null, "index.translog.durability": null })
        };
        self.es
            .ok(Method::PUT, &format!("/{index}/_settings"), Some(&settings))
            .await
            .map(|_| ())
    }

    /// Blocks (or allows again) writes to `index`.
    async fn set_write_block(&self, index: &str, on: bool) -> Result<(), ReadError> {
        let path = format!("/{index}/_settings");
        self.es
            .ok(
                Method::PUT,
                &path,
                Some(&json!({ "index.blocks.write": on })),
            )
            .await
            .map(|_| ())
    }
}
