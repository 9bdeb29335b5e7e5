//! The layout check of the SQLite read store.
//!
//! Everything in the read store is derived from events by code: `doc` is the
//! domain `Order` serialized, the filter columns and search terms are computed
//! from it. When that code changes shape, rows written by the old code would
//! be misread (or fail to decode and wedge the projector). So the store records
//! the [`current`] layout in its `layout` table, and opening a store that holds
//! any other layout empties it (the checkpoint goes back to the start), which
//! makes the projector rebuild everything from the event log.
//!
//! Bump [`DERIVED_REVISION`] when `write` derives columns, or `search::terms`
//! search terms, differently. `Order::SCHEMA` changes on its own whenever `Order`'s JSON does
//! (the domain's golden test enforces it). `OrderView` is not part of the
//! layout: this store computes views when read, never stores them.

use super::SqliteReadStore;
use crate::{ReadError, ReadStore};
use order_domain::Order;

/// Revision of what the SQLite store derives from an order besides `doc`.
const DERIVED_REVISION: u32 = 1;

/// The layout this code writes and reads.
fn current() -> String {
    format!("doc={} sqlite={DERIVED_REVISION}", Order::SCHEMA)
}

impl SqliteReadStore {
    /// The layout of derived data this code writes, as recorded in the store.
    pub fn layout() -> String {
        current()
    }
}

/// Makes sure `store` holds the current layout, emptying it first if not.
pub(super) async fn ensure(store: &SqliteReadStore) -> Result<(), ReadError> {
    let expected = current();
    let found: Option<String> = sqlx::query_scalar("SELECT layout FROM layout WHERE id = 1")
        .fetch_optional(&store.pool)
        .await?;
    if found.as_deref() == Some(expected.as_str()) {
        return Ok(());
    }
    let has_orders: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders)")
        .fetch_one(&store.pool)
        .await?;
    if found.is_some() || has_orders {
        tracing::warn!(
            found = found.as_deref().unwrap_or("none"),
            expected = %expected,
            "the read store holds documents of another layout; emptying it so the \
             projector rebuilds it from the event log"
        );
    }
    // Empty first, record second: a crash in between only repeats the reset.
    store.reset().await?;
    sqlx::query(
        "INSERT INTO layout (id, layout) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET layout = excluded.layout",
    )
    .bind(&expected)
    .execute(&store.pool)
    .await?;
    Ok(())
}
