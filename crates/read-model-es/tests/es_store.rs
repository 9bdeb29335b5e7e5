//! What only the Elasticsearch store has to show: racing writers, a checkpoint
//! that never moves back, item errors that fail the batch, and an index of
//! another layout replaced on open.

mod support;

use order_domain::Command;
use order_read_model::conformance::{Log, at, checkpoint_at, item};
use order_read_model::{OrderFilter, OrderView, ReadError, ReadStore};
use order_read_model_es::EsReadStore;
use serde_json::json;

/// Several orders with several events each.
fn log() -> (Log, Vec<uuid::Uuid>) {
    let mut log = Log::default();
    let mut ids = Vec::new();
    for n in 0..10 {
        let (id, _) = log.create("c", "EUR", &[item("A-1", "Apple", 1, "1.10")], at(n));
        log.add(id, item(&format!("B-{n}"), "Pear", 2, "0.45"), at(n + 20));
        if n % 2 == 0 {
            log.exec(id, Command::ApproveOrder { reason: None }, at(n + 40));
        } else {
            log.exec(id, Command::CancelOrder { reason: None }, at(n + 40));
        }
        ids.push(id);
    }
    (log, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_in_any_order_end_at_the_replay() {
    let es = support::open().await;
    let (log, ids) = log();
    // Four writers (separate store handles, as separate processes would be) deliver
    // the log concurrently: in order, reversed, in overlapping chunks, one by one.
    let mut writers = Vec::new();
    for w in 0..4 {
        let config = es.config.clone();
        let events = log.events.clone();
        writers.push(tokio::spawn(async move {
            let store = EsReadStore::open(config).await.unwrap();
            let cp = checkpoint_at(events.last().unwrap().global_position);
            match w {
                0 => store.apply(&events, cp).await.unwrap(),
                1 => {
                    let mut reversed = events.clone();
                    reversed.reverse();
                    store.apply(&reversed, cp).await.unwrap();
                    store.apply(&events, cp).await.unwrap();
                }
                2 => {
                    for chunk in events.chunks(7) {
                        store.apply(chunk, cp).await.unwrap();
                    }
                }
                _ => {
                    for event in &events {
                        store.apply(std::slice::from_ref(event), cp).await.unwrap();
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for id in &ids {
        assert_eq!(
            es.get(*id).await.unwrap().unwrap(),
            OrderView::from(&log.order(*id).unwrap())
        );
    }
    let stats = es.stats(&OrderFilter::default()).await.unwrap();
    assert_eq!(stats.by_currency["EUR"].order_count, 10);
    // Five approved orders of 1.10 + 2 × 0.45 each; the canceled ones count nothing.
    assert_eq!(stats.by_currency["EUR"].total_amount, "10.00");
}

#[tokio::test]
async fn the_checkpoint_never_moves_back() {
    let es = support::open().await;
    let (log, _) = log();
    es.apply(&log.events, log.checkpoint()).await.unwrap();
    // A late redelivery of an early batch, with its older checkpoint.
    es.apply(&log.events[..3], checkpoint_at(3)).await.unwrap();
    assert_eq!(es.checkpoint().await.unwrap(), log.checkpoint());
}

#[tokio::test]
async fn an_item_elasticsearch_refuses_fails_the_batch_and_keeps_the_checkpoint() {
    let es = support::open().await;
    let mut log = Log::default();
    let (ok, _) = log.create("c", "USD", &[item("A", "Apple", 1, "1")], at(0));
    es.apply(&log.events, log.checkpoint()).await.unwrap();
    let applied = log.checkpoint();
    // `createdAt` is `date_nanos`, which cannot hold 1966: that document is refused.
    let before = log.events.len();
    log.create(
        "c",
        "USD",
        &[item("B", "Banana", 1, "1")],
        at(-1_800_000_000),
    );
    let err = es
        .apply(&log.events[before..], log.checkpoint())
        .await
        .unwrap_err();
    assert!(matches!(err, ReadError::Unavailable(_)), "{err:?}");
    assert_eq!(es.checkpoint().await.unwrap(), applied);
    assert!(es.get(ok).await.unwrap().is_some());
}

#[tokio::test]
async fn an_index_of_another_layout_is_replaced_on_open() {
    let es = support::open().await;
    let (log, ids) = log();
    es.apply(&log.events, log.checkpoint()).await.unwrap();
    let index = es.current_index().await.unwrap().unwrap();
    // Pretend the index was written by code with another document layout.
    let http = reqwest::Client::new();
    let answer = http
        .put(format!("{}/{index}/_mapping", es.config.url))
        .json(&json!({ "_meta": { "layout": "orders-es/v0" } }))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());

    let reopened = EsReadStore::open(es.config.clone()).await.unwrap();
    let now = reopened.current_index().await.unwrap().unwrap();
    assert_ne!(now, index);
    assert_eq!(reopened.get(ids[0]).await.unwrap(), None);
    assert_eq!(reopened.checkpoint().await.unwrap(), Default::default());
    // And it projects again from scratch.
    reopened.apply(&log.events, log.checkpoint()).await.unwrap();
    assert!(reopened.get(ids[0]).await.unwrap().is_some());
}
