//! Golden tests: the JSON layouts the domain stores, pinned.
//!
//! - `golden/events.v<N>.json`: the data of every event type as stored under
//!   schema version N. The current version's file must match what
//!   `EventPayload::data()` writes today; every older file must still decode,
//!   through the upcasters, to the very same events.
//! - `golden/order.json`: the serialized `Order` (snapshots, read-model
//!   documents) with the `Order::SCHEMA` that names it.
//!
//! A layout change without a new version/schema name fails here. After bumping
//! the name, regenerate with:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p order-domain --test golden
//! ```
//!
//! which writes the new pins and refuses to rewrite an existing one.

#[path = "support/golden.rs"]
mod golden;

use chrono::{DateTime, TimeZone, Utc};
use order_domain::{Currency, EventPayload, Line, Order, OrderStatus};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use uuid::Uuid;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn order_id() -> Uuid {
    Uuid::parse_str("0190f5a2-7c1e-7a3b-9d4e-5f6a7b8c9d0e").unwrap()
}

/// Sub-second digits pin how instants are written (microseconds, as stored).
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

/// One sample per event type, and both sides of every optional field.
fn sample_events() -> Vec<(&'static str, EventPayload)> {
    vec![
        (
            "OrderCreated",
            EventPayload::OrderCreated {
                order_id: order_id(),
                customer_id: "customer-42".into(),
                currency: usd(),
                lines: vec![
                    line("SKU-1", "Red kettle", 2, 1999),
                    line("SKU-2", "Tea towel", 1, 250),
                ],
            },
        ),
        (
            "ItemAdded",
            EventPayload::ItemAdded {
                line: line("SKU-3", "Milk jug", 3, 300),
                currency: usd(),
            },
        ),
        (
            "ItemRemoved",
            EventPayload::ItemRemoved {
                sku: "SKU-2".into(),
            },
        ),
        (
            "OrderApproved",
            EventPayload::OrderApproved {
                reason: Some("credit checked".into()),
            },
        ),
        (
            "OrderApproved/noReason",
            EventPayload::OrderApproved { reason: None },
        ),
        (
            "OrderRejected",
            EventPayload::OrderRejected {
                reason: "out of stock".into(),
            },
        ),
        (
            "OrderShipped",
            EventPayload::OrderShipped {
                tracking_number: "1Z999AA10123456784".into(),
                carrier: "UPS".into(),
            },
        ),
        (
            "OrderCanceled",
            EventPayload::OrderCanceled {
                reason: Some("customer asked".into()),
            },
        ),
        (
            "OrderCanceled/noReason",
            EventPayload::OrderCanceled { reason: None },
        ),
    ]
}

fn sample_order() -> Order {
    Order {
        id: order_id(),
        customer_id: "customer-42".into(),
        status: OrderStatus::Approved,
        currency: usd(),
        lines: vec![
            line("SKU-1", "Red kettle", 2, 1999),
            line("SKU-3", "Milk jug", 3, 300),
        ],
        total: 4898,
        version: 4,
        created_at: at(0, 123_456),
        updated_at: at(30, 0),
    }
}

fn events_file(version: u32) -> String {
    format!("events.v{version}.json")
}

/// Adding a variant to `EventPayload` breaks this match on purpose: give the
/// new type a sample above and its name in `EventPayload::TYPES`.
fn _a_new_event_type_needs_a_sample(event: &EventPayload) {
    match event {
        EventPayload::OrderCreated { .. }
        | EventPayload::ItemAdded { .. }
        | EventPayload::ItemRemoved { .. }
        | EventPayload::OrderApproved { .. }
        | EventPayload::OrderRejected { .. }
        | EventPayload::OrderShipped { .. }
        | EventPayload::OrderCanceled { .. } => {}
    }
}

#[test]
fn the_samples_cover_every_event_type() {
    let sampled: BTreeSet<&str> = sample_events()
        .iter()
        .map(|(_, e)| e.event_type())
        .collect();
    let known: BTreeSet<&str> = EventPayload::TYPES.into_iter().collect();
    assert_eq!(sampled, known);
    for (name, event) in sample_events() {
        assert_eq!(name.split('/').next(), Some(event.event_type()));
    }
}

#[test]
fn event_data_has_the_pinned_layout_of_its_schema_version_and_older_pins_still_read() {
    let samples: serde_json::Map<String, Value> = sample_events()
        .into_iter()
        .map(|(name, e)| {
            (
                name.to_string(),
                json!({ "type": e.event_type(), "data": e.data() }),
            )
        })
        .collect();
    golden::check_named_layout(
        &events_file(EventPayload::SCHEMA_VERSION),
        "EventPayload::SCHEMA_VERSION",
        &EventPayload::SCHEMA_VERSION.to_string(),
        "bump EventPayload::SCHEMA_VERSION and add an upcaster from the old version \
         to UPCASTERS (crates/domain/src/schema.rs)",
        Value::Object(samples),
    );
    // One test, not two: with UPDATE_GOLDEN=1 the pin above is written before
    // it is read back below.
    every_pinned_event_layout_still_reads_back_as_the_same_events();
}

/// Every `events.v<N>.json` still in the repository decodes at version N,
/// through the upcasters, to today's sample of the same name.
fn every_pinned_event_layout_still_reads_back_as_the_same_events() {
    let samples: Vec<(&str, EventPayload)> = sample_events();
    let mut checked = 0;
    for version in 0..=EventPayload::SCHEMA_VERSION {
        let Some(pinned) = golden::read(&golden::path(&events_file(version))) else {
            continue;
        };
        let pinned = pinned["samples"].as_object().expect("a samples object");
        for (name, entry) in pinned {
            let event_type = entry["type"].as_str().expect("a type");
            let decoded = EventPayload::from_stored(event_type, version, &entry["data"])
                .unwrap_or_else(|e| panic!("{name} of schema version {version}: {e}"));
            let expected = samples
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, e)| e)
                .unwrap_or_else(|| panic!("sample {name} pinned at v{version} is gone"));
            assert_eq!(&decoded, expected, "{name} of schema version {version}");
            checked += 1;
        }
    }
    // The current version's file exists (the test above pins it), so this read something.
    assert!(checked >= sample_events().len());
}

#[test]
fn the_order_state_has_the_pinned_layout_of_its_schema() {
    let order = sample_order();
    let json = serde_json::to_value(&order).unwrap();
    // The sample is a state the domain can hold: its total adds up.
    assert_eq!(
        order.total,
        order.lines.iter().map(Line::total).sum::<i64>()
    );
    assert_eq!(
        serde_json::from_value::<Order>(json.clone()).unwrap(),
        order
    );
    golden::check_named_layout(
        "order.json",
        "Order::SCHEMA",
        Order::SCHEMA,
        "change Order::SCHEMA (older snapshots are then ignored, read models rebuilt)",
        json!({ "approved": json }),
    );
}
