//! The event log of the read-side benchmarks (`cargo bench --bench rebuild` in
//! `read-model-es`, `--bench backbone` in `kafka-projector`): orders of four
//! events each (created, item added, approved, shipped), written once into a
//! PostgreSQL database of their own and reused by later runs.

use crate::conformance::{Log, at, item};
use order_domain::Command;
use order_event_store::{AppendRequest, CommandMetadata, EventStore, NewEvent, PostgresEventStore};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Instant;

/// Orders in a benchmark log: `BENCH_ORDERS`, else `default`.
pub fn orders(default: usize) -> usize {
    std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Where the log of `orders` orders lives: the database `bench_<orders>` next to
/// `DATABASE_URL`.
pub fn database(orders: usize) -> PgConnectOptions {
    base().database(&format!("bench_{orders}"))
}

fn base() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: start the dev stack and run `eval \"$(dev/stack env)\"`");
    PgConnectOptions::from_str(&url).expect("DATABASE_URL")
}

/// The event store of [`database`], holding `orders` orders of four events
/// (written now if the database is new).
pub async fn postgres_store(orders: usize) -> PostgresEventStore {
    let base = base();
    let name = format!("bench_{orders}");
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
    let store = PostgresEventStore::connect(database(orders), 16)
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
    use futures::StreamExt;
    let started = Instant::now();
    eprintln!("writing {orders} orders of 4 events (once)...");
    let mut log = Log::default();
    let mut requests = Vec::with_capacity(orders);
    for n in 0..orders {
        let t = n as i64;
        let (id, mut events) = log.create(
            &format!("cust-{}", n % 500),
            "USD",
            &[item(&format!("SKU-{n}"), "Blue mug", 1, "9.99")],
            at(t),
        );
        events.extend(log.add(id, item("TEA-1", "Green tea", 2, "3.50"), at(t + 1)));
        events.extend(log.exec(id, Command::ApproveOrder { reason: None }, at(t + 2)));
        let ship = Command::ship(Some("1Z"), Some("UPS")).expect("a valid shipment");
        events.extend(log.exec(id, ship, at(t + 3)));
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
