//! `verify` finds every way the index can disagree with a replay of the log.

mod support;

use order_domain::Command;
use order_event_store::SqliteEventStore;
use order_event_store::{AppendRequest, CommandMetadata, EventStore, NewEvent, RecordedEvent};
use order_read_model::ReadStore;
use order_read_model::conformance::{Log, at, checkpoint_at, item};
use uuid::Uuid;

/// Appends `events` (one order's, in version order) to `store` as one command.
async fn append(store: &SqliteEventStore, events: &[RecordedEvent]) {
    store
        .append(AppendRequest {
            stream_id: events[0].stream_id,
            expected_version: events[0].version - 1,
            events: events
                .iter()
                .map(|e| NewEvent {
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    data: e.data.clone(),
                    occurred_at: e.occurred_at,
                    actor: e.actor.clone(),
                })
                .collect(),
            metadata: CommandMetadata::default(),
            idempotency: None,
        })
        .await
        .expect("append");
}

#[tokio::test]
async fn verify_reports_missing_stale_and_duplicated_orders() {
    let path = std::env::temp_dir().join(format!("order-events-{}.db", Uuid::new_v4()));
    let store = SqliteEventStore::open(&path).await.unwrap();
    let mut log = Log::default();
    let lines = [item("SKU-1", "Blue mug", 1, "9.99")];
    let (full, mut full_events) = log.create("c1", "USD", &lines, at(0));
    full_events.extend(log.exec(full, Command::ApproveOrder { reason: None }, at(1)));
    let (absent, absent_events) = log.create("c2", "USD", &lines, at(2));
    let (behind, behind_first) = log.create("c3", "EUR", &lines, at(3));
    let behind_rest = log.add(behind, item("SKU-2", "Tea", 2, "3.50"), at(4));
    for events in [&full_events, &absent_events, &behind_first, &behind_rest] {
        append(&store, events).await;
    }
    let mut elsewhere = Log::default();
    let (stray, stray_events) = elsewhere.create("c4", "USD", &lines, at(5));

    let es = support::open().await;
    for events in [&full_events, &behind_first, &stray_events] {
        es.apply(events, checkpoint_at(0)).await.unwrap();
    }
    let differences = es.verify(&store).await.unwrap();
    assert_eq!(differences.orders, 3);
    assert_eq!(differences.documents, 3);
    assert_eq!(differences.missing, vec![absent]);
    assert_eq!(differences.stale, vec![behind]);
    assert_eq!(differences.duplicated, vec![stray]);
    assert!(
        differences
            .to_string()
            .starts_with("missing=1 stale=1 duplicated=1"),
        "{differences}"
    );

    es.apply(&absent_events, checkpoint_at(0)).await.unwrap();
    es.apply(&behind_rest, checkpoint_at(0)).await.unwrap();
    let differences = es.verify(&store).await.unwrap();
    assert_eq!(
        differences.to_string().lines().next(),
        Some("missing=0 stale=0 duplicated=1")
    );
    let _ = std::fs::remove_file(&path);
}
