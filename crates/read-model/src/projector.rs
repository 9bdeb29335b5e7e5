//! The embedded projector: tails the event store's global log into a read store.
//!
//! One loop: read up to [`BATCH`] events after the checkpoint, apply them with
//! the new checkpoint in one read-store transaction, publish the progress.
//! When the log has nothing new it sleeps until [`Projector::wake`] or
//! [`IDLE_POLL`], whichever comes first. Errors are logged and retried with
//! exponential back-off; the loop never skips an event and never panics.
//!
//! Progress is published on a `tokio::sync::watch` channel, which is what
//! [`Projector::wait_for`] (read-your-writes) waits on.

use crate::{Checkpoint, ReadError, ReadStore};
use order_event_store::{ConsistencyToken, EventStore, StoreError};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, watch};

/// Most events read and applied in one transaction.
pub const BATCH: usize = 500;
/// How long an idle projector waits for a wake-up before looking at the log anyway.
pub const IDLE_POLL: Duration = Duration::from_millis(50);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("reading the event log: {0}")]
    Log(#[from] StoreError),
    #[error("writing the read store: {0}")]
    Read(#[from] ReadError),
}

enum Pass {
    /// Applied events; look again at once.
    Progressed,
    /// Nothing new in the log.
    Idle,
}

/// Tails the event store's global log into a read store. Share it as `Arc<Projector>`.
pub struct Projector {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    wake: Notify,
    progress: watch::Sender<Checkpoint>,
    /// The loop's checkpoint (`None`: load it from the read store). Held for each
    /// read-and-apply pass, and by `rebuild`, so the two never interleave.
    pass: Mutex<Option<Checkpoint>>,
}

impl Projector {
    pub fn new(events: Arc<dyn EventStore>, read: Arc<dyn ReadStore>) -> Projector {
        Projector {
            events,
            read,
            wake: Notify::new(),
            progress: watch::Sender::new(Checkpoint::default()),
            pass: Mutex::new(None),
        }
    }

    /// Runs until `shutdown` resolves. A pass interrupted by shutdown is rolled
    /// back with its transaction and redone by the next run.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = pin!(shutdown);
        let mut backoff = BACKOFF_START;
        loop {
            let outcome = tokio::select! {
                biased;
                () = &mut shutdown => return,
                outcome = self.pass() => outcome,
            };
            // After an error only time ends the pause; when idle, so does a wake-up.
            let (pause, wakeable) = match outcome {
                Ok(Pass::Progressed) => {
                    backoff = BACKOFF_START;
                    continue;
                }
                Ok(Pass::Idle) => {
                    backoff = BACKOFF_START;
                    (IDLE_POLL, true)
                }
                Err(e) => {
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
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One read of the log and its application.
    async fn pass(&self) -> Result<Pass, PassError> {
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
            metrics::gauge!("order_platform_projector_lag_seconds").set(0.0);
            return Ok(Pass::Idle);
        }
        self.read.apply(&batch.events, next).await?;
        *current = Some(next);
        self.progress.send_replace(next);

        metrics::counter!("order_platform_projector_events_applied_total")
            .increment(batch.events.len() as u64);
        metrics::gauge!("order_platform_projector_position").set(next.cursor.position as f64);
        let lag = batch.events.last().map_or(0.0, |e| {
            (chrono::Utc::now() - e.occurred_at)
                .to_std()
                .map_or(0.0, |d| d.as_secs_f64())
        });
        metrics::gauge!("order_platform_projector_lag_seconds").set(lag);
        Ok(if batch.events.is_empty() {
            Pass::Idle
        } else {
            Pass::Progressed
        })
    }

    /// Hint from the command side that something was appended.
    pub fn wake(&self) {
        // notify_one keeps a permit when the loop is busy, so no hint is lost.
        self.wake.notify_one();
    }

    /// Resolves `true` once the applied checkpoint covers `token`, `false` after `timeout`.
    pub async fn wait_for(&self, token: ConsistencyToken, timeout: Duration) -> bool {
        let mut progress = self.progress.subscribe();
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
        *current = None;
        self.progress.send_replace(Checkpoint::default());
        drop(current);
        self.wake();
        Ok(())
    }
}
