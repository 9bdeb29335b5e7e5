//! What the messaging tests share: sample events of every type and currency, the repository's
//! schema files, and deliberately broken variants of the current schema.
#![allow(dead_code)] // each test binary uses a different part

use chrono::{DateTime, Utc};
use order_domain::{Currency, EventPayload, Line};
use order_messaging::OrderEventMessage;
use serde_json::Value as Json;
use std::path::PathBuf;
use uuid::Uuid;

pub fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

pub fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

pub fn line(sku: &str, quantity: u32, unit_price: i64) -> Line {
    Line {
        sku: sku.into(),
        product_name: format!("Product {sku}"),
        quantity,
        unit_price,
    }
}

/// One envelope around `payload`, numbered `n`.
pub fn message(order_id: Uuid, n: u64, payload: EventPayload) -> OrderEventMessage {
    OrderEventMessage {
        event_id: Uuid::now_v7(),
        order_id,
        version: n,
        global_position: 1000 + n as i64,
        // A whole number of microseconds, as the contract carries.
        occurred_at: DateTime::<Utc>::from_timestamp_micros(1_764_000_000_123_456 + n as i64)
            .unwrap(),
        actor: "0c5f1a52-0001-4000-8000-000000000001".into(),
        correlation_id: format!("req-{n}"),
        causation_id: Uuid::new_v4().to_string(),
        payload,
    }
}

/// Every event type at least once, with amounts in USD (2 decimals), JPY (0) and KWD (3),
/// including the largest amount a long holds (a consumer going through a double would lose it).
pub fn sample_messages() -> Vec<OrderEventMessage> {
    let usd = Uuid::now_v7();
    let jpy = Uuid::now_v7();
    let kwd = Uuid::now_v7();
    vec![
        message(
            usd,
            1,
            EventPayload::OrderCreated {
                order_id: usd,
                customer_id: "customer-1".into(),
                currency: currency("USD"),
                lines: vec![line("USD-1", 3, 1234), line("USD-MAX", 1, i64::MAX)],
            },
        ),
        message(
            usd,
            2,
            EventPayload::ItemAdded {
                line: line("USD-2", 2, 1),
                currency: currency("USD"),
            },
        ),
        message(
            usd,
            3,
            EventPayload::ItemRemoved {
                sku: "USD-MAX".into(),
            },
        ),
        message(usd, 4, EventPayload::OrderApproved { reason: None }),
        message(
            usd,
            5,
            EventPayload::OrderShipped {
                tracking_number: "1Z999AA10123456784".into(),
                carrier: "UPS".into(),
            },
        ),
        message(
            jpy,
            1,
            EventPayload::OrderCreated {
                order_id: jpy,
                customer_id: "customer-2".into(),
                currency: currency("JPY"),
                lines: vec![line("JPY-1", 10_000, 500)],
            },
        ),
        message(
            jpy,
            2,
            EventPayload::OrderApproved {
                reason: Some("known customer — 承認".into()),
            },
        ),
        message(
            jpy,
            3,
            EventPayload::OrderCanceled {
                reason: Some("customer asked".into()),
            },
        ),
        message(
            kwd,
            1,
            EventPayload::OrderCreated {
                order_id: kwd,
                customer_id: "customer-3".into(),
                currency: currency("KWD"),
                lines: vec![line("KWD-1", 1, 1234)],
            },
        ),
        message(
            kwd,
            2,
            EventPayload::ItemAdded {
                line: line("KWD-2", 7, 1),
                currency: currency("KWD"),
            },
        ),
        message(
            kwd,
            3,
            EventPayload::OrderRejected {
                reason: "credit check failed".into(),
            },
        ),
        message(kwd, 4, EventPayload::OrderCanceled { reason: None }),
    ]
}

/// The current schema as JSON, to derive variants from.
pub fn current_json() -> Json {
    serde_json::from_str(order_messaging::schema::ORDER_EVENT_AVSC).unwrap()
}

/// The record of payload branch `name` in a schema's JSON.
pub fn payload_record<'a>(schema: &'a mut Json, name: &str) -> &'a mut Json {
    let payload = schema["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "payload")
        .unwrap();
    payload["type"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == name)
        .unwrap()
}

/// Broken: `OrderShipped.carrier` (no default) removed. Old consumers can no longer read
/// `OrderShipped` (forward incompatible).
pub fn with_field_removed() -> String {
    let mut schema = current_json();
    let shipped = payload_record(&mut schema, "OrderShipped");
    shipped["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "carrier");
    schema.to_string()
}

/// Broken: `OrderLine.unitPriceMinor` changed from long to string (incompatible both ways).
pub fn with_type_changed() -> String {
    let mut schema = current_json();
    let created = payload_record(&mut schema, "OrderCreated");
    let line_fields = created["fields"][3]["type"]["items"]["fields"]
        .as_array_mut()
        .unwrap();
    let price = line_fields
        .iter_mut()
        .find(|f| f["name"] == "unitPriceMinor")
        .unwrap();
    price["type"] = Json::from("string");
    schema.to_string()
}

/// Broken: a field without default added to `ItemRemoved` (new readers cannot read old data).
pub fn with_required_field_added() -> String {
    let mut schema = current_json();
    let removed = payload_record(&mut schema, "ItemRemoved");
    removed["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "removedBy", "type": "string"}));
    schema.to_string()
}

/// Compatible: an optional field with a default added to `OrderShipped`.
pub fn with_optional_field_added() -> String {
    let mut schema = current_json();
    let shipped = payload_record(&mut schema, "OrderShipped");
    shipped["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "trackingUrl", "type": ["null", "string"], "default": null
        }));
    schema.to_string()
}
