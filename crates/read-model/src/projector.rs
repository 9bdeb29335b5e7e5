//! The embedded projector: tails the event store's global log into a read store.
//!
//! One loop: read up to [`BATCH`] events after the checkpoint, apply them with
//! the new checkpoint in one read-store transaction, publish the progress.
//! When the log has nothing new it sleeps until [`Projector::wake`] or
//! [`IDLE_POLL`], whichever comes first; after a pass that found less than a
//! full batch, the next one starts [`COALESCE`] after it began, or at once when
//! a reader waits for a write ([`Projector::wait_for`]). Errors are logged and retried with
//! exponential back-off; the loop never skips an event and never panics.
//!
//! Progress is published on a `tokio::sync::watch` channel, which is what
//! [`Projector::wait_for`] (read-your-writes) waits on.
//!
//! Lag is measured from the outside, by [`Projector::watch_lag`]: it asks the
//! event store what lies after the checkpoint (events behind, and how old the
//! oldest of them is), so the numbers stay true while the loop is stuck, failing
//! or gone. [`Projector::health`] turns them and the loop's own state into the
//! verdict `/health/ready` reports.

use crate::{Checkpoint, ReadError, ReadStore};
use order_event_store::{Backlog, ConsistencyToken, EventStore, StoreError};
use serde::Serialize;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify, watch};

/// Most events read and applied in one transaction.
pub const BATCH: usize = 500;
/// How long an idle projector waits for a wake-up before looking at the log anyway.
pub const IDLE_POLL: Duration = Duration::from_millis(50);
/// Shortest time from one pass to the next unless a pass found a full batch waiting: the
/// events of a few milliseconds are applied in one transaction. Each transaction costs a
/// write of every page it touched (index edges, the search index's new segment, which it
/// then merges), so thousands of tiny ones a second cost more than the events in them.
/// A reader waiting for its write ends the pause at once: nobody waits for the saving.
pub const COALESCE: Duration = Duration::from_millis(5);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often [`Projector::watch_lag`] measures the backlog.
pub const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// A projector that has events to apply but has applied none for this long (or
/// has failed for this long) is *stalled*.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("reading the event log: {0}")]
    Log(#[from] StoreError),
    #[error("writing the read store: {0}")]
    Read(#[from] ReadError),
}

enum Pass {
    /// Applied this many events; look again (at once after a full batch).
    Progressed(usize),
    /// Nothing new in the log.
    Idle,
}

/// Tails the event store's global log into a read store. Share it as `Arc<Projector>`.
pub struct Projector {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    wake: Notify,
    /// A reader waits for a position not applied yet: the loop skips its pause.
    awaited: Notify,
    progress: watch::Sender<Checkpoint>,
    /// The loop's checkpoint (`None`: load it from the read store). Held for each
    /// read-and-apply pass, and by `rebuild`, so the two never interleave.
    pass: Mutex<Option<Checkpoint>>,
    state: std::sync::Mutex<LoopState>,
    stalled_after: Duration,
}

/// What the loop knows about itself, for [`Projector::health`].
#[derive(Debug)]
struct LoopState {
    running: bool,
    /// The last time a pass applied events (or the loop started).
    progressed_at: Instant,
    /// Since when every pass has failed, and the last failure.
    failing: Option<(Instant, String)>,
    /// The last backlog measured by [`Projector::watch_lag`].
    backlog: Option<Backlog>,
}

/// The projector's state as `/health/ready` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectorHealth {
    /// `running`, `stalled` (behind and not progressing, or failing, for
    /// [`STALLED_AFTER`] by default) or `stopped` (the loop is not running).
    pub state: &'static str,
    /// Events in the log the read model has not applied yet (`None`: not measured yet).
    pub events_behind: Option<u64>,
    /// Age of the oldest of them, in seconds; 0 when none.
    pub seconds_behind: Option<f64>,
    pub position: i64,
    /// The last error, while passes keep failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ProjectorHealth {
    pub fn is_healthy(&self) -> bool {
        self.state == "running"
    }
}

/// Marks the loop as not running when [`Projector::run`] ends, however it ends
/// (a panic unwinding through it included).
struct RunningGuard<'a>(&'a Projector);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.lock_state().running = false;
    }
}

impl Projector {
    pub fn new(events: Arc<dyn EventStore>, read: Arc<dyn ReadStore>) -> Projector {
        Projector {
            events,
            read,
            wake: Notify::new(),
            awaited: Notify::new(),
            progress: watch::Sender::new(Checkpoint::default()),
            pass: Mutex::new(None),
            state: std::sync::Mutex::new(LoopState {
                running: false,
                progressed_at: Instant::now(),
                failing: None,
                backlog: None,
            }),
            stalled_after: STALLED_AFTER,
        }
    }

    /// Replaces [`STALLED_AFTER`], the patience of [`Projector::health`].
    pub fn stalled_after(mut self, patience: Duration) -> Projector {
        self.stalled_after = patience;
        self
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, LoopState> {
        // The state is plain data, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ties the read store to this projector's event store before the loop runs
    /// (see [`ReadStore::bind_store`]). With `rebuild`, a read model built from
    /// another store is emptied and rebuilt from this one instead of refused.
    pub async fn bind(&self, rebuild: bool) -> Result<(), ReadError> {
        let store = self.events.store_id();
        match self.read.bind_store(store).await {
            Err(ReadError::OtherStore { bound, .. }) if rebuild => {
                tracing::warn!(%bound, offered = %store, "read model of another event store: rebuilding");
                let mut current = self.pass.lock().await;
                self.read.reset().await?;
                *current = None;
                self.progress.send_replace(Checkpoint::default());
                self.read.bind_store(store).await
            }
            other => other,
        }
    }

    /// Runs until `shutdown` resolves. A pass interrupted by shutdown is rolled
    /// back with its transaction and redone by the next run.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        {
            let mut state = self.lock_state();
            state.running = true;
            state.progressed_at = Instant::now();
        }
        let _running = RunningGuard(self);
        let mut shutdown = pin!(shutdown);
        let mut backoff = BACKOFF_START;
        loop {
            let started = Instant::now();
            let mut coalescing = false;
            let outcome = tokio::select! {
                biased;
                () = &mut shutdown => return,
                outcome = self.pass() => outcome,
            };
            // After an error only time ends the pause; when idle, so does a wake-up.
            if outcome.is_ok() {
                self.lock_state().failing = None;
            }
            let (pause, wakeable) = match outcome {
                Ok(Pass::Progressed(applied)) => {
                    backoff = BACKOFF_START;
                    if applied >= BATCH {
                        continue;
                    }
                    // Wake-ups during the pause are kept (a permit) and cut no pause short;
                    // a waiting reader does.
                    coalescing = true;
                    (COALESCE.saturating_sub(started.elapsed()), false)
                }
                Ok(Pass::Idle) => {
                    backoff = BACKOFF_START;
                    (IDLE_POLL, true)
                }
                Err(e) => {
                    {
                        let mut state = self.lock_state();
                        let since = state.failing.as_ref().map_or_else(Instant::now, |f| f.0);
                        state.failing = Some((since, e.to_string()));
                    }
                    metrics::counter!("order_platform_projector_errors_total").increment(1);
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "projector pass failed; retrying"
                    );
                    let pause = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    (pause, false)
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = self.wake.notified(), if wakeable => {}
                () = self.awaited.notified(), if coalescing => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One read of the log and its application.
    async fn pass(&self) -> Result<Pass, PassError> {
        let started = Instant::now();
        let mut current = self.pass.lock().await;
        let checkpoint = match *current {
            Some(checkpoint) => checkpoint,
            None => {
                let checkpoint = self.read.checkpoint().await?;
                *current = Some(checkpoint);
                self.progress.send_replace(checkpoint);
                checkpoint
            }
        };
        let batch = self.events.read_log(checkpoint.cursor, BATCH).await?;
        let next = Checkpoint {
            cursor: batch.next,
            covered: batch.covered.max(checkpoint.covered),
        };
        if batch.events.is_empty() && next == checkpoint {
            // Nothing to do is progress too: a stall means "behind and not moving".
            self.lock_state().progressed_at = Instant::now();
            return Ok(Pass::Idle);
        }
        let spans: Vec<tracing::Span> = batch.events.iter().map(apply_span).collect();
        self.read.apply(&batch.events, next).await?;
        drop(spans);
        *current = Some(next);
        self.progress.send_replace(next);
        self.lock_state().progressed_at = Instant::now();

        metrics::counter!("order_platform_projector_events_applied_total")
            .increment(batch.events.len() as u64);
        // Read and apply: what a write waits for, at most twice, before a query can see it.
        metrics::histogram!("order_platform_projector_pass_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("order_platform_projector_position").set(next.cursor.position as f64);
        Ok(if batch.events.is_empty() {
            Pass::Idle
        } else {
            Pass::Progressed(batch.events.len())
        })
    }

    /// Measures the backlog every [`LAG_SAMPLE_EVERY`] until `shutdown` resolves,
    /// exporting `order_platform_projector_events_behind` and
    /// `order_platform_projector_lag_seconds` (age of the oldest unapplied event).
    /// Runs beside [`Projector::run`], so a stuck or dead loop still shows its lag.
    pub async fn watch_lag(&self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = pin!(shutdown);
        loop {
            self.measure_lag().await;
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(LAG_SAMPLE_EVERY) => {}
            }
        }
    }

    /// One lag measurement; see [`Projector::watch_lag`].
    pub async fn measure_lag(&self) -> Option<Backlog> {
        let cursor = self.progress().cursor;
        match self.events.backlog(cursor).await {
            Ok(backlog) => {
                metrics::gauge!("order_platform_projector_events_behind")
                    .set(backlog.events as f64);
                metrics::gauge!("order_platform_projector_lag_seconds")
                    .set(seconds_since(backlog.oldest));
                self.lock_state().backlog = Some(backlog);
                Some(backlog)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not measure the projector's lag");
                None
            }
        }
    }

    /// Running, stalled or stopped, with the last measured lag.
    pub fn health(&self) -> ProjectorHealth {
        let state = self.lock_state();
        let behind = state.backlog.map(|b| b.events);
        let stuck = behind.unwrap_or(0) > 0 && state.progressed_at.elapsed() >= self.stalled_after;
        let failing_long = state
            .failing
            .as_ref()
            .is_some_and(|(since, _)| since.elapsed() >= self.stalled_after);
        ProjectorHealth {
            state: if !state.running {
                "stopped"
            } else if stuck || failing_long {
                "stalled"
            } else {
                "running"
            },
            events_behind: behind,
            seconds_behind: state.backlog.map(|b| seconds_since(b.oldest)),
            position: self.progress().cursor.position,
            last_error: state.failing.as_ref().map(|(_, e)| e.clone()),
        }
    }

    /// Hint from the command side that something was appended.
    pub fn wake(&self) {
        // notify_one keeps a permit when the loop is busy, so no hint is lost.
        self.wake.notify_one();
    }

    /// Resolves `true` once the applied checkpoint covers `token`, `false` after `timeout`.
    pub async fn wait_for(&self, token: ConsistencyToken, timeout: Duration) -> bool {
        let mut progress = self.progress.subscribe();
        if progress.borrow().covered < token {
            self.awaited.notify_one();
        }
        matches!(
            tokio::time::timeout(timeout, progress.wait_for(|cp| cp.covered >= token)).await,
            Ok(Ok(_))
        )
    }

    /// The checkpoint applied so far (for metrics and /health).
    pub fn progress(&self) -> Checkpoint {
        *self.progress.borrow()
    }

    /// Empties the read store and replays the whole log into it, safely while
    /// [`Projector::run`] is running: waits for the pass in flight, resets the
    /// store, and rewinds the loop to the start of the log. Until the replay has
    /// caught up again, [`Projector::wait_for`] waits (progress restarts at 0).
    pub async fn rebuild(&self) -> Result<(), ReadError> {
        let mut current = self.pass.lock().await;
        self.read.reset().await?;
        self.read.bind_store(self.events.store_id()).await?;
        *current = None;
        self.progress.send_replace(Checkpoint::default());
        drop(current);
        self.wake();
        Ok(())
    }
}

/// Seconds from `then` until now; 0 for `None` or a time in the future.
/// The span of one event's application (embedded mode): the child of the command's
/// append (the `traceparent` stored with the event), open until its batch is committed
/// to the read model.
fn apply_span(event: &order_event_store::RecordedEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "projector.apply",
        event_id = %event.event_id,
        order_id = %event.stream_id,
        version = event.version,
        trace_id = tracing::field::Empty,
    );
    order_telemetry::continue_trace(&span, event.traceparent.as_deref());
    span
}

fn seconds_since(then: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    then.and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .map_or(0.0, |d| d.as_secs_f64())
}
