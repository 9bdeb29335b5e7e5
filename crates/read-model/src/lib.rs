//! Read models built from the event log, and the projector that keeps them current.
//!
//! The command side writes events; this crate turns them into query-shaped
//! documents ([`OrderView`]) in a [`ReadStore`], and serves lists, full-text
//! search and statistics from there. The [`Projector`] tails the event store's
//! gap-safe global log and feeds every batch into [`ReadStore::apply`].
//!
//! Two properties make the projection *effectively once* without any
//! coordination beyond the read store's own transactions:
//!
//! - **Apply is idempotent by version.** Each stored order remembers how many
//!   of its events it has folded in (`version`). An event is applied only when
//!   its version is exactly the stored version + 1; anything at or below the
//!   stored version was applied before and is skipped. So a batch delivered
//!   twice (a crash after the commit but before the projector learnt of it, a
//!   retry after a timeout, a replay) changes nothing the second time.
//! - **The checkpoint commits with the views.** The log position the projector
//!   resumes from is written in the same transaction as the documents that batch
//!   produced. After a crash, the read store is therefore always exactly "every
//!   event up to the checkpoint": never an applied event with an older
//!   checkpoint that would be re-applied on top of itself (the version check
//!   would catch that too), and never a checkpoint past events that were lost.
//!
//! Read-your-writes (DESIGN.md §4.3) rests on the checkpoint's `covered`
//! watermark: [`Projector::wait_for`] resolves once everything a command's
//! consistency token stands for has been applied.

#[cfg(feature = "testsuite")]
pub mod bench_log;
#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod cursor;
pub mod fold;
mod projector;
pub mod search;
mod sqlite;
mod view;

pub use projector::{Projector, ProjectorHealth};
pub use sqlite::SqliteReadStore;
pub use view::{ItemView, OrderView};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_domain::OrderStatus;
use order_event_store::{ConsistencyToken, LogCursor, RecordedEvent, StoreId};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// What to list, search or count. Every field narrows the result; all `None` is everything.
#[derive(Clone, Debug, Default)]
pub struct OrderFilter {
    pub customer_id: Option<String>,
    pub status: Option<OrderStatus>,
    /// Inclusive.
    pub created_from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub created_to: Option<DateTime<Utc>>,
    /// Full-text query over product names and SKUs, plus exact order id / customer
    /// id; `None` for a plain listing. Any text is safe here: it is cut into words,
    /// never passed through as query syntax. Blank text is [`ReadError::InvalidQuery`].
    pub text: Option<String>,
}

/// Direction of the `createdAt` sort; ties are broken by `orderId` in the same direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

#[derive(Clone, Debug)]
pub struct PageRequest {
    /// 1..=200, validated by the caller.
    pub limit: u32,
    pub sort: SortOrder,
    /// `next_cursor` of the previous page, issued for the same `sort`.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<OrderView>,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Every status is present, 0 when no order has it.
    pub by_status: BTreeMap<String, u64>,
    /// Only currencies that some matching order uses.
    pub by_currency: BTreeMap<String, CurrencyStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyStats {
    /// All orders in that currency matching the filter.
    pub order_count: u64,
    /// Exact sum of the totals of matching orders neither REJECTED nor CANCELED,
    /// as a decimal string in that currency's major unit (USD `"12.50"`).
    pub total_amount: String,
}

/// Where the projector is: resume point plus the consistency watermark reached
/// (see [`order_event_store::LogBatch::covered`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub cursor: LogCursor,
    pub covered: ConsistencyToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A page cursor that we did not issue or cannot decode; the caller answers 400.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The search text cannot be searched (blank, or absurdly long); the caller answers 400.
    #[error("invalid search query: {0}")]
    InvalidQuery(String),
    #[error("read store unavailable: {0}")]
    Unavailable(String),
    /// The read model was built from another event store than the one offered.
    #[error(
        "the read model was built from event store {bound}, not from {offered}; \
         rebuild it from this store (`--rebuild`) or point it at its own store"
    )]
    OtherStore { bound: StoreId, offered: StoreId },
    #[error("read store holds data it cannot read: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                ReadError::Corrupt(e.to_string())
            }
            other => ReadError::Unavailable(other.to_string()),
        }
    }
}

/// The read store port.
#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    async fn get(&self, order_id: Uuid) -> Result<Option<OrderView>, ReadError>;

    /// One page of matching orders, sorted by `createdAt` then `orderId`.
    async fn list(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page, ReadError>;

    async fn stats(&self, filter: &OrderFilter) -> Result<Stats, ReadError>;

    /// Applies a batch of log events and stores `checkpoint`, all in one transaction.
    /// Idempotent: an event whose version is not exactly the stored version + 1 of its
    /// order is skipped (already applied / out of order never happens via the cursor,
    /// but redelivery does).
    async fn apply(
        &self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ReadError>;

    async fn checkpoint(&self) -> Result<Checkpoint, ReadError>;

    /// Ties the read model to the event store it is fed from: a fresh (or reset)
    /// read model takes `store`; one built from another store is refused with
    /// [`ReadError::OtherStore`], so two stores' events are never mixed.
    async fn bind_store(&self, store: StoreId) -> Result<(), ReadError>;

    /// Drops every view, resets the checkpoint and forgets the bound store (used for a rebuild).
    /// With a [`Projector`] running, use [`Projector::rebuild`] instead, which
    /// also rewinds the projector.
    async fn reset(&self) -> Result<(), ReadError>;

    async fn ping(&self) -> Result<(), ReadError>;
}
