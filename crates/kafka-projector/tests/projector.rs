//! The Kafka projector against the real Kafka, registry and Elasticsearch: what the relay
//! publishes lands in Elasticsearch as the embedded read model has it; a consumer killed
//! mid-stream and restarted neither loses nor double-applies; offsets are committed only
//! after Elasticsearch acknowledged; a document's version only moves forward.

mod support;

use order_domain::Command;
use order_kafka_projector::health::{committed_offsets, measure_lag};
use order_kafka_projector::{Dependency, dlq};
use order_read_model::conformance::{Log, at, item};
use order_read_model::{OrderFilter, PageRequest, ReadStore, SortOrder, SqliteReadStore};
use std::time::Duration;
use support::Fixture;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// Orders over several customers and currencies, each with a few events.
fn history(orders: usize) -> (Log, Vec<Uuid>) {
    let mut log = Log::default();
    let mut ids = Vec::new();
    let currencies = ["USD", "EUR", "JPY"];
    for n in 0..orders {
        let currency = currencies[n % 3];
        let price = if currency == "JPY" { "120" } else { "1.25" };
        let (id, _) = log.create(
            &format!("customer-{}", n % 4),
            currency,
            &[item("A-1", "Blue mug", 1, price)],
            at(n as i64),
        );
        log.add(
            id,
            item(&format!("B-{n}"), "Red kettle", 2, price),
            at(n as i64 + 50),
        );
        match n % 4 {
            0 => {
                log.exec(
                    id,
                    Command::ApproveOrder { reason: None },
                    at(n as i64 + 90),
                );
            }
            1 => {
                log.exec(id, Command::CancelOrder { reason: None }, at(n as i64 + 90));
            }
            2 => {
                log.exec(id, Command::reject(Some("no")).unwrap(), at(n as i64 + 90));
            }
            _ => {}
        }
        ids.push(id);
    }
    (log, ids)
}

/// True once every order in `ids` is stored at the version of its replay.
async fn caught_up(read: &dyn ReadStore, log: &Log, ids: &[Uuid]) -> bool {
    for id in ids {
        let want = log.order(*id).map(|o| o.version);
        let got = read.get(*id).await.ok().flatten().map(|v| v.version);
        if want != got {
            return false;
        }
    }
    true
}

async fn all_pages(store: &dyn ReadStore) -> Vec<order_read_model::OrderView> {
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(
                &OrderFilter::default(),
                &PageRequest {
                    limit: 7,
                    sort: SortOrder::Desc,
                    cursor,
                },
            )
            .await
            .unwrap();
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_relay_publishes_lands_as_the_embedded_read_model_has_it() {
    let mut fixture = Fixture::new().await;
    let (log, ids) = history(24);
    fixture.publish(&log.events, 13).await;
    let running = fixture.start(fixture.config());
    let read = fixture.read.clone();
    fixture
        .eventually(WAIT, "every order projected", || {
            caught_up(read.as_ref(), &log, &ids)
        })
        .await;

    let dir = std::env::temp_dir().join(format!("kp-embedded-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let embedded = SqliteReadStore::open(&dir.join("read.db")).await.unwrap();
    embedded.apply(&log.events, log.checkpoint()).await.unwrap();
    for id in &ids {
        assert_eq!(
            fixture.read.get(*id).await.unwrap(),
            embedded.get(*id).await.unwrap()
        );
    }
    assert_eq!(
        all_pages(fixture.read.as_ref()).await,
        all_pages(&embedded).await
    );
    for filter in [
        OrderFilter::default(),
        OrderFilter {
            customer_id: Some("customer-1".into()),
            ..OrderFilter::default()
        },
        OrderFilter {
            text: Some("kettle".into()),
            ..OrderFilter::default()
        },
    ] {
        assert_eq!(
            fixture.read.stats(&filter).await.unwrap(),
            embedded.stats(&filter).await.unwrap()
        );
    }
    // Nothing poison in what the relay publishes, and every offset committed.
    assert!(dlq::list(&fixture.config()).await.unwrap().is_empty());
    // Offsets are committed right after the documents: the lag reaches 0.
    fixture
        .eventually(WAIT, "no lag left", || async {
            let config = fixture.config();
            let behind = tokio::task::spawn_blocking(move || measure_lag(&config)).await;
            matches!(behind, Ok(Ok(b)) if b.values().sum::<i64>() == 0)
        })
        .await;
    // Progress is recorded per partition, up to the highest position applied.
    let progress = fixture
        .read
        .progress(&fixture.topic, &[0, 1, 2])
        .await
        .unwrap();
    let highest = progress.values().map(|p| p.global_position).max();
    assert_eq!(highest, Some(log.position));
    running.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    fixture.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_stream_and_restarted_neither_loses_nor_double_applies() {
    let mut fixture = Fixture::new().await;
    let (log, ids) = history(60);
    let mut config = fixture.config();
    config.batch_size = 7; // many small batches: kills land between and inside them
    let events = log.events.clone();
    let (first, rest) = events.split_at(events.len() / 2);
    fixture.publish(first, 10).await;
    for kill_after_ms in [150u64, 400, 50] {
        let running = fixture.start(config.clone());
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        running.kill().await;
    }
    fixture.publish(rest, 10).await;
    let running = fixture.start(config.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.kill().await;
    let running = fixture.start(config.clone());
    let read = fixture.read.clone();
    fixture
        .eventually(WAIT, "every order projected after the kills", || {
            caught_up(read.as_ref(), &log, &ids)
        })
        .await;
    for id in &ids {
        let want = log
            .order(*id)
            .map(|o| order_read_model::OrderView::from(&o));
        assert_eq!(fixture.read.get(*id).await.unwrap(), want, "order {id}");
    }
    assert!(
        dlq::list(&config).await.unwrap().is_empty(),
        "no dead letters"
    );
    running.stop().await;
    fixture.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_elasticsearch_failing_nothing_is_committed_nor_dead_lettered() {
    let mut fixture = Fixture::new().await;
    let (log, ids) = history(6);
    fixture.publish(&log.events, 100).await;
    // The orders index disappears under the projector: every `_mget` fails.
    let http = reqwest::Client::new();
    let alias = fixture.read.alias().to_string();
    let index = fixture.read.current_index().await.unwrap().unwrap();
    http.delete(format!("{}/{index}", fixture.es.url))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let running = fixture.start(fixture.config());
    let projector = running.projector.clone();
    fixture
        .eventually(WAIT, "the projector reports Elasticsearch failing", || {
            let failing = projector.health().status().failing_on;
            async move { failing == Some(Dependency::Elasticsearch) }
        })
        .await;
    let config = fixture.config();
    let committed = tokio::task::spawn_blocking(move || committed_offsets(&config))
        .await
        .unwrap()
        .unwrap();
    assert!(committed.is_empty(), "nothing committed: {committed:?}");
    assert!(dlq::list(&fixture.config()).await.unwrap().is_empty());
    // Elasticsearch is back (a new index behind the alias): the same batch applies.
    let reopened = order_read_model_es::EsReadStore::open(fixture.es.clone())
        .await
        .unwrap();
    assert_eq!(reopened.alias(), alias);
    let read = fixture.read.clone();
    fixture
        .eventually(WAIT, "every order projected once ES is back", || {
            caught_up(read.as_ref(), &log, &ids)
        })
        .await;
    running.stop().await;
    fixture.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_version_only_moves_forward_under_redelivery() {
    let mut fixture = Fixture::new().await;
    let (mut log, ids) = history(5);
    fixture.publish(&log.events, 100).await;
    let running = fixture.start(fixture.config());
    let read = fixture.read.clone();
    fixture
        .eventually(WAIT, "projected", || caught_up(read.as_ref(), &log, &ids))
        .await;
    running.stop().await;
    // A later event of the first order, then the whole topic again under another group
    // (every message redelivered, older versions after newer ones).
    let later = log.add(ids[3], item("C-9", "Teapot", 1, "2.00"), at(500));
    fixture.publish(&later, 100).await;
    let running = fixture.start(fixture.config());
    fixture
        .eventually(WAIT, "the later event", || {
            caught_up(read.as_ref(), &log, &ids)
        })
        .await;
    let mut again = fixture.config();
    again.group_id = format!("{}-again", again.group_id);
    let replayer = fixture.start(again.clone());
    let projector = replayer.projector.clone();
    let total = log.events.len() as u64;
    fixture
        .eventually(WAIT, "the second group read everything", || {
            let status = projector.health().status();
            async move { status.applied == 0 && consumed(&status) >= total }
        })
        .await;
    for id in &ids {
        let want = log
            .order(*id)
            .map(|o| order_read_model::OrderView::from(&o));
        assert_eq!(fixture.read.get(*id).await.unwrap(), want);
    }
    replayer.stop().await;
    running.stop().await;
    fixture.clean_up().await;
}

/// Messages the status says were seen: partitions' lag is not enough (another group).
fn consumed(status: &order_kafka_projector::ProjectorStatus) -> u64 {
    status.consumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_partitions_and_one_leaving_hands_over_without_loss() {
    let mut fixture = Fixture::new().await;
    let (log, ids) = history(45);
    let mut config = fixture.config();
    config.batch_size = 5;
    let events = log.events.clone();
    let (first, rest) = events.split_at(events.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    fixture.publish(first, 10).await;
    let a = fixture.start(config.clone());
    let b = fixture.start(config.clone());
    let (pa, pb) = (a.projector.clone(), b.projector.clone());
    fixture
        .eventually(WAIT, "both replicas hold partitions", || {
            let (sa, sb) = (pa.health().status(), pb.health().status());
            async move {
                !sa.assigned_partitions.is_empty()
                    && !sb.assigned_partitions.is_empty()
                    && sa.assigned_partitions.len() + sb.assigned_partitions.len() == 3
            }
        })
        .await;
    fixture.publish(second, 10).await;
    // One replica leaves while the second part flows: the other takes its partitions.
    a.stop().await;
    fixture.publish(third, 10).await;
    fixture
        .eventually(WAIT, "the remaining replica holds every partition", || {
            let status = pb.health().status();
            async move { status.assigned_partitions.len() == 3 }
        })
        .await;
    let read = fixture.read.clone();
    fixture
        .eventually(WAIT, "every order projected", || {
            caught_up(read.as_ref(), &log, &ids)
        })
        .await;
    for id in &ids {
        let want = log
            .order(*id)
            .map(|o| order_read_model::OrderView::from(&o));
        assert_eq!(fixture.read.get(*id).await.unwrap(), want, "order {id}");
    }
    assert!(
        dlq::list(&config).await.unwrap().is_empty(),
        "no dead letters"
    );
    b.stop().await;
    fixture.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_registry_unreachable_nothing_is_committed_nor_dead_lettered() {
    let mut fixture = Fixture::new().await;
    let (log, ids) = history(4);
    fixture.publish(&log.events, 100).await;
    let mut config = fixture.config();
    // Nothing listens on port 1: every writer schema lookup fails.
    config.schema_registry_url = "http://127.0.0.1:1/apis/ccompat/v7".into();
    let running = fixture.start(config.clone());
    let projector = running.projector.clone();
    fixture
        .eventually(WAIT, "the projector reports the registry failing", || {
            let failing = projector.health().status().failing_on;
            async move { failing == Some(Dependency::SchemaRegistry) }
        })
        .await;
    let asking = config.clone();
    let committed = tokio::task::spawn_blocking(move || committed_offsets(&asking))
        .await
        .unwrap()
        .unwrap();
    assert!(committed.is_empty(), "nothing committed: {committed:?}");
    assert!(dlq::list(&config).await.unwrap().is_empty(), "not poison");
    running.stop().await;
    // The registry is back: the same group applies everything.
    let running = fixture.start(fixture.config());
    let read = fixture.read.clone();
    fixture
        .eventually(WAIT, "every order projected", || {
            caught_up(read.as_ref(), &log, &ids)
        })
        .await;
    running.stop().await;
    fixture.clean_up().await;
}
