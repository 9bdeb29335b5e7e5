//! Differential property test: random command histories (decided by the domain)
//! projected into the SQLite store in one batch and into Elasticsearch in random
//! batches with redeliveries; then every query of DESIGN §4.2 must answer the
//! same on both: `get` of every order, every page of every listing in both
//! directions (items *and* cursors), search, and stats.

mod support;

use chrono::Duration;
use order_domain::{Command, OrderStatus, validate_line};
use order_read_model::conformance::{Log, at, item};
use order_read_model::{OrderFilter, PageRequest, ReadStore, SortOrder, SqliteReadStore};
use proptest::prelude::*;
use uuid::Uuid;

const CUSTOMERS: [&str; 3] = ["alice", "bob-smith", "carol_x"];
const CURRENCIES: [&str; 3] = ["USD", "EUR", "JPY"];
const PRODUCTS: [(&str, &str); 6] = [
    ("SKU-1", "Blue mug"),
    ("SKU-12", "Red kettle"),
    ("ABC_7", "Blue kettle"),
    ("X-Y_Z", "Crème brûlée"),
    ("sku-100", "Tea towel"),
    ("GOLD", "Gold bar"),
];
const PRICES: [&str; 4] = ["1", "7", "250", "90000000000000000"];

#[derive(Clone, Debug)]
enum Op {
    Create {
        customer: usize,
        currency: usize,
        product: usize,
        qty: i64,
        price: usize,
        t: i64,
    },
    Add {
        order: usize,
        product: usize,
        qty: i64,
        price: usize,
    },
    Remove {
        order: usize,
        product: usize,
    },
    Approve(usize),
    Reject(usize),
    Ship(usize),
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, 0..6usize, 1..4i64, 0..4usize, 0..6i64).prop_map(
            |(customer, currency, product, qty, price, t)| Op::Create {
                customer, currency, product, qty, price, t
            }
        ),
        2 => (0..40usize, 0..6usize, 1..3i64, 0..3usize)
            .prop_map(|(order, product, qty, price)| Op::Add { order, product, qty, price }),
        1 => (0..40usize, 0..6usize).prop_map(|(order, product)| Op::Remove { order, product }),
        1 => (0..40usize).prop_map(Op::Approve),
        1 => (0..40usize).prop_map(Op::Reject),
        1 => (0..40usize).prop_map(Op::Ship),
        1 => (0..40usize).prop_map(Op::Cancel),
    ]
}

/// Runs the ops through the domain; refused commands record nothing.
fn history(ops: &[Op]) -> (Log, Vec<Uuid>) {
    let mut log = Log::default();
    let mut ids: Vec<Uuid> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let now = at(100 + step as i64);
        let pick = |i: &usize| ids.get(i % ids.len().max(1)).copied();
        match op {
            Op::Create {
                customer,
                currency,
                product,
                qty,
                price,
                t,
            } => {
                let (sku, name) = PRODUCTS[*product];
                let id = Uuid::new_v4();
                let Ok(command) = Command::create_order(
                    id,
                    CUSTOMERS[*customer],
                    CURRENCIES[*currency],
                    &[item(sku, name, *qty, PRICES[*price])],
                ) else {
                    continue;
                };
                // Few distinct timestamps: ties on createdAt are the interesting case.
                if log.try_exec(id, &command, at(*t)).is_some() {
                    ids.push(id);
                }
            }
            Op::Add {
                order,
                product,
                qty,
                price,
            } => {
                let Some(id) = pick(order) else { continue };
                let (sku, name) = PRODUCTS[*product];
                let currency = log.order(id).unwrap().currency;
                let Ok(line) = validate_line(&item(sku, name, *qty, PRICES[*price]), currency, "")
                else {
                    continue;
                };
                log.try_exec(id, &Command::AddItem { line }, now);
            }
            Op::Remove { order, product } => {
                let Some(id) = pick(order) else { continue };
                let sku = PRODUCTS[*product].0.to_string();
                log.try_exec(id, &Command::RemoveItem { sku }, now);
            }
            Op::Approve(o) | Op::Reject(o) | Op::Ship(o) | Op::Cancel(o) => {
                let Some(id) = pick(o) else { continue };
                let command = match op {
                    Op::Approve(_) => Command::ApproveOrder { reason: None },
                    Op::Reject(_) => Command::reject(Some("no")).unwrap(),
                    Op::Ship(_) => Command::ship(Some("1Z"), Some("UPS")).unwrap(),
                    _ => Command::CancelOrder { reason: None },
                };
                log.try_exec(id, &command, now);
            }
        }
    }
    (log, ids)
}

fn filters(ids: &[Uuid]) -> Vec<OrderFilter> {
    let mut texts: Vec<String> = [
        "sku",
        "SKU-1",
        "sku-10",
        "12",
        "kettle",
        "blue KETT",
        "creme",
        "brûlée",
        "x-y",
        "z",
        "7",
        "bob",
        "smith",
        "carol_x",
        "nothing",
        "\"(",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(id) = ids.first() {
        texts.push(id.to_string().to_uppercase());
        texts.push(id.to_string()[..8].to_string());
    }
    let mut all = vec![OrderFilter::default()];
    for text in texts {
        all.push(OrderFilter {
            text: Some(text),
            ..Default::default()
        });
    }
    for customer in CUSTOMERS {
        all.push(OrderFilter {
            customer_id: Some(customer.into()),
            ..Default::default()
        });
    }
    for status in OrderStatus::ALL {
        all.push(OrderFilter {
            status: Some(status),
            ..Default::default()
        });
    }
    for (from, to) in [
        (Some(1), Some(4)),
        (Some(3), None),
        (None, Some(2)),
        (Some(2), Some(2)),
    ] {
        all.push(OrderFilter {
            created_from: from.map(at),
            created_to: to.map(at),
            ..Default::default()
        });
    }
    all.push(OrderFilter {
        customer_id: Some("alice".into()),
        text: Some("kettle".into()),
        created_from: Some(at(1) + Duration::nanoseconds(1)),
        ..Default::default()
    });
    all
}

async fn compare(sqlite: &SqliteReadStore, es: &dyn ReadStore, log: &Log, ids: &[Uuid]) {
    for id in ids {
        assert_eq!(sqlite.get(*id).await.unwrap(), es.get(*id).await.unwrap());
        assert_eq!(
            es.get(*id).await.unwrap().map(|v| v.version),
            log.order(*id).map(|o| o.version)
        );
    }
    for filter in filters(ids) {
        assert_eq!(
            sqlite.stats(&filter).await.unwrap(),
            es.stats(&filter).await.unwrap(),
            "stats of {filter:?}"
        );
        for sort in [SortOrder::Asc, SortOrder::Desc] {
            for limit in [3, 200] {
                let mut cursor = None;
                loop {
                    let page = PageRequest {
                        limit,
                        sort,
                        cursor,
                    };
                    let a = sqlite.list(&filter, &page).await.unwrap();
                    let b = es.list(&filter, &page).await.unwrap();
                    assert_eq!(a, b, "{filter:?} {sort:?} limit {limit}");
                    match a.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn elasticsearch_answers_every_query_like_the_embedded_store(
        ops in prop::collection::vec(op(), 5..60),
        cuts in prop::collection::vec(1..12usize, 1..10),
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let (log, ids) = history(&ops);
            let path = std::env::temp_dir().join(format!("order-read-{}.db", Uuid::new_v4()));
            let sqlite = SqliteReadStore::open(&path).await.unwrap();
            sqlite.apply(&log.events, log.checkpoint()).await.unwrap();

            // Elasticsearch gets the log in random batches, each delivered twice
            // with the previous batch's tail: redelivery must change nothing.
            let es = support::open().await;
            let mut start = 0;
            let mut cut = cuts.iter().cycle();
            while start < log.events.len() {
                let end = (start + cut.next().unwrap()).min(log.events.len());
                let checkpoint = order_read_model::conformance::checkpoint_at(log.events[end - 1].global_position);
                es.apply(&log.events[start..end], checkpoint).await.unwrap();
                let again = start.saturating_sub(2);
                es.apply(&log.events[again..end], checkpoint).await.unwrap();
                start = end;
            }
            assert_eq!(es.checkpoint().await.unwrap(), sqlite.checkpoint().await.unwrap());
            compare(&sqlite, &*es, &log, &ids).await;
            let _ = std::fs::remove_file(&path);
        });
    }
}
