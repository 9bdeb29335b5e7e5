//! How fast `order-platform rebuild` builds the next orders index from the
//! PostgreSQL event store: a benchmark, run by hand against the PostgreSQL and
//! Elasticsearch of `dev/stack`, that prints events per second.
//!
//! ```text
//! eval "$(dev/stack env)"
//! cargo bench -p order-read-model-es --bench rebuild            # 200,000 events
//! REBUILD_BENCH_ORDERS=10000 cargo bench -p order-read-model-es --bench rebuild
//! ```
//!
//! The log (orders of 4 events each: created, item added, approved, shipped) is
//! written once into its own database, `rebuild_bench_<orders>`, and reused by
//! later runs; each run rebuilds into a fresh index prefix, twice (the second
//! run swaps from a live index, as in production), and deletes its indices.

#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt;
use order_domain::Command;
use order_event_store::{AppendRequest, CommandMetadata, EventStore, NewEvent, PostgresEventStore};
use order_read_model::conformance::{Log, at, item};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Instant;

const BATCH: usize = 5_000;

fn orders() -> usize {
    std::env::var("REBUILD_BENCH_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000)
}

/// The event store of the benchmark, filled with `orders` orders if it is new.
async fn store(orders: usize) -> PostgresEventStore {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: start the dev stack and run `eval \"$(dev/stack env)\"`");
    let base = PgConnectOptions::from_str(&url).expect("DATABASE_URL");
    let name = format!("rebuild_bench_{orders}");
    let mut admin = base.connect().await.expect("connect to DATABASE_URL");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .expect("look up the database");
    if exists.is_none() {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the database");
    }
    admin.close().await.ok();
    let store = PostgresEventStore::connect(base.database(&name), 16)
        .await
        .expect("open the event store");
    let have = store
        .backlog(Default::default())
        .await
        .expect("count events")
        .events;
    let want = orders as u64 * 4;
    if have == 0 {
        fill(&store, orders).await;
    } else if have != want {
        panic!("{name} holds {have} events, not {want}: drop it and run again");
    }
    store
}

async fn fill(store: &PostgresEventStore, orders: usize) {
    let started = Instant::now();
    eprintln!("writing {orders} orders of 4 events (once)...");
    let mut log = Log::default();
    let mut requests = Vec::with_capacity(orders);
    for n in 0..orders {
        let (id, mut events) = log.create(
            &format!("cust-{}", n % 500),
            "USD",
            &[item(&format!("SKU-{n}"), "Blue mug", 1, "9.99")],
            at(n as i64),
        );
        events.extend(log.add(id, item("TEA-1", "Green tea", 2, "3.50"), at(n as i64 + 1)));
        events.extend(log.exec(id, Command::ApproveOrder { reason: None }, at(n as i64 + 2)));
        events.extend(log.exec(
            id,
            Command::ship(Some("1Z"), Some("UPS")).unwrap(),
            at(n as i64 + 3),
        ));
        requests.push(AppendRequest {
            stream_id: id,
            expected_version: 0,
            events: events
                .into_iter()
                .map(|e| NewEvent {
                    event_id: e.event_id,
                    event_type: e.event_type,
                    schema_version: e.schema_version,
                    data: e.data,
                    occurred_at: e.occurred_at,
                    actor: e.actor,
                })
                .collect(),
            metadata: CommandMetadata::default(),
            idempotency: None,
        });
    }
    futures::stream::iter(requests)
        .map(|request| store.append(request))
        .buffer_unordered(32)
        .for_each(|appended| async {
            appended.expect("append");
        })
        .await;
    eprintln!("written in {:.1?}", started.elapsed());
}

#[tokio::main]
async fn main() {
    let orders = orders();
    let log = store(orders).await;
    let es = support::open().await;
    for run in 1..=2 {
        let report = es.rebuild(&log, BATCH, &mut |_| {}).await.expect("rebuild");
        let seconds = report.elapsed.as_secs_f64();
        eprintln!(
            "rebuild {run}: {} events of {orders} orders into {} in {seconds:.2} s: {:.0} events/s",
            report.events,
            report.new_index,
            report.events as f64 / seconds,
        );
    }
}
