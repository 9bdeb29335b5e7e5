//! The upcaster chain: stored data of older layouts is rewritten to the current
//! one before it is decoded; anything the chain cannot read is a typed error.
//!
//! Layout 1 is the only one ever stored, so the production chain is empty. The
//! chain itself is exercised with a registry built here: it pretends today's
//! layout is version 3 and that two older layouts were stored before it:
//!
//! - v1 → v2: `OrderShipped` kept the tracking number under `tracking`;
//! - v2 → v3: `ItemAdded` kept the currency under `currencyCode`.
//!
//! Its "v3" is today's layout of those two types: when one of them really
//! changes, change these fixtures with it.

use order_domain::{Currency, DecodeError, EventPayload, EventSchema, Line, Upcaster};
use serde_json::{Value, json};

fn rename(data: Value, from: &str, to: &str) -> Result<Value, String> {
    let Value::Object(mut map) = data else {
        return Err("data is not an object".into());
    };
    let value = map
        .remove(from)
        .ok_or_else(|| format!("no `{from}` field"))?;
    map.insert(to.into(), value);
    Ok(Value::Object(map))
}

fn v1_to_v2(event_type: &str, data: Value) -> Result<Value, String> {
    match event_type {
        "OrderShipped" => rename(data, "tracking", "trackingNumber"),
        _ => Ok(data),
    }
}

fn v2_to_v3(event_type: &str, data: Value) -> Result<Value, String> {
    match event_type {
        "ItemAdded" => rename(data, "currencyCode", "currency"),
        _ => Ok(data),
    }
}

const LEGACY: EventSchema<'static> = EventSchema {
    current: 3,
    upcasters: &[
        Upcaster {
            from: 1,
            upcast: v1_to_v2,
        },
        Upcaster {
            from: 2,
            upcast: v2_to_v3,
        },
    ],
};

fn shipped() -> EventPayload {
    EventPayload::OrderShipped {
        tracking_number: "TRK-1".into(),
        carrier: "DHL".into(),
    }
}

fn added() -> EventPayload {
    EventPayload::ItemAdded {
        line: Line {
            sku: "SKU-1".into(),
            product_name: "Kettle".into(),
            quantity: 2,
            unit_price: 1999,
        },
        currency: Currency::parse("USD").unwrap(),
    }
}

fn added_v2() -> Value {
    json!({
        "line": {"sku": "SKU-1", "productName": "Kettle", "quantity": 2, "unitPrice": 1999},
        "currencyCode": "USD"
    })
}

#[test]
fn the_test_chain_and_the_production_chain_are_well_formed() {
    assert_eq!(LEGACY.check(), Ok(()));
    assert_eq!(EventSchema::CURRENT.check(), Ok(()));
    assert_eq!(EventSchema::CURRENT.current, EventPayload::SCHEMA_VERSION);
}

#[test]
fn a_chain_with_a_gap_or_short_of_the_current_version_is_refused() {
    let gap = EventSchema {
        current: 3,
        upcasters: &[
            Upcaster {
                from: 0,
                upcast: v1_to_v2,
            },
            Upcaster {
                from: 2,
                upcast: v2_to_v3,
            },
        ],
    };
    assert!(
        gap.check()
            .unwrap_err()
            .contains("from v0 is followed by one from v2")
    );
    let short = EventSchema {
        current: 4,
        upcasters: LEGACY.upcasters,
    };
    assert!(short.check().unwrap_err().contains("current version is 4"));
}

#[test]
fn the_oldest_layout_passes_through_every_step() {
    let v1 = json!({"tracking": "TRK-1", "carrier": "DHL"});
    assert_eq!(LEGACY.decode("OrderShipped", 1, &v1), Ok(shipped()));
    // Each step sees every type and changes only its own: ItemAdded's v1 layout
    // was its v2 layout, so it goes through step 1 untouched and step 2 renamed.
    assert_eq!(LEGACY.decode("ItemAdded", 1, &added_v2()), Ok(added()));
}

#[test]
fn a_middle_layout_passes_through_the_remaining_steps_only() {
    assert_eq!(LEGACY.decode("ItemAdded", 2, &added_v2()), Ok(added()));
    let v2 = json!({"trackingNumber": "TRK-1", "carrier": "DHL"});
    assert_eq!(LEGACY.decode("OrderShipped", 2, &v2), Ok(shipped()));
}

#[test]
fn the_current_layout_is_decoded_directly() {
    let current = shipped().data();
    assert_eq!(LEGACY.decode("OrderShipped", 3, &current), Ok(shipped()));
    assert_eq!(
        LEGACY.upcast("OrderShipped", 3, current.clone()),
        Ok(current)
    );
}

#[test]
fn data_whose_layout_does_not_match_its_version_is_an_error_not_a_default() {
    // An old layout labelled as current: the unknown field is not guessed at.
    let old = json!({"tracking": "TRK-1", "carrier": "DHL"});
    assert!(matches!(
        LEGACY.decode("OrderShipped", 3, &old),
        Err(DecodeError::Malformed { version: 3, .. })
    ));
    // A current layout labelled as old: the step says what it missed.
    let current = shipped().data();
    let err = LEGACY.decode("OrderShipped", 1, &current).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Upcast { version: 1, reason, .. } if reason.contains("tracking")),
        "{err:?}"
    );
}

#[test]
fn a_newer_version_than_the_code_reads_is_refused_by_name() {
    let err = LEGACY
        .decode("OrderShipped", 4, &shipped().data())
        .unwrap_err();
    assert_eq!(
        err,
        DecodeError::FutureVersion {
            event_type: "OrderShipped".into(),
            version: 4,
            current: 3
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("OrderShipped") && text.contains('4'),
        "{text}"
    );
}

#[test]
fn a_version_older_than_every_upcaster_is_refused() {
    assert_eq!(
        LEGACY.decode("OrderShipped", 0, &shipped().data()),
        Err(DecodeError::NoUpcaster {
            event_type: "OrderShipped".into(),
            version: 0
        })
    );
}

#[test]
fn an_unknown_type_is_refused_whatever_its_version() {
    for version in [1, 3, 7] {
        assert_eq!(
            LEGACY.decode("OrderGiftWrapped", version, &json!({})),
            Err(DecodeError::UnknownType {
                event_type: "OrderGiftWrapped".into()
            })
        );
    }
}

#[test]
fn the_production_decoder_reads_the_current_version_and_refuses_the_others() {
    let data = shipped().data();
    let current = EventPayload::SCHEMA_VERSION;
    assert_eq!(
        EventPayload::from_stored("OrderShipped", current, &data),
        Ok(shipped())
    );
    assert!(matches!(
        EventPayload::from_stored("OrderShipped", current + 1, &data),
        Err(DecodeError::FutureVersion { .. })
    ));
    assert!(matches!(
        EventPayload::from_stored("OrderShipped", 0, &data),
        Err(DecodeError::NoUpcaster { version: 0, .. })
    ));
    assert!(matches!(
        EventPayload::from_stored("OrderShipped", current, &json!({"carrier": 5})),
        Err(DecodeError::Malformed { .. })
    ));
}
