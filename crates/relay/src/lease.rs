//! Leader election: one active relay per store and topic, through PostgreSQL.
//!
//! The lease is a *session-level advisory lock* held by a dedicated connection, not a
//! `relay_lease` table with an expiry. Why:
//!
//! * when the leader dies (SIGKILL, crash, lost network), its connection closes and PostgreSQL
//!   releases the lock at once — there is no expiry to wait out, so a standby takes over within
//!   its polling interval ([`POLL`]) instead of a lease period, and no clock is involved;
//! * the lock lives in the database the events live in, so "the store is reachable" and "I am
//!   the leader" are checked over the same kind of connection.
//!
//! What a lock cannot do is stop a leader that has lost it from finishing what it was doing (its
//! connection broke, but its Kafka transaction is still open). That is not the lease's job:
//! exactly-once comes from Kafka's fencing. The new leader's `init_transactions` with the same
//! `transactional.id` aborts the old open transaction and makes every later commit of the old
//! producer fail. The lease only keeps the relays from fencing each other in a loop.
//!
//! The leader checks its connection every [`POLL`]; if the check fails it steps down at once.

use order_event_store::StoreId;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use tokio::sync::watch;

/// How often a standby tries to take the lock, and a leader checks it still holds it.
pub const POLL: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The lock key: 0x4f52 ('OR', order relay) in the high half, a hash of store and topic in the
/// low half (clear of the store's append lock, which uses 0x4f50).
const KEY_SQL: &str = "(x'4f52'::bigint << 32) | (hashtext($1)::bigint & 4294967295)";

/// The lock's name, hashed into its key.
fn name(store: StoreId, topic: &str) -> String {
    format!("order-relay/{}/{topic}", store.0)
}

/// A held lease. A task of its own owns the connection that holds the lock and checks it every
/// [`POLL`]; dropping the lease stops the task and closes the connection, which releases the
/// lock.
pub struct Lease {
    /// Set (with the reason) by the task when the connection fails a check.
    lost: watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Tries once to take the lease; `Ok(None)` when another relay holds it.
    pub async fn try_acquire(
        options: &PgConnectOptions,
        store: StoreId,
        topic: &str,
    ) -> Result<Option<Lease>, sqlx::Error> {
        let mut connection =
            tokio::time::timeout(CHECK_TIMEOUT, PgConnection::connect_with(options))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let taken: bool = sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({KEY_SQL})"))
            .bind(name(store, topic))
            .fetch_one(&mut connection)
            .await?;
        if !taken {
            return Ok(None);
        }
        let (report, lost) = watch::channel(None);
        let task = tokio::spawn(async move {
            let reason = loop {
                tokio::time::sleep(POLL).await;
                match tokio::time::timeout(CHECK_TIMEOUT, connection.ping()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break format!("the lease connection failed: {e}"),
                    Err(_) => break "the lease connection did not answer".to_string(),
                }
            };
            let _ = report.send(Some(reason));
        });
        Ok(Some(Lease { lost, task }))
    }

    /// Resolves, with the reason, once the lease is lost. Cancel-safe: the checks run in the
    /// lease's own task, whatever happens to this future.
    pub async fn lost(&mut self) -> String {
        match self.lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the lease task ended".to_string(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}
