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

use crate::{EsReadStore, Target};
use order_event_store::{EventStore, LogCursor};
use order_read_model::{Checkpoint, ReadError};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

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
        let started = Instant::now();
        let mut total = log
            .backlog(LogCursor::default())
            .await
            .map_err(unavailable)?
            .events;
        let mut done = 0u64;
        let mut cursor = LogCursor::default();
        let mut checkpoint = Checkpoint::default();
        let mut fenced = false;
        loop {
            let read = log.read_log(cursor, batch).await.map_err(unavailable)?;
            let short = read.events.len() < batch;
            if !read.events.is_empty() {
                checkpoint = Checkpoint {
                    cursor: read.next,
                    covered: read.covered,
                };
                self.apply_to(Target::Index(new), &read.events, checkpoint)
                    .await?;
                done += read.events.len() as u64;
                total = total.max(done);
                cursor = read.next;
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
            // A short read reached the head of the log as it was then.
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
                    }
                }
            }
        }
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
