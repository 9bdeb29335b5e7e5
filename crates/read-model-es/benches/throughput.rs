//! How fast `apply` feeds Elasticsearch, per refresh policy: a benchmark, run by
//! hand against the Elasticsearch of `dev/stack`, that prints events per second.
//!
//! ```text
//! eval "$(dev/stack env)"
//! cargo bench -p order-read-model-es --bench throughput
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use order_domain::Command;
use order_read_model::ReadStore;
use order_read_model::conformance::{Log, at, checkpoint_at, item};
use order_read_model_es::Refresh;
use std::time::Instant;

/// 2,000 orders, 4 events each, applied in the projector's batch size.
fn log() -> Log {
    let mut log = Log::default();
    for n in 0..2_000 {
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

#[tokio::main]
async fn main() {
    let log = log();
    for (refresh, batch) in [
        (Refresh::Immediate, 100),
        (Refresh::Immediate, 500),
        (Refresh::WaitFor, 500),
    ] {
        {
            let mut config = support::config();
            config.refresh = refresh;
            let store = support::open_with(config).await;
            let started = Instant::now();
            for chunk in log.events.chunks(batch) {
                let last = chunk.last().unwrap().global_position;
                store.apply(chunk, checkpoint_at(last)).await.unwrap();
            }
            let elapsed = started.elapsed();
            eprintln!(
                "{refresh:?}, batches of {batch}: {} events in {:.2?}: {:.0} events/s",
                log.events.len(),
                elapsed,
                log.events.len() as f64 / elapsed.as_secs_f64()
            );
        }
    }
}
