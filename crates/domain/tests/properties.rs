//! Properties over random command sequences.

use chrono::{Duration, TimeZone, Utc};
use order_domain::*;
use proptest::prelude::*;
use uuid::Uuid;

fn arb_line() -> impl Strategy<Value = NewLine> {
    // Few SKUs and prices so merges and clashes happen often.
    (
        0..6u8,
        1..=3u32,
        prop_oneof![Just(100i64), Just(250), Just(i64::MAX / 3)],
    )
        .prop_map(|(sku, quantity, unit_price)| NewLine {
            sku: format!("SKU-{sku}"),
            product_name: format!("Product {sku}"),
            quantity,
            unit_price,
        })
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => arb_line().prop_map(|line| Command::AddItem { line }),
        2 => (0..6u8).prop_map(|s| Command::RemoveItem { sku: format!("SKU-{s}") }),
        1 => Just(Command::ApproveOrder { reason: None }),
        1 => Just(Command::RejectOrder { reason: "r".into() }),
        1 => Just(Command::ShipOrder { tracking_number: "t".into(), carrier: "c".into() }),
        1 => Just(Command::CancelOrder { reason: None }),
        1 => arb_line().prop_map(|l| Command::CreateOrder {
            order_id: Uuid::from_u128(1),
            customer_id: "c".into(),
            currency: Currency::parse("EUR").unwrap(),
            lines: vec![l],
        }),
    ]
}

proptest! {
    #[test]
    fn any_command_sequence_keeps_the_invariants(
        first in arb_line(),
        commands in prop::collection::vec(arb_command(), 0..60),
    ) {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let create = Command::CreateOrder {
            order_id: Uuid::from_u128(1),
            customer_id: "c".into(),
            currency: Currency::parse("EUR").unwrap(),
            lines: vec![first],
        };
        let mut state: Option<Order> = None;
        let mut history: Vec<Event> = Vec::new();
        for (i, command) in std::iter::once(&create).chain(&commands).enumerate() {
            let ctx = CommandContext { actor: "a".into(), now: start + Duration::seconds(i as i64) };
            let before = state.clone();
            match decide(command, state.as_ref(), &ctx) {
                Ok(events) => {
                    if let Some(b) = &before {
                        prop_assert!(!b.status.is_terminal(), "terminal order accepted {:?}", command);
                    }
                    for e in &events {
                        state = evolve(state, e);
                        history.push(e.clone());
                    }
                }
                Err(_) => prop_assert_eq!(&state, &before),
            }
            let order = state.as_ref().expect("created by the first command");
            // Versions are contiguous: one per event applied.
            prop_assert_eq!(order.version, history.len() as u64);
            // Totals are always consistent and never overflowed.
            let sum: i128 = order.lines.iter().map(|l| i128::from(l.unit_price) * i128::from(l.quantity)).sum();
            prop_assert_eq!(i128::from(order.total), sum);
            // Line rules hold.
            prop_assert!((1..=MAX_LINES).contains(&order.lines.len()));
            prop_assert!(order.lines.iter().all(|l| (1..=MAX_QUANTITY).contains(&l.quantity)));
            // Terminal states are never left.
            if before.as_ref().is_some_and(|b| b.status.is_terminal()) {
                prop_assert_eq!(order.status, before.as_ref().unwrap().status);
            }
        }
        // Replaying the history, also through storage, reproduces the state.
        prop_assert_eq!(replay(&history), state.clone());
        let stored: Vec<Event> = history.iter().map(|e| Event {
            payload: EventPayload::from_stored(e.payload.event_type(), EventPayload::SCHEMA_VERSION, &e.payload.data()).unwrap(),
            ..e.clone()
        }).collect();
        prop_assert_eq!(replay(&stored), state);
    }

    #[test]
    fn amounts_round_trip_exactly(minor in 0i64..=i64::MAX, code in prop::sample::select(vec!["USD", "JPY", "KWD"])) {
        let c = Currency::parse(code).unwrap();
        let text = c.format_amount(i128::from(minor));
        prop_assert_eq!(c.parse_amount(&text), Ok(minor));
    }

    #[test]
    fn amount_parsing_never_panics(text in ".{0,30}") {
        let _ = Currency::parse("USD").unwrap().parse_amount(&text);
    }
}
