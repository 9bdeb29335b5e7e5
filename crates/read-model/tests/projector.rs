//! The projector between a real SQLite event store and a SQLite read store.

mod support;

use order_domain::{Command, CommandContext, Event, Order, decide, replay};
use order_event_store::{
    AppendRequest, Appended, CommandMetadata, ConsistencyToken, EventStore, NewEvent,
    SqliteEventStore,
};
use order_read_model::{OrderView, Projector, ReadStore, SqliteReadStore};
use std::sync::Arc;
use std::time::Duration;
use support::{at, item, temp_path};
use tokio::sync::oneshot;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

async fn event_store() -> Arc<SqliteEventStore> {
    Arc::new(
        SqliteEventStore::open(&temp_path("order-events"))
            .await
            .unwrap(),
    )
}

async fn read_store() -> Arc<SqliteReadStore> {
    Arc::new(
        SqliteReadStore::open(&temp_path("order-read"))
            .await
            .unwrap(),
    )
}

struct Rig {
    events: Arc<SqliteEventStore>,
    read: Arc<SqliteReadStore>,
    projector: Arc<Projector>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start() -> Rig {
        let (events, read) = (event_store().await, read_store().await);
        let mut rig = Rig {
            projector: Arc::new(Projector::new(events.clone(), read.clone())),
            events,
            read,
            stop: None,
            task: None,
        };
        rig.run();
        rig
    }

    fn run(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let projector = self.projector.clone();
        self.task = Some(tokio::spawn(async move {
            projector
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }));
        self.stop = Some(stop);
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Decides `command` against the order's history in the event store and appends.
    async fn exec(&self, id: Uuid, command: Command, secs: i64) -> Appended {
        let history = self.history(id).await;
        let state = replay(history.iter());
        let ctx = CommandContext {
            actor: "tester".into(),
            now: at(secs),
        };
        let decided = decide(&command, state.as_ref(), &ctx).unwrap();
        let appended = self
            .events
            .append(AppendRequest {
                stream_id: id,
                expected_version: history.len() as u64,
                events: decided
                    .iter()
                    .map(|e| NewEvent::from_domain(e, Uuid::now_v7()))
                    .collect(),
                metadata: CommandMetadata::default(),
                idempotency: None,
            })
            .await
            .unwrap();
        self.projector.wake();
        appended
    }

    async fn create(&self, customer: &str, sku: &str, secs: i64) -> (Uuid, Appended) {
        let id = Uuid::new_v4();
        let command =
            Command::create_order(id, customer, "USD", &[item(sku, "Widget", 1, "9.99")]).unwrap();
        (id, self.exec(id, command, secs).await)
    }

    async fn history(&self, id: Uuid) -> Vec<Event> {
        self.events
            .read_stream(id, 0, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.decode().unwrap())
            .collect()
    }

    async fn replayed(&self, id: Uuid) -> Order {
        replay(self.history(id).await.iter()).unwrap()
    }
}

#[tokio::test]
async fn reads_its_own_writes_through_the_consistency_token() {
    let mut rig = Rig::start().await;
    let (id, created) = rig.create("alice", "SKU-1", 0).await;
    assert!(
        rig.projector
            .wait_for(created.consistency_token, PATIENCE)
            .await
    );
    assert_eq!(rig.read.get(id).await.unwrap().unwrap().version, 1);

    let approved = rig
        .exec(id, Command::ApproveOrder { reason: None }, 1)
        .await;
    assert!(
        rig.projector
            .wait_for(approved.consistency_token, PATIENCE)
            .await
    );
    let view = rig.read.get(id).await.unwrap().unwrap();
    assert_eq!(view, OrderView::from(&rig.replayed(id).await));
    assert_eq!(view.version, 2);

    let progress = rig.projector.progress();
    assert!(progress.covered >= approved.consistency_token);
    assert_eq!(rig.read.checkpoint().await.unwrap(), progress);
    rig.stop().await;
}

#[tokio::test]
async fn wait_for_gives_up_on_a_token_never_reached() {
    let mut rig = Rig::start().await;
    let (_, created) = rig.create("alice", "SKU-1", 0).await;
    assert!(
        rig.projector
            .wait_for(created.consistency_token, PATIENCE)
            .await
    );
    let beyond = ConsistencyToken(created.consistency_token.0 + 1_000);
    assert!(
        !rig.projector
            .wait_for(beyond, Duration::from_millis(100))
            .await
    );
    rig.stop().await;
}

#[tokio::test]
async fn catches_up_over_several_batches_and_resumes_after_a_restart() {
    let mut rig = Rig::start().await;
    rig.stop().await;
    // More than one batch's worth while the projector is stopped.
    let mut last = None;
    let mut ids = Vec::new();
    for i in 0..260 {
        let (id, _) = rig.create(&format!("c{i}"), "SKU-1", i).await;
        last = Some(rig.exec(id, Command::CancelOrder { reason: None }, i).await);
        ids.push(id);
    }
    let last = last.unwrap();
    assert!(
        !rig.projector
            .wait_for(last.consistency_token, Duration::from_millis(50))
            .await
    );

    rig.run();
    assert!(
        rig.projector
            .wait_for(last.consistency_token, PATIENCE)
            .await
    );
    for id in [ids[0], ids[130], ids[259]] {
        assert_eq!(
            rig.read.get(id).await.unwrap().unwrap(),
            OrderView::from(&rig.replayed(id).await)
        );
    }
    rig.stop().await;

    // A new projector over the same stores resumes from the stored checkpoint.
    rig.projector = Arc::new(Projector::new(rig.events.clone(), rig.read.clone()));
    rig.run();
    assert!(
        rig.projector
            .wait_for(last.consistency_token, PATIENCE)
            .await
    );
    let (id, created) = rig.create("late", "SKU-9", 999).await;
    assert!(
        rig.projector
            .wait_for(created.consistency_token, PATIENCE)
            .await
    );
    assert!(rig.read.get(id).await.unwrap().is_some());
    rig.stop().await;
}

#[tokio::test]
async fn rebuild_replays_the_log_while_running() {
    let mut rig = Rig::start().await;
    let (a, _) = rig.create("alice", "SKU-1", 0).await;
    let (b, created) = rig.create("bob", "SKU-2", 1).await;
    assert!(
        rig.projector
            .wait_for(created.consistency_token, PATIENCE)
            .await
    );

    rig.projector.rebuild().await.unwrap();
    assert!(
        rig.projector
            .wait_for(created.consistency_token, PATIENCE)
            .await
    );
    for id in [a, b] {
        assert_eq!(
            rig.read.get(id).await.unwrap().unwrap(),
            OrderView::from(&rig.replayed(id).await)
        );
    }
    rig.stop().await;
}

/// A corrupt event stops the projection (it is retried, never skipped); the lag
/// stays true meanwhile, and health says the projector is stalled, then stopped.
#[tokio::test]
async fn a_stalled_or_stopped_projector_shows_in_its_health_and_lag() {
    let (events, read) = (event_store().await, read_store().await);
    let projector = Arc::new(
        Projector::new(events.clone(), read.clone()).stalled_after(Duration::from_millis(300)),
    );
    projector.bind(false).await.unwrap();
    assert_eq!(projector.health().state, "stopped", "not started yet");

    // An OrderCreated whose data is not an order: the projector cannot apply it.
    let corrupt = AppendRequest {
        stream_id: Uuid::new_v4(),
        expected_version: 0,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "OrderCreated".into(),
            schema_version: 1,
            data: serde_json::json!({"not": "an order"}),
            occurred_at: chrono::Utc::now() - chrono::Duration::seconds(60),
            actor: "tester".into(),
        }],
        metadata: CommandMetadata::default(),
        idempotency: None,
    };
    events.append(corrupt).await.unwrap();

    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let projector = projector.clone();
        async move {
            projector
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let backlog = projector.measure_lag().await.expect("lag measured");
    assert_eq!(
        backlog.events, 1,
        "the corrupt event is still ahead of the read model"
    );
    let health = projector.health();
    assert_eq!(health.state, "stalled", "{health:?}");
    assert_eq!(health.events_behind, Some(1));
    assert!(
        health.seconds_behind.unwrap_or(0.0) >= 60.0,
        "seconds behind counts from the oldest unapplied event, even while stalled: {health:?}"
    );
    assert!(
        health
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("OrderCreated"),
        "the reason is reported: {health:?}"
    );

    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(projector.health().state, "stopped");
}

/// A read model refuses an event store other than the one it was built from,
/// unless told to rebuild from the new one.
#[tokio::test]
async fn a_read_model_belongs_to_one_event_store() {
    let (read, first, second) = (read_store().await, event_store().await, event_store().await);

    let mut rig = Rig {
        projector: Arc::new(Projector::new(first.clone(), read.clone())),
        events: first.clone(),
        read: read.clone(),
        stop: None,
        task: None,
    };
    rig.projector.bind(false).await.unwrap();
    rig.run();
    let (id, created) = rig.create("alice", "MUG-1", 0).await;
    assert!(
        rig.projector
            .wait_for(created.consistency_token, PATIENCE)
            .await
    );
    rig.stop().await;

    let other = Projector::new(second.clone(), read.clone());
    let refused = other.bind(false).await.unwrap_err();
    assert!(
        matches!(refused, order_read_model::ReadError::OtherStore { .. }),
        "{refused}"
    );
    assert!(
        read.get(id).await.unwrap().is_some(),
        "refusing changed nothing"
    );

    other.bind(true).await.expect("rebuild from the new store");
    assert!(
        read.get(id).await.unwrap().is_none(),
        "the other store's orders are gone"
    );
    // And the first store is now the stranger.
    let back = Projector::new(first, read.clone());
    assert!(back.bind(false).await.is_err());
}
