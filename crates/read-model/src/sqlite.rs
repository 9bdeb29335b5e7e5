//! SQLite read store: the embedded default, with FTS5 full-text search.
//!
//! One `orders` row per order holds the full domain `Order` as JSON (`doc`, the
//! state the projector evolves) next to copies of the fields queries filter and
//! sort on. `orders_fts` holds one search row per order under the same rowid.
//! Writes (`apply`, `reset`) are serialised in-process and run in
//! `BEGIN IMMEDIATE` transactions, so a batch and its checkpoint commit together.

use crate::cursor::{self, Key, time_key};
use crate::search::{self, SearchQuery};
use crate::{
    Checkpoint, CurrencyStats, OrderFilter, OrderView, Page, PageRequest, ReadError, ReadStore,
    SortOrder, Stats,
};
use async_trait::async_trait;
use order_domain::{Currency, Order, OrderStatus};
use order_event_store::{ConsistencyToken, EmbeddedMigrations, LogCursor, RecordedEvent, StoreId};
use sqlx::sqlite::{SqlitePool, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use tokio::sync::Mutex;
use uuid::Uuid;

mod layout;

/// The read model's migrations (`migrations/`), embedded: see
/// `order_event_store::EmbeddedMigrations` for why not `sqlx::migrate!`.
const MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        "0001_read_model.sql",
        include_str!("../migrations/0001_read_model.sql"),
    ),
    (
        "0002_checkpoint_names_its_store.sql",
        include_str!("../migrations/0002_checkpoint_names_its_store.sql"),
    ),
    (
        "0003_layout.sql",
        include_str!("../migrations/0003_layout.sql"),
    ),
]);

pub struct SqliteReadStore {
    pool: SqlitePool,
    write_gate: Mutex<()>,
}

impl SqliteReadStore {
    /// Opens (creating if needed) the read store in `path` and runs its migrations.
    ///
    /// Give it a file of its own, not the event store's: both keep their schema
    /// versions in sqlx's migration table.
    ///
    /// A store written by code with another document layout is emptied here, so
    /// the projector rebuilds it from the event log (see `sqlite/layout.rs`).
    pub async fn open(path: &Path) -> Result<SqliteReadStore, ReadError> {
        // NORMAL, not FULL: a commit here needs no flush of its own. The store is
        // derived from the event log and each batch commits with its checkpoint,
        // so what a power loss takes (the last batches, never a torn one in WAL
        // mode) the projector applies again; a crash of the process loses nothing.
        let pool = order_event_store::open_sqlite_pool(path, MIGRATIONS, SqliteSynchronous::Normal)
            .await
            .map_err(|e| ReadError::Unavailable(format!("opening {}: {e}", path.display())))?;
        let store = SqliteReadStore {
            pool,
            write_gate: Mutex::new(()),
        };
        layout::ensure(&store).await?;
        Ok(store)
    }
}

/// An order loaded into a batch: its rowid if stored, its state, whether to write it back.
struct Slot {
    rowid: Option<i64>,
    order: Option<Order>,
    dirty: bool,
}

fn to_i64(v: u64, what: &str) -> Result<i64, ReadError> {
    i64::try_from(v).map_err(|_| ReadError::Unavailable(format!("{what} {v} is out of range")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, ReadError> {
    u64::try_from(v).map_err(|_| ReadError::Corrupt(format!("negative {what}: {v}")))
}

fn decode_doc(doc: &str) -> Result<Order, ReadError> {
    serde_json::from_str(doc).map_err(|e| ReadError::Corrupt(format!("stored order: {e}")))
}

/// Orders per statement when a batch is loaded or written: a few thousand bound values,
/// well under SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 250;

/// The stored state of each of `ids` (a fresh slot for an order not stored yet), in as
/// few statements as possible: every statement is a round trip to the connection's thread.
async fn load_all(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Slot>, ReadError> {
    let mut slots: HashMap<Uuid, Slot> = ids
        .iter()
        .map(|id| {
            let fresh = Slot {
                rowid: None,
                order: None,
                dirty: false,
            };
            (*id, fresh)
        })
        .collect();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut qb =
            QueryBuilder::new("SELECT rowid, order_id, doc FROM orders WHERE order_id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(id.to_string());
        }
        qb.push(")");
        for row in qb.build().fetch_all(&mut **tx).await? {
            let id: String = row.try_get(1)?;
            let id = Uuid::parse_str(&id)
                .map_err(|e| ReadError::Corrupt(format!("stored order id {id:?}: {e}")))?;
            slots.insert(
                id,
                Slot {
                    rowid: Some(row.try_get(0)?),
                    order: Some(decode_doc(row.try_get(2)?)?),
                    dirty: false,
                },
            );
        }
    }
    Ok(slots)
}

/// Folds `event` into `slot` (see [`crate::fold::fold_event`]).
fn apply_one(slot: &mut Slot, event: &RecordedEvent) -> Result<(), ReadError> {
    if crate::fold::fold_event(&mut slot.order, event)? {
        slot.dirty = true;
    }
    Ok(())
}

/// One `orders` row and its search row, encoded.
struct Encoded<'a> {
    order: &'a Order,
    /// The stored row's rowid; `None` for an order not stored yet.
    rowid: Option<i64>,
    order_id: String,
    version: i64,
    doc: String,
    terms: String,
}

/// Writes `orders` (inserted or updated) and their search rows: per chunk one upsert that
/// returns every rowid, one delete of the changed orders' old search rows, one insert of
/// the new ones.
async fn write_all(
    tx: &mut Transaction<'_, Sqlite>,
    orders: &[(Option<i64>, &Order)],
) -> Result<(), ReadError> {
    for chunk in orders.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk
            .iter()
            .map(|(rowid, order)| {
                Ok(Encoded {
                    order,
                    rowid: *rowid,
                    order_id: order.id.to_string(),
                    version: to_i64(order.version, "version")?,
                    doc: serde_json::to_string(order).map_err(|e| {
                        ReadError::Unavailable(format!("encoding order {}: {e}", order.id))
                    })?,
                    terms: search::terms(order),
                })
            })
            .collect::<Result<Vec<_>, ReadError>>()?;
        let mut upsert = QueryBuilder::new(
            "INSERT INTO orders (order_id, customer_id, status, currency, total_minor, version, \
             created_at, updated_at, doc) ",
        );
        upsert.push_values(&rows, |mut values, row| {
            values
                .push_bind(&row.order_id)
                .push_bind(&row.order.customer_id)
                .push_bind(row.order.status.as_str())
                .push_bind(row.order.currency.code())
                .push_bind(row.order.total)
                .push_bind(row.version)
                .push_bind(time_key(&row.order.created_at))
                .push_bind(time_key(&row.order.updated_at))
                .push_bind(&row.doc);
        });
        upsert.push(
            " ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, \
             status = excluded.status, currency = excluded.currency, \
             total_minor = excluded.total_minor, version = excluded.version, \
             created_at = excluded.created_at, updated_at = excluded.updated_at, \
             doc = excluded.doc RETURNING order_id, rowid",
        );
        let mut rowids: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for returned in upsert.build().fetch_all(&mut **tx).await? {
            rowids.insert(returned.try_get(0)?, returned.try_get(1)?);
        }
        let stored: Vec<i64> = rows.iter().filter_map(|row| row.rowid).collect();
        if !stored.is_empty() {
            let mut delete = QueryBuilder::new("DELETE FROM orders_fts WHERE rowid IN (");
            let mut list = delete.separated(", ");
            for rowid in &stored {
                list.push_bind(*rowid);
            }
            delete.push(")");
            delete.build().execute(&mut **tx).await?;
        }
        let mut search =
            QueryBuilder::new("INSERT INTO orders_fts (rowid, order_id, customer_id, terms) ");
        let mut missing = None;
        search.push_values(&rows, |mut values, row| {
            let rowid = rowids.get(&row.order_id).copied();
            if rowid.is_none() {
                missing = Some(row.order_id.clone());
            }
            values
                .push_bind(rowid)
                .push_bind(&row.order_id)
                .push_bind(&row.order.customer_id)
                .push_bind(&row.terms);
        });
        if let Some(order_id) = missing {
            return Err(ReadError::Unavailable(format!(
                "writing order {order_id}: the upsert returned no rowid for it"
            )));
        }
        search.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn store_checkpoint(
    tx: &mut Transaction<'_, Sqlite>,
    checkpoint: Checkpoint,
) -> Result<(), ReadError> {
    sqlx::query("UPDATE checkpoint SET position = ?, covered = ? WHERE id = 1")
        .bind(checkpoint.cursor.position)
        .bind(to_i64(checkpoint.covered.0, "checkpoint covered")?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Appends ` AND …` for every filter. The query must select from `orders`.
fn push_filter(qb: &mut QueryBuilder<'_, Sqlite>, filter: &OrderFilter) -> Result<(), ReadError> {
    if let Some(customer) = &filter.customer_id {
        qb.push(" AND customer_id = ").push_bind(customer.clone());
    }
    if let Some(status) = filter.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(from) = &filter.created_from {
        qb.push(" AND created_at >= ").push_bind(time_key(from));
    }
    if let Some(to) = &filter.created_to {
        qb.push(" AND created_at < ").push_bind(time_key(to));
    }
    if let Some(text) = &filter.text {
        let query = SearchQuery::parse(text)?;
        qb.push(" AND (order_id = ")
            .push_bind(query.exact_order_id)
            .push(" OR customer_id = ")
            .push_bind(query.exact);
        if let Some(fts) = query.fts {
            qb.push(" OR rowid IN (SELECT rowid FROM orders_fts WHERE orders_fts MATCH ")
                .push_bind(fts)
                .push(")");
        }
        qb.push(")");
    }
    Ok(())
}

#[async_trait]
impl ReadStore for SqliteReadStore {
    async fn get(&self, order_id: Uuid) -> Result<Option<OrderView>, ReadError> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM orders WHERE order_id = ?")
            .bind(order_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        doc.map(|doc| decode_doc(&doc).map(|order| OrderView::from(&order)))
            .transpose()
    }

    async fn list(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page, ReadError> {
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(page.sort, c))
            .transpose()?;
        let (cmp, dir) = match page.sort {
            SortOrder::Asc => (">", "ASC"),
            SortOrder::Desc => ("<", "DESC"),
        };
        let limit = page.limit.max(1);
        let mut qb = QueryBuilder::new("SELECT doc, created_at, order_id FROM orders WHERE 1 = 1");
        push_filter(&mut qb, filter)?;
        if let Some(key) = after {
            qb.push(format_args!(" AND (created_at, order_id) {cmp} ("))
                .push_bind(key.created_at)
                .push(", ")
                .push_bind(key.order_id)
                .push(")");
        }
        qb.push(format_args!(
            " ORDER BY created_at {dir}, order_id {dir} LIMIT "
        ))
        // One more than asked: whether it exists says if there is a next page.
        .push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;

        let more = rows.len() > limit as usize;
        let mut items = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let doc: String = row.try_get(0)?;
            items.push(OrderView::from(&decode_doc(&doc)?));
            last = Some(Key {
                created_at: row.try_get(1)?,
                order_id: row.try_get(2)?,
            });
        }
        let next_cursor = match last {
            Some(key) if more => Some(cursor::encode(page.sort, &key)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn stats(&self, filter: &OrderFilter) -> Result<Stats, ReadError> {
        // SUM over i64 totals could overflow (SQLite then errors). Summing the high
        // and low parts separately cannot for any realistic row count, and the
        // parts recombine exactly in i128: t = (t / 1e9) * 1e9 + t % 1e9.
        const SPLIT: i128 = 1_000_000_000;
        let mut qb = QueryBuilder::new(
            "SELECT status, currency, COUNT(*), SUM(total_minor / 1000000000), \
             SUM(total_minor % 1000000000) FROM orders WHERE 1 = 1",
        );
        push_filter(&mut qb, filter)?;
        qb.push(" GROUP BY status, currency");
        let rows = qb.build().fetch_all(&self.pool).await?;

        let mut by_status: BTreeMap<String, u64> = OrderStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut sums: BTreeMap<String, (Currency, u64, i128)> = BTreeMap::new();
        for row in &rows {
            let status_text: String = row.try_get(0)?;
            let status = OrderStatus::parse(&status_text)
                .ok_or_else(|| ReadError::Corrupt(format!("unknown status {status_text:?}")))?;
            let code: String = row.try_get(1)?;
            let currency = Currency::parse(&code)
                .map_err(|e| ReadError::Corrupt(format!("stored currency: {e}")))?;
            let count = to_u64(row.try_get(2)?, "count")?;
            let high: i64 = row.try_get(3)?;
            let low: i64 = row.try_get(4)?;
            *by_status.entry(status_text).or_default() += count;
            let entry = sums.entry(code).or_insert((currency, 0, 0));
            entry.1 += count;
            if status.counts_towards_revenue() {
                entry.2 += i128::from(high) * SPLIT + i128::from(low);
            }
        }
        let by_currency = sums
            .into_iter()
            .map(|(code, (currency, order_count, total))| {
                (
                    code,
                    CurrencyStats {
                        order_count,
                        total_amount: currency.format_amount(total),
                    },
                )
            })
            .collect();
        Ok(Stats {
            by_status,
            by_currency,
        })
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ReadError> {
        let _writer = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Each order is loaded once per batch and written once, in first-seen order, a
        // few statements for the whole batch.
        let mut seen: Vec<Uuid> = Vec::new();
        let mut distinct = HashSet::new();
        for event in events {
            if distinct.insert(event.stream_id) {
                seen.push(event.stream_id);
            }
        }
        let mut slots = load_all(&mut tx, &seen).await?;
        for event in events {
            let slot = slots
                .get_mut(&event.stream_id)
                .expect("every stream of the batch has a slot");
            apply_one(slot, event)?;
        }
        let changed: Vec<(Option<i64>, &Order)> = seen
            .iter()
            .filter_map(|id| match slots.get(id) {
                Some(Slot {
                    rowid,
                    order: Some(order),
                    dirty: true,
                }) => Some((*rowid, order)),
                _ => None,
            })
            .collect();
        write_all(&mut tx, &changed).await?;
        store_checkpoint(&mut tx, checkpoint).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, ReadError> {
        let row = sqlx::query("SELECT position, covered FROM checkpoint WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Err(ReadError::Corrupt("the checkpoint row is missing".into()));
        };
        Ok(Checkpoint {
            cursor: LogCursor {
                position: row.try_get(0)?,
            },
            covered: ConsistencyToken(to_u64(row.try_get(1)?, "checkpoint covered")?),
        })
    }

    async fn bind_store(&self, store: StoreId) -> Result<(), ReadError> {
        let _writer = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let bound: Option<String> =
            sqlx::query_scalar("SELECT store_id FROM checkpoint WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        match bound {
            None => {
                sqlx::query("UPDATE checkpoint SET store_id = ? WHERE id = 1")
                    .bind(store.0.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
            Some(bound) => {
                let bound = Uuid::parse_str(&bound).map_err(|e| {
                    ReadError::Corrupt(format!("checkpoint store id {bound:?}: {e}"))
                })?;
                if bound == store.0 {
                    Ok(())
                } else {
                    Err(ReadError::OtherStore {
                        bound: StoreId(bound),
                        offered: store,
                    })
                }
            }
        }
    }

    async fn reset(&self) -> Result<(), ReadError> {
        let _writer = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM orders_fts")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM orders").execute(&mut *tx).await?;
        store_checkpoint(&mut tx, Checkpoint::default()).await?;
        sqlx::query("UPDATE checkpoint SET store_id = NULL WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), ReadError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod embedded_migrations {
    #[tokio::test]
    async fn the_embedded_migrations_are_the_folder() {
        let dir = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("migrations");
        order_event_store::assert_same_as_folder(super::MIGRATIONS, &dir).await;
    }
}
