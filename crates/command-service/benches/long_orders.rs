//! Deciding a command on an order with a long history: what snapshots buy.
//!
//! A benchmark, run by hand, that prints a table. It times what a command does
//! before its append — load the order (newest snapshot + the events after it)
//! and decide — on an order with 1 event and on one with 10,000 events, the
//! latter with the snapshot the command service writes every `--snapshot-every`
//! versions in the worst place (that many events less one after it) and with no
//! snapshot at all. The
//! append that follows costs the same whatever the history (one version check,
//! the new rows), so it is left out.
//!
//! ```text
//! cargo bench -p order-command-service --bench long_orders          # SQLite
//! eval "$(dev/stack env)"                                           # + PostgreSQL
//! cargo bench -p order-command-service --bench long_orders
//! ```
//!
//! Target (issue 9): 10,000 events with snapshots ≤ 2× one event.

use chrono::{TimeZone, Utc};
use order_command_service::{CommandService, SNAPSHOT_SCHEMA};
use order_domain::{Command, CommandContext, LineInput, Order, decide, evolve};
use order_event_store::{
    AppendRequest, CommandMetadata, EventStore, NewEvent, PostgresEventStore, Snapshot,
    SqliteEventStore,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const LONG: u64 = 10_000;
/// The command service's default (`--snapshot-every`); `BENCH_SNAPSHOT_EVERY` tries another.
fn snapshot_every() -> u64 {
    std::env::var("BENCH_SNAPSHOT_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(order_command_service::DEFAULT_SNAPSHOT_EVERY)
}
const ROUNDS: usize = 2_000;

fn ctx() -> CommandContext {
    CommandContext {
        actor: "bench".into(),
        now: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
    }
}

fn line(sku: &str) -> LineInput {
    LineInput {
        sku: Some(sku.into()),
        product_name: Some("Kettle".into()),
        quantity: Some(1),
        unit_price: Some("9.99".into()),
    }
}

fn add(sku: &str, order: &Order) -> Command {
    let Command::CreateOrder { mut lines, .. } =
        Command::create_order(order.id, "c", "USD", &[line(sku)]).unwrap()
    else {
        unreachable!()
    };
    Command::AddItem {
        line: lines.remove(0),
    }
}

/// Appends an order of `events` events (a create, then items added and removed
/// in turn) and returns its final state and the state at `snapshot_at`.
async fn long_order(store: &dyn EventStore, events: u64, snapshot_at: u64) -> (Order, Order) {
    let id = Uuid::new_v4();
    let create = Command::create_order(id, "c", "USD", &[line("SKU-1")]).unwrap();
    let mut pending = decide(&create, None, &ctx()).unwrap();
    let mut state = pending.iter().fold(None, evolve).unwrap();
    let mut at_snapshot = state.clone();
    let mut written = 0;
    while state.version < events {
        let command = if state.version % 2 == 1 {
            add("SKU-2", &state)
        } else {
            Command::RemoveItem {
                sku: "SKU-2".into(),
            }
        };
        let new = decide(&command, Some(&state), &ctx()).unwrap();
        state = new
            .iter()
            .try_fold(state, |s, e| evolve(Some(s), e))
            .unwrap();
        pending.extend(new);
        if state.version == snapshot_at {
            at_snapshot = state.clone();
        }
        if pending.len() == 500 {
            written = flush(store, id, written, &mut pending).await;
        }
    }
    flush(store, id, written, &mut pending).await;
    (state, at_snapshot)
}

/// Appends `pending` after version `written`; returns the new version.
async fn flush(
    store: &dyn EventStore,
    id: Uuid,
    written: u64,
    pending: &mut Vec<order_domain::Event>,
) -> u64 {
    let count = pending.len() as u64;
    if count > 0 {
        store
            .append(AppendRequest {
                stream_id: id,
                expected_version: written,
                events: pending
                    .drain(..)
                    .map(|e| NewEvent::from_domain(&e, Uuid::now_v7()))
                    .collect(),
                metadata: CommandMetadata::default(),
                idempotency: None,
            })
            .await
            .unwrap();
    }
    written + count
}

/// Median and 99th percentile of `rounds` loads + decides of `order`.
async fn time_decide(service: &CommandService, order: Uuid, rounds: usize) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let state = service
            .load(order)
            .await
            .unwrap()
            .expect("the order exists");
        let events = decide(&add("SKU-3", &state), Some(&state), &ctx()).unwrap();
        std::hint::black_box(events);
        took.push(started.elapsed());
    }
    took.sort();
    (took[rounds / 2], took[rounds * 99 / 100])
}

async fn bench(name: &str, store: Arc<dyn EventStore>) {
    let service = CommandService {
        store: store.clone(),
        on_append: Arc::new(|_| {}),
        snapshot_every: snapshot_every(),
    };
    let (short, _) = long_order(&*store, 1, 1).await;
    // The newest snapshot as far behind as the service ever leaves it.
    let snapshot_at = (LONG / snapshot_every() - 1) * snapshot_every() + 1;
    let (long, at_snapshot) = long_order(&*store, LONG, snapshot_at).await;
    let (bare, _) = long_order(&*store, LONG, 0).await;
    store
        .save_snapshot(&Snapshot {
            stream_id: long.id,
            version: at_snapshot.version,
            schema: SNAPSHOT_SCHEMA.into(),
            state: serde_json::to_value(&at_snapshot).unwrap(),
        })
        .await
        .unwrap();
    let one = time_decide(&service, short.id, ROUNDS).await;
    let snapshotted = time_decide(&service, long.id, ROUNDS).await;
    // A whole replay takes tens of milliseconds: fewer rounds.
    let replayed = time_decide(&service, bare.id, ROUNDS / 20).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name} | 1 event | {:.3} | {:.3} | 1.00× |",
        ms(one.0),
        ms(one.1)
    );
    println!(
        "| {name} | {LONG} events, snapshot at {} | {:.3} | {:.3} | {:.2}× |",
        at_snapshot.version,
        ms(snapshotted.0),
        ms(snapshotted.1),
        ms(snapshotted.0) / ms(one.0)
    );
    println!(
        "| {name} | {LONG} events, no snapshot | {:.3} | {:.3} | {:.2}× |",
        ms(replayed.0),
        ms(replayed.1),
        ms(replayed.0) / ms(one.0)
    );
}

#[tokio::main]
async fn main() {
    println!(
        "load + decide of an add-item, {ROUNDS} rounds per row ({} without a snapshot), \
         snapshot every {} versions (median / p99, ms)\n",
        ROUNDS / 20,
        snapshot_every()
    );
    println!("| store | order | median ms | p99 ms | median vs 1 event |");
    println!("|---|---|---:|---:|---:|");
    let dir = std::env::temp_dir().join(format!("order-bench-long-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteEventStore::open(&dir.join("events.db"))
        .await
        .unwrap();
    bench("SQLite", Arc::new(sqlite)).await;
    let _ = std::fs::remove_dir_all(&dir);
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let options = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap();
            let schema = format!("bench_{}", Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            let store =
                PostgresEventStore::connect(options.options([("search_path", schema.as_str())]), 4)
                    .await
                    .unwrap();
            bench("PostgreSQL", Arc::new(store)).await;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
        }
        Err(_) => {
            println!("\n(DATABASE_URL not set: PostgreSQL skipped; `eval \"$(dev/stack env)\"`)")
        }
    }
}
