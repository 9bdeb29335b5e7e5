//! Golden test: the JSON layout of `OrderView`, the body of every order
//! response (and of the idempotency records that replay them), pinned in
//! `golden/order-view.json` with the `OrderView::SCHEMA` that names it.
//!
//! Changing the body without changing `OrderView::SCHEMA` fails here. After
//! changing the name, regenerate with:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p order-read-model --test golden
//! ```

#[path = "../../domain/tests/support/golden.rs"]
mod golden;

use chrono::{DateTime, TimeZone, Utc};
use order_domain::{Currency, Line, Order, OrderStatus};
use order_read_model::OrderView;
use serde_json::json;
use uuid::Uuid;

fn at(secs: u32, micros: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, secs).unwrap()
        + chrono::Duration::microseconds(i64::from(micros))
}

fn line(sku: &str, name: &str, quantity: u32, unit_price: i64) -> Line {
    Line {
        sku: sku.into(),
        product_name: name.into(),
        quantity,
        unit_price,
    }
}

fn order(currency: &str, status: OrderStatus, lines: Vec<Line>) -> Order {
    let total = lines.iter().map(Line::total).sum();
    Order {
        id: Uuid::parse_str("0190f5a2-7c1e-7a3b-9d4e-5f6a7b8c9d0e").unwrap(),
        customer_id: "customer-42".into(),
        status,
        currency: Currency::parse(currency).unwrap(),
        lines,
        total,
        version: 3,
        created_at: at(0, 123_456),
        updated_at: at(30, 0),
    }
}

#[test]
fn the_order_body_has_the_pinned_layout_of_its_schema() {
    // Currencies of every exponent: amounts are decimal strings with exactly
    // the currency's fraction digits.
    let usd = order(
        "USD",
        OrderStatus::Approved,
        vec![
            line("SKU-1", "Red kettle", 2, 1999),
            line("SKU-3", "Milk jug", 3, 300),
        ],
    );
    let jpy = order(
        "JPY",
        OrderStatus::Created,
        vec![line("SKU-9", "Teapot", 1, 1200)],
    );
    let kwd = order(
        "KWD",
        OrderStatus::Canceled,
        vec![line("SKU-7", "Dates", 4, 1005)],
    );
    let samples = json!({
        "usd": OrderView::from(&usd),
        "jpy": OrderView::from(&jpy),
        "kwd": OrderView::from(&kwd),
    });
    golden::check_named_layout(
        "order-view.json",
        "OrderView::SCHEMA",
        OrderView::SCHEMA,
        "this is the API's order body: change OrderView::SCHEMA and tell API clients",
        samples,
    );
}
