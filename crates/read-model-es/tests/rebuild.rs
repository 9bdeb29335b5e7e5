//! Rebuilding the index from the event log with no downtime, with the live
//! projector feeding the same store and commands arriving throughout.

mod support;

use order_domain::{Command, CommandContext, Event, decide};
use order_event_store::{AppendRequest, CommandMetadata, EventStore, NewEvent, SqliteEventStore};
use order_read_model::conformance::{at, item};
use order_read_model::{OrderFilter, PageRequest, Projector, ReadStore, SortOrder};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(30);

async fn create(events: &SqliteEventStore, n: usize) -> (Uuid, order_event_store::Appended) {
    let id = Uuid::new_v4();
    let command = Command::create_order(
        id,
        &format!("cust-{}", n % 7),
        "USD",
        &[item(&format!("SKU-{n}"), "Widget", 1, "9.99")],
    )
    .unwrap();
    let ctx = CommandContext {
        actor: "tester".into(),
        now: at(n as i64),
    };
    let decided: Vec<Event> = decide(&command, None, &ctx).unwrap();
    let appended = events
        .append(AppendRequest {
            stream_id: id,
            expected_version: 0,
            events: decided
                .iter()
                .map(|e| NewEvent::from_domain(e, Uuid::now_v7()))
                .collect(),
            metadata: CommandMetadata::default(),
            idempotency: None,
        })
        .await
        .unwrap();
    (id, appended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_keep_answering_while_a_rebuild_swaps_the_alias() {
    let path = std::env::temp_dir().join(format!("order-events-{}.db", Uuid::new_v4()));
    let events = Arc::new(SqliteEventStore::open(&path).await.unwrap());
    let es = Arc::new(support::open().await);
    let read: Arc<dyn ReadStore> = Arc::new(
        order_read_model_es::EsReadStore::open(es.config.clone())
            .await
            .unwrap(),
    );
    let projector = Arc::new(Projector::new(events.clone(), read.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let projector = projector.clone();
        tokio::spawn(async move {
            projector
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    // A log the rebuild needs several batches for, projected by the live projector.
    let mut ids = Vec::new();
    let mut last = None;
    let t0 = std::time::Instant::now();
    for n in 0..300 {
        let (id, appended) = create(&events, n).await;
        ids.push(id);
        last = Some(appended.consistency_token);
    }
    projector.wake();
    assert!(projector.wait_for(last.unwrap(), PATIENCE).await);
    eprintln!("setup {:?}", t0.elapsed());
    let before = es.current_index().await.unwrap().unwrap();

    // Readers and a writer run throughout the rebuild.
    let done = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (read, done, queries) = (read.clone(), done.clone(), queries.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let page = PageRequest {
                    limit: 50,
                    sort: SortOrder::Desc,
                    cursor: None,
                };
                let listed = read.list(&OrderFilter::default(), &page).await.unwrap();
                assert_eq!(listed.items.len(), 50, "a listing came back short");
                let stats = read.stats(&OrderFilter::default()).await.unwrap();
                assert!(stats.by_status["CREATED"] >= 300, "{stats:?}");
                queries.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let writer = {
        let (events, done, projector) = (events.clone(), done.clone(), projector.clone());
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut n = 300;
            while !done.load(Ordering::SeqCst) {
                written.push(create(&events, n).await);
                projector.wake();
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written
        })
    };

    let started = std::time::Instant::now();
    let mut reports = 0;
    let report = es
        .rebuild(&*events, 50, &mut |p| {
            reports += 1;
            assert!(p.done <= p.total);
        })
        .await
        .unwrap();
    eprintln!("rebuild: {report:?} in {:?}", started.elapsed());
    // Let the projector's retried batch land in the new index, and a few more writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    let written = writer.await.unwrap();
    assert!(queries.load(Ordering::SeqCst) > 0);
    assert!(reports >= 6, "{reports} progress reports");
    assert!(!written.is_empty());

    assert_eq!(report.old_index.as_deref(), Some(before.as_str()));
    assert_eq!(
        es.current_index().await.unwrap().as_deref(),
        Some(report.new_index.as_str())
    );
    assert!(report.events >= 300);

    // Everything, including what was written during the rebuild, is in the new index.
    let token = written.last().unwrap().1.consistency_token;
    projector.wake();
    assert!(projector.wait_for(token, PATIENCE).await);
    eprintln!("caught up {:?}", started.elapsed());
    ids.extend(written.iter().map(|(id, _)| *id));
    for id in &ids {
        assert_eq!(read.get(*id).await.unwrap().unwrap().version, 1, "{id}");
    }
    let stats = read.stats(&OrderFilter::default()).await.unwrap();
    assert_eq!(stats.by_status["CREATED"], ids.len() as u64);
    assert!(read.checkpoint().await.unwrap().covered >= token);

    // The old index is kept until dropped; the serving one cannot be dropped.
    assert!(es.drop_index(&report.new_index).await.is_err());
    es.drop_index(&before).await.unwrap();
    let left: Vec<String> = es
        .versioned_indices()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(left, vec![report.new_index.clone()]);

    let _ = stop.send(());
    running.await.unwrap();
    let _ = std::fs::remove_file(&path);
}
