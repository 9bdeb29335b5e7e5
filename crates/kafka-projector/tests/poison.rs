//! Poison messages against the real servers: garbage bytes, an unknown schema id and a
//! version gap each land in `<topic>.dlq` with the original message and the `dlq-*`
//! headers, while later good messages of the same partition are applied; a later event of
//! an order with a dead-lettered gap is dead-lettered too; `replay` applies the letters
//! once the gap is filled and leaves the undecodable ones, reported.

mod support;

use order_event_store::RecordedEvent;
use order_kafka_projector::dlq::{self, DeadLetter};
use order_kafka_projector::replay::replay;
use order_read_model::ReadStore;
use order_read_model::conformance::{Log, at, item};
use order_relay::kafka::read_all_committed;
use std::time::Duration;
use support::Fixture;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn version(fixture: &Fixture, id: Uuid) -> Option<u64> {
    fixture.read.get(id).await.unwrap().map(|v| v.version)
}

fn events_of(log: &Log, id: Uuid) -> Vec<RecordedEvent> {
    log.events
        .iter()
        .filter(|e| e.stream_id == id)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_the_partition_flows_and_replay_fixes_gaps() {
    let fixture = Fixture::new().await;
    let mut log = Log::default();
    let (gappy, _) = log.create("c1", "USD", &[item("A", "Mug", 1, "1.00")], at(1));
    for n in 2..=4 {
        log.add(gappy, item(&format!("S-{n}"), "Kettle", 1, "2.00"), at(n));
    }
    let (good, _) = log.create("c2", "EUR", &[item("B", "Pot", 1, "3.00")], at(9));
    let gappy_events = events_of(&log, gappy);
    let good_events = events_of(&log, good);

    // Partition 0, in this order: v1, garbage, unknown schema id, v3 (gap: v2 missing),
    // v4 (after a dead-lettered gap), then a good order.
    fixture.produce_event(0, &gappy_events[0]).await;
    fixture
        .produce_raw(0, &gappy.to_string(), b"\x07not avro at all", None)
        .await;
    let mut unknown_id = fixture.message(&gappy_events[1]).value;
    unknown_id[1..5].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    fixture
        .produce_raw(0, &gappy.to_string(), &unknown_id, None)
        .await;
    fixture.produce_event(0, &gappy_events[2]).await;
    // Without the relay's headers: the list reads type and version from the value.
    let bare = fixture.message(&gappy_events[3]).value;
    fixture
        .produce_raw(0, &gappy.to_string(), &bare, None)
        .await;
    fixture.produce_event(0, &good_events[0]).await;

    let running = fixture.start(fixture.config());
    fixture
        .eventually(WAIT, "the good order after the poison", || async {
            version(&fixture, good).await == Some(1)
        })
        .await;
    let projector = running.projector.clone();
    fixture
        .eventually(WAIT, "four dead letters", || {
            let status = projector.health().status();
            async move { status.dead_lettered == 4 }
        })
        .await;
    assert_eq!(
        version(&fixture, gappy).await,
        Some(1),
        "nothing past the gap"
    );

    let letters = dlq::list(&fixture.config()).await.unwrap();
    let summary: Vec<(Option<i64>, Option<String>)> = letters
        .iter()
        .map(|l| (l.source_offset, l.stage.clone()))
        .collect();
    let stage = |s: &str| Some(s.to_string());
    assert_eq!(
        summary,
        [
            (Some(1), stage("decode")),
            (Some(2), stage("decode")),
            (Some(3), stage("apply")),
            (Some(4), stage("apply")),
        ]
    );
    for letter in &letters {
        assert_eq!(letter.source_topic.as_deref(), Some(fixture.topic.as_str()));
        assert_eq!(letter.source_partition, Some(0));
        assert_eq!(letter.key.as_deref(), Some(gappy.to_string().as_str()));
        let failed_at = letter.failed_at.as_deref().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(failed_at).is_ok(),
            "{failed_at}"
        );
    }
    let reason = |l: &DeadLetter| l.reason.clone().unwrap_or_default();
    assert!(
        reason(&letters[0]).contains("magic byte"),
        "{}",
        reason(&letters[0])
    );
    assert!(
        reason(&letters[1]).contains("unknown writer schema id"),
        "{}",
        reason(&letters[1])
    );
    assert!(
        reason(&letters[2]).contains("version gap"),
        "{}",
        reason(&letters[2])
    );
    assert!(
        reason(&letters[3]).contains("version 4"),
        "{}",
        reason(&letters[3])
    );
    assert_eq!(letters[2].version, Some(3));
    assert_eq!(
        (letters[0].event_type.as_ref(), letters[0].version),
        (None, None)
    );
    assert_eq!(letters[2].event_type.as_deref(), Some("ItemAdded"));
    assert_eq!(letters[3].event_type.as_deref(), Some("ItemAdded"));
    assert_eq!(letters[3].version, Some(4));
    // The original bytes and headers travel with the letter.
    let raw = read_all_committed(
        &order_kafka_projector::KafkaConnection::new(fixture.bootstrap.clone()),
        &dlq::dlq_topic(&fixture.topic),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(raw[0].value.as_deref(), Some(&b"\x07not avro at all"[..]));
    assert_eq!(raw[2].value, Some(fixture.message(&gappy_events[2]).value));
    assert_eq!(raw[2].header("test"), Some("yes"));

    // Nothing fixed yet: replay applies nothing and commits nothing past the first letter.
    let report = replay(&fixture.config(), &fixture.read).await.unwrap();
    assert_eq!(
        (report.examined, report.applied, report.still_failing.len()),
        (4, 0, 4)
    );
    assert_eq!(report.committed.get(&0), Some(&0));

    // The gap is filled (v2 arrives): the projector applies it; replay then applies v3 and
    // v4 and reports the undecodable two, still failing.
    fixture.produce_event(0, &gappy_events[1]).await;
    fixture
        .eventually(WAIT, "the missing event", || async {
            version(&fixture, gappy).await == Some(2)
        })
        .await;
    let report = replay(&fixture.config(), &fixture.read).await.unwrap();
    assert_eq!(report.applied, 2, "{report:?}");
    assert_eq!(report.still_failing.len(), 2, "{report:?}");
    assert_eq!(version(&fixture, gappy).await, Some(4));
    let view = fixture.read.get(gappy).await.unwrap().unwrap();
    let replayed = log
        .order(gappy)
        .map(|o| order_read_model::OrderView::from(&o));
    assert_eq!(Some(view), replayed);
    // Replaying again changes nothing: applied letters are obsolete now.
    let again = replay(&fixture.config(), &fixture.read).await.unwrap();
    assert_eq!((again.applied, again.obsolete), (0, 2), "{again:?}");
    running.stop().await;
    fixture.clean_up().await;
}

/// The schema of a newer producer: the contract plus an event type this code does not know.
fn future_schema() -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(order_messaging::schema::ORDER_EVENT_AVSC).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    let payload = fields.iter_mut().find(|f| f["name"] == "payload").unwrap();
    payload["type"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "type": "record",
            "name": "OrderArchived",
            "fields": [{ "name": "archivedBy", "type": "string" }]
        }));
    schema.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_type_this_code_does_not_know_is_dead_lettered_at_decode() {
    use apache_avro::types::Value;
    let fixture = Fixture::new().await;
    let text = future_schema();
    let registry = order_messaging::SchemaRegistryClient::new(&fixture.registry).unwrap();
    let subject = format!("{}-future-value", fixture.topic);
    let id = registry.register(&subject, &text).await.unwrap();
    let schema = apache_avro::Schema::parse_str(&text).unwrap();
    let order = Uuid::now_v7();
    let archived = Value::Record(vec![
        ("eventId".into(), Value::Uuid(Uuid::now_v7())),
        ("orderId".into(), Value::Uuid(order)),
        ("version".into(), Value::Long(2)),
        ("globalPosition".into(), Value::Long(7)),
        (
            "occurredAt".into(),
            Value::TimestampMicros(1_764_000_000_000_000),
        ),
        ("actor".into(), Value::String("future".into())),
        ("correlationId".into(), Value::String("c".into())),
        (
            "causationId".into(),
            Value::String(Uuid::new_v4().to_string()),
        ),
        (
            "payload".into(),
            Value::Union(
                7,
                Box::new(Value::Record(vec![(
                    "archivedBy".into(),
                    Value::String("ops".into()),
                )])),
            ),
        ),
    ]);
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(archived)
        .unwrap();
    fixture
        .produce_raw(
            1,
            &order.to_string(),
            &order_messaging::wire::frame(id, &body),
            None,
        )
        .await;
    let mut log = Log::default();
    let (good, events) = log.create("c", "USD", &[item("A", "Mug", 1, "1.00")], at(1));
    fixture.produce_event(1, &events[0]).await;

    let running = fixture.start(fixture.config());
    let projector = running.projector.clone();
    fixture
        .eventually(WAIT, "the dead letter and the good order", || {
            let status = projector.health().status();
            async move { status.dead_lettered == 1 && status.applied == 1 }
        })
        .await;
    assert_eq!(version(&fixture, good).await, Some(1));
    let letters = dlq::list(&fixture.config()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].stage.as_deref(), Some("decode"));
    assert_eq!(letters[0].source_partition, Some(1));
    assert_eq!(letters[0].dlq_partition, 1, "same partition number");
    assert!(
        letters[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("OrderArchived"),
        "{:?}",
        letters[0].reason
    );
    running.stop().await;
    let _ = registry.delete_subject(&subject).await;
    fixture.clean_up().await;
}
