//! The Kafka projector's path into Elasticsearch: strict apply (gaps refused, with every
//! later event of the order), progress documents that only move forward, and a meta
//! index made by older code getting the new fields on open.

mod support;

use order_read_model::ReadStore;
use order_read_model::conformance::{Log, at, item};
use order_read_model_es::{PartitionProgress, StreamOutcome};
use serde_json::json;

#[tokio::test]
async fn a_gap_is_refused_with_every_later_event_of_its_order_and_redelivery_is_a_no_op() {
    let store = support::open().await;
    let mut log = Log::default();
    let (a, _) = log.create("c", "USD", &[item("A", "Mug", 1, "1.00")], at(1));
    for n in 2..=4 {
        log.add(a, item(&format!("S{n}"), "Pot", 1, "2.00"), at(n));
    }
    let (b, _) = log.create("d", "EUR", &[item("B", "Cup", 1, "3.00")], at(9));
    let e = &log.events;
    // a: v1, v3 (gap), v4 (after the gap); b: v1.
    let outcomes = store
        .apply_stream(&[e[0].clone(), e[2].clone(), e[3].clone(), e[4].clone()])
        .await
        .unwrap();
    assert_eq!(outcomes[0], StreamOutcome::Applied);
    assert!(matches!(&outcomes[1], StreamOutcome::Refused(r) if r.contains("version gap")));
    assert!(matches!(&outcomes[2], StreamOutcome::Refused(r) if r.contains("was refused")));
    assert_eq!(outcomes[3], StreamOutcome::Applied);
    assert_eq!(store.get(a).await.unwrap().unwrap().version, 1);
    assert_eq!(store.get(b).await.unwrap().unwrap().version, 1);
    // The missing event, then the rest again: applied in order; repeats are no-ops.
    let outcomes = store.apply_stream(&e[..4]).await.unwrap();
    assert_eq!(
        outcomes,
        [
            StreamOutcome::AlreadyApplied,
            StreamOutcome::Applied,
            StreamOutcome::Applied,
            StreamOutcome::Applied
        ]
    );
    let view = store.get(a).await.unwrap().unwrap();
    assert_eq!(
        Some(view),
        log.order(a).map(|o| order_read_model::OrderView::from(&o))
    );
    // No log checkpoint was touched.
    assert_eq!(store.checkpoint().await.unwrap().cursor.position, 0);
}

#[tokio::test]
async fn progress_only_moves_forward() {
    let store = support::open().await;
    let at = |offset, global_position| PartitionProgress {
        offset,
        global_position,
    };
    store.store_progress("t", 0, at(10, 100)).await.unwrap();
    store.store_progress("t", 0, at(4, 40)).await.unwrap();
    store.store_progress("t", 1, at(2, 7)).await.unwrap();
    let progress = store.progress("t", &[0, 1, 2]).await.unwrap();
    assert_eq!(progress.get(&0), Some(&at(10, 100)));
    assert_eq!(progress.get(&1), Some(&at(2, 7)));
    assert_eq!(progress.get(&2), None);
}

#[tokio::test]
async fn a_meta_index_of_older_code_gets_the_progress_fields() {
    let config = support::config();
    // The meta index as the code before the Kafka projector created it.
    let http = reqwest::Client::new();
    let meta = format!("{}/{}orders_meta", config.url, config.prefix);
    http.put(&meta)
        .json(&json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "dynamic": "strict", "properties": {
                "position": { "type": "long" },
                "covered": { "type": "long" },
                "storeId": { "type": "keyword" }
            } }
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let store = support::open_with(config).await;
    store
        .store_progress(
            "t",
            3,
            PartitionProgress {
                offset: 1,
                global_position: 2,
            },
        )
        .await
        .expect("the strict mapping now has the progress fields");
}

#[tokio::test]
async fn an_event_that_cannot_start_its_order_is_refused() {
    let store = support::open().await;
    let mut log = Log::default();
    let (a, _) = log.create("c", "USD", &[item("A", "Mug", 1, "1.00")], at(1));
    log.add(a, item("B", "Pot", 1, "2.00"), at(2));
    // Version 2 of the order, posing as its first event: an ItemAdded.
    let mut first = log.events[1].clone();
    first.version = 1;
    let outcomes = store.apply_stream(&[first]).await.unwrap();
    assert!(
        matches!(&outcomes[0], StreamOutcome::Refused(_)),
        "{outcomes:?}"
    );
    assert_eq!(store.get(a).await.unwrap(), None);
}
