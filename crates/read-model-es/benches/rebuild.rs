//! How fast `order-platform rebuild` builds the next orders index from the
//! PostgreSQL event store: a benchmark, run by hand against the PostgreSQL and
//! Elasticsearch of `dev/stack`, that prints events per second.
//!
//! ```text
//! eval "$(dev/stack env)"
//! cargo bench -p order-read-model-es --bench rebuild            # 200,000 events
//! BENCH_ORDERS=10000 cargo bench -p order-read-model-es --bench rebuild
//! ```
//!
//! The log (`order_read_model::bench_log`: orders of 4 events each) is written
//! once into its own database, `bench_<orders>`, and reused by later runs; each
//! run rebuilds into a fresh index prefix, twice (the second run swaps from a
//! live index, as in production), and deletes its indices.

#[path = "../tests/support/mod.rs"]
mod support;

use order_read_model::bench_log;

const BATCH: usize = 5_000;

#[tokio::main]
async fn main() {
    let orders = bench_log::orders(50_000);
    let log = bench_log::postgres_store(orders).await;
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
