//! Loading an order: snapshots are trusted only in the current `Order` layout,
//! and events are read according to their stored schema version.

use chrono::{TimeZone, Utc};
use order_command_service::{CommandService, SNAPSHOT_SCHEMA};
use order_domain::{Command, CommandContext, EventPayload, LineInput, Order, decide, replay};
use order_event_store::{
    AppendRequest, CommandMetadata, NewEvent, Snapshot, SqliteEventStore, StoreError,
};
use std::sync::Arc;
use uuid::Uuid;

async fn service() -> CommandService {
    let path = std::env::temp_dir().join(format!("order-events-{}.db", Uuid::new_v4()));
    CommandService {
        store: Arc::new(SqliteEventStore::open(&path).await.unwrap()),
        on_append: Arc::new(|_| {}),
        snapshot_every: 0,
    }
}

/// Creates an order of customer "c" and approves it; returns its state.
async fn approved_order(service: &CommandService) -> Order {
    let id = Uuid::new_v4();
    let ctx = CommandContext {
        actor: "tester".into(),
        now: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
    };
    let item = LineInput {
        sku: Some("SKU-1".into()),
        product_name: Some("Kettle".into()),
        quantity: Some(1),
        unit_price: Some("9.99".into()),
    };
    let create = Command::create_order(id, "c", "USD", &[item]).unwrap();
    let mut events = decide(&create, None, &ctx).unwrap();
    let created = replay(&events).unwrap();
    let approve = Command::ApproveOrder { reason: None };
    events.extend(decide(&approve, Some(&created), &ctx).unwrap());
    service
        .store
        .append(AppendRequest {
            stream_id: id,
            expected_version: 0,
            events: events
                .iter()
                .map(|e| NewEvent::from_domain(e, Uuid::now_v7()))
                .collect(),
            metadata: CommandMetadata::default(),
            idempotency: None,
        })
        .await
        .unwrap();
    replay(&events).unwrap()
}

/// A snapshot at the order's current version whose state differs from the
/// events' in a way that shows whether it was used.
fn marked_snapshot(order: &Order, schema: &str) -> Snapshot {
    let mut marked = order.clone();
    marked.customer_id = "from-the-snapshot".into();
    Snapshot {
        stream_id: order.id,
        version: order.version,
        schema: schema.into(),
        state: serde_json::to_value(&marked).unwrap(),
    }
}

#[tokio::test]
async fn a_snapshot_in_the_current_order_layout_is_used() {
    let service = service().await;
    let order = approved_order(&service).await;
    let snapshot = marked_snapshot(&order, SNAPSHOT_SCHEMA);
    service.store.save_snapshot(&snapshot).await.unwrap();
    let loaded = service.load(order.id).await.unwrap().unwrap();
    assert_eq!(loaded.customer_id, "from-the-snapshot");
    assert_eq!(SNAPSHOT_SCHEMA, Order::SCHEMA);
}

#[tokio::test]
async fn a_snapshot_of_another_layout_is_ignored_for_the_events() {
    let service = service().await;
    let order = approved_order(&service).await;
    let snapshot = marked_snapshot(&order, "order/v0");
    service.store.save_snapshot(&snapshot).await.unwrap();
    assert_eq!(service.load(order.id).await.unwrap(), Some(order));
}

#[tokio::test]
async fn an_event_of_a_newer_schema_version_fails_the_load_by_name() {
    let service = service().await;
    let order = approved_order(&service).await;
    let ctx = CommandContext {
        actor: "tester".into(),
        now: Utc.with_ymd_and_hms(2026, 3, 1, 13, 0, 0).unwrap(),
    };
    let ship = Command::ShipOrder {
        tracking_number: "TRK".into(),
        carrier: "DHL".into(),
    };
    let shipped = decide(&ship, Some(&order), &ctx).unwrap();
    let mut newer = NewEvent::from_domain(&shipped[0], Uuid::now_v7());
    newer.schema_version = EventPayload::SCHEMA_VERSION + 1;
    let event_id = newer.event_id;
    service
        .store
        .append(AppendRequest {
            stream_id: order.id,
            expected_version: order.version,
            events: vec![newer],
            metadata: CommandMetadata::default(),
            idempotency: None,
        })
        .await
        .unwrap();
    match service.load(order.id).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(&event_id.to_string()), "{message}");
            assert!(message.contains("OrderShipped"), "{message}");
            let version = EventPayload::SCHEMA_VERSION + 1;
            assert!(
                message.contains(&format!("schema version {version}")),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
