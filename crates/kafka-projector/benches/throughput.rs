//! How fast the Kafka projector drains a topic into Elasticsearch, and how long a
//! read-your-writes wait takes through the relay's watermarks: a benchmark, run by hand
//! against the dev stack, that prints its numbers.
//!
//! ```text
//! eval "$(dev/stack env)"
//! cargo bench -p order-kafka-projector --bench throughput
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use order_domain::Command;
use order_event_store::ConsistencyToken;
use order_kafka_projector::WatermarkFreshness;
use order_read_model::ReadStore;
use order_read_model::conformance::{Log, at, item};
use std::time::{Duration, Instant};

const ORDERS: i64 = 2_000;

/// 2,000 orders, 4 events each.
fn log() -> Log {
    let mut log = Log::default();
    for n in 0..ORDERS {
        let (id, _) = log.create(
            &format!("cust-{}", n % 50),
            "USD",
            &[item(&format!("SKU-{n}"), "Blue mug", 1, "9.99")],
            at(n),
        );
        log.add(id, item("TEA-1", "Green tea", 2, "3.50"), at(n + 1));
        log.exec(id, Command::ApproveOrder { reason: None }, at(n + 2));
        log.exec(
            id,
            Command::ship(Some("1Z"), Some("UPS")).unwrap(),
            at(n + 3),
        );
    }
    log
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut fixture = support::Fixture::new().await;
    let log = log();
    let last = log.events.last().unwrap().stream_id;
    let started = Instant::now();
    fixture.publish(&log.events, 500).await;
    let published = started.elapsed();
    let mut config = fixture.config();
    config.batch_size = 500;
    let started = Instant::now();
    let running = fixture.start(config);
    while fixture
        .read
        .get(last)
        .await
        .ok()
        .flatten()
        .map(|v| v.version)
        != Some(4)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let events = log.events.len() as f64;
    println!(
        "published {} events in {:.2}s ({:.0}/s, relay code path, 500 per transaction)",
        events,
        published.as_secs_f64(),
        events / published.as_secs_f64()
    );
    println!(
        "projected them into Elasticsearch in {:.2}s ({:.0} events/s, batches of 500, refresh=true)",
        drained.as_secs_f64(),
        events / drained.as_secs_f64()
    );

    // Read-your-writes: one more event at a time, then the wait for its token.
    let freshness = WatermarkFreshness::start(
        &order_kafka_projector::KafkaConnection::new(fixture.bootstrap.clone()),
        &fixture.topic,
        fixture.store,
        fixture.read.clone(),
    );
    let mut more = log;
    let mut waits = Vec::new();
    for n in 0..20 {
        let (_, events) = more.create("ryw", "USD", &[item("X", "Cup", 1, "1.00")], at(10_000 + n));
        let token = ConsistencyToken(events.last().unwrap().global_position as u64);
        fixture.publish(&events, 500).await;
        let started = Instant::now();
        assert!(freshness.wait_for(token, Duration::from_secs(10)).await);
        waits.push(started.elapsed());
    }
    waits.sort();
    println!(
        "from a relay commit to its token covered (projected, progress recorded), 20 single-event \
         commits: median {:.0} ms, max {:.0} ms",
        waits[10].as_secs_f64() * 1000.0,
        waits[19].as_secs_f64() * 1000.0
    );
    running.stop().await;
    fixture.clean_up().await;
}
