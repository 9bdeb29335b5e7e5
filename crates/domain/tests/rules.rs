//! One test per rule of the transition table (DESIGN.md §3.1).

use chrono::{DateTime, TimeZone, Utc};
use order_domain::*;
use uuid::Uuid;

fn ctx() -> CommandContext {
    CommandContext {
        actor: "alice".into(),
        now: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
    }
}

fn line(sku: &str, qty: u32, price: i64) -> NewLine {
    NewLine {
        sku: sku.into(),
        product_name: format!("Product {sku}"),
        quantity: qty,
        unit_price: price,
    }
}

fn create(lines: Vec<NewLine>) -> Command {
    Command::CreateOrder {
        order_id: Uuid::from_u128(7),
        customer_id: "alice".into(),
        currency: Currency::parse("USD").unwrap(),
        lines,
    }
}

/// Runs commands from nothing, failing the test on any refusal.
fn order_after(commands: &[Command]) -> Order {
    let mut state = None;
    for c in commands {
        for e in decide(c, state.as_ref(), &ctx()).expect("command refused") {
            state = evolve(state, &e);
        }
    }
    state.expect("order exists")
}

fn approve() -> Command {
    Command::ApproveOrder { reason: None }
}
fn reject() -> Command {
    Command::RejectOrder {
        reason: "no stock".into(),
    }
}
fn ship() -> Command {
    Command::ShipOrder {
        tracking_number: "1Z".into(),
        carrier: "UPS".into(),
    }
}
fn cancel() -> Command {
    Command::CancelOrder { reason: None }
}
fn add(sku: &str) -> Command {
    Command::AddItem {
        line: line(sku, 1, 100),
    }
}
fn remove(sku: &str) -> Command {
    Command::RemoveItem { sku: sku.into() }
}

fn in_status(status: OrderStatus) -> Order {
    let base = create(vec![line("A", 1, 100), line("B", 2, 250)]);
    match status {
        OrderStatus::Created => order_after(&[base]),
        OrderStatus::Approved => order_after(&[base, approve()]),
        OrderStatus::Rejected => order_after(&[base, reject()]),
        OrderStatus::Shipped => order_after(&[base, approve(), ship()]),
        OrderStatus::Canceled => order_after(&[base, cancel()]),
    }
}

fn refusal(command: Command, order: &Order) -> DomainError {
    decide(&command, Some(order), &ctx()).expect_err("command accepted")
}

#[test]
fn create_starts_at_version_one_with_consistent_total() {
    let order = in_status(OrderStatus::Created);
    assert_eq!(order.version, 1);
    assert_eq!(order.status, OrderStatus::Created);
    assert_eq!(order.total, 100 + 2 * 250);
    assert_eq!(order.created_at, ctx().now);
}

#[test]
fn create_twice_is_refused() {
    let order = in_status(OrderStatus::Created);
    assert_eq!(
        refusal(create(vec![line("A", 1, 1)]), &order),
        DomainError::OrderAlreadyExists
    );
}

#[test]
fn commands_on_a_missing_order_are_refused() {
    assert_eq!(
        decide(&approve(), None, &ctx()),
        Err(DomainError::OrderNotFound)
    );
}

#[test]
fn created_accepts_items_approve_reject_cancel() {
    let o = in_status(OrderStatus::Created);
    assert!(decide(&add("C"), Some(&o), &ctx()).is_ok());
    assert!(decide(&remove("A"), Some(&o), &ctx()).is_ok());
    for (command, to) in [
        (approve(), OrderStatus::Approved),
        (reject(), OrderStatus::Rejected),
        (cancel(), OrderStatus::Canceled),
    ] {
        let events = decide(&command, Some(&o), &ctx()).unwrap();
        let next = events.iter().fold(Some(o.clone()), evolve).unwrap();
        assert_eq!(next.status, to);
        assert_eq!(next.version, 2);
    }
}

#[test]
fn created_cannot_be_shipped() {
    let o = in_status(OrderStatus::Created);
    assert_eq!(refusal(ship(), &o).code(), "invalid_status");
}

#[test]
fn approved_can_only_ship_or_cancel() {
    let o = in_status(OrderStatus::Approved);
    for c in [add("C"), remove("A"), approve(), reject()] {
        assert_eq!(refusal(c, &o).code(), "invalid_status");
    }
    assert!(decide(&ship(), Some(&o), &ctx()).is_ok());
    assert!(decide(&cancel(), Some(&o), &ctx()).is_ok());
}

#[test]
fn terminal_statuses_refuse_every_command() {
    for status in [
        OrderStatus::Shipped,
        OrderStatus::Rejected,
        OrderStatus::Canceled,
    ] {
        let o = in_status(status);
        for c in [add("C"), remove("A"), approve(), reject(), ship(), cancel()] {
            assert_eq!(
                refusal(c.clone(), &o),
                DomainError::InvalidStatus {
                    status,
                    command: c.name()
                }
            );
        }
    }
}

#[test]
fn removing_the_last_line_is_refused() {
    let o = order_after(&[create(vec![line("A", 1, 100)])]);
    assert_eq!(refusal(remove("A"), &o), DomainError::LastLine);
}

#[test]
fn removing_an_unknown_sku_is_not_found() {
    let o = in_status(OrderStatus::Created);
    assert_eq!(
        refusal(remove("ZZ"), &o),
        DomainError::SkuNotFound { sku: "ZZ".into() }
    );
}

#[test]
fn the_101st_line_is_refused_but_merging_into_a_full_order_is_not() {
    let lines = (0..100).map(|i| line(&format!("S{i}"), 1, 1)).collect();
    let o = order_after(&[create(lines)]);
    assert_eq!(refusal(add("NEW"), &o), DomainError::TooManyLines);
    let merge = Command::AddItem {
        line: line("S5", 3, 1),
    };
    let events = decide(&merge, Some(&o), &ctx()).unwrap();
    let next = events.iter().fold(Some(o), evolve).unwrap();
    assert_eq!(next.lines.len(), 100);
    assert_eq!(next.lines[5].quantity, 4);
    assert_eq!(next.total, 103);
}

#[test]
fn adding_an_existing_sku_merges_only_when_name_and_price_match() {
    let o = in_status(OrderStatus::Created);
    let same = Command::AddItem {
        line: line("B", 3, 250),
    };
    let next = decide(&same, Some(&o), &ctx())
        .unwrap()
        .iter()
        .fold(Some(o.clone()), evolve)
        .unwrap();
    assert_eq!(
        next.lines.iter().find(|l| l.sku == "B").unwrap().quantity,
        5
    );
    assert_eq!(next.total, 100 + 5 * 250);

    let other_price = Command::AddItem {
        line: line("B", 1, 999),
    };
    assert_eq!(
        refusal(other_price, &o),
        DomainError::SkuConflict { sku: "B".into() }
    );
    let mut renamed = line("B", 1, 250);
    renamed.product_name = "Something else".into();
    assert_eq!(
        refusal(Command::AddItem { line: renamed }, &o).code(),
        "sku_conflict"
    );
}

#[test]
fn merging_past_the_quantity_limit_is_refused() {
    let o = order_after(&[create(vec![line("A", 9_999, 1)])]);
    assert_eq!(
        refusal(
            Command::AddItem {
                line: line("A", 2, 1)
            },
            &o
        )
        .code(),
        "quantity_limit"
    );
}

#[test]
fn totals_that_overflow_are_refused_not_wrapped() {
    let huge = i64::MAX / 2;
    assert_eq!(
        decide(&create(vec![line("A", 3, huge)]), None, &ctx()),
        Err(DomainError::AmountOverflow)
    );
    let o = order_after(&[create(vec![line("A", 1, huge)])]);
    assert_eq!(
        refusal(
            Command::AddItem {
                line: line("B", 2, huge)
            },
            &o
        ),
        DomainError::AmountOverflow
    );
}

#[test]
fn events_record_actor_and_time_and_round_trip_through_storage() {
    let later: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let o = in_status(OrderStatus::Created);
    let events = decide(
        &ship(),
        Some(&in_status(OrderStatus::Approved)),
        &CommandContext {
            actor: "ops".into(),
            now: later,
        },
    )
    .unwrap();
    assert_eq!(events[0].actor, "ops");
    assert_eq!(events[0].occurred_at, later);
    for e in decide(&add("Z"), Some(&o), &ctx())
        .unwrap()
        .into_iter()
        .chain(events)
    {
        let stored = e.payload.data();
        let back = EventPayload::from_stored(
            e.payload.event_type(),
            EventPayload::SCHEMA_VERSION,
            &stored,
        )
        .unwrap();
        assert_eq!(back, e.payload);
    }
}
