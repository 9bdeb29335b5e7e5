//! The Kafka relay against the real servers of `dev/stack` (PostgreSQL, Kafka, the Schema
//! Registry): each test has its own database and its own topic.
//!
//! * in process (`order_relay::Relay` on the test's runtime): every event type published once,
//!   in order, with its headers and decodable by the messaging decoder; a restarted relay
//!   resumes from the topic; a relay of another store refuses the topic;
//! * as processes (`order-platform relay`): SIGKILLed at random points while appends flow, the
//!   topic still holds every event exactly once; and a standby takes over from a killed leader.
//!
//! `ORDER_RELAY_TEST_KILLS` (default 4) sets how many times the exactly-once test kills the
//! relay: raise it for a longer run. The broker-restart test needs a broker of its own and
//! uses the Kafka jars `dev/stack` fetched (or `ORDER_RELAY_TEST_KAFKA_LIBS`; see `PrivateBroker`).

mod support;

use order_domain::{Currency, Event, EventPayload, Line};
use order_event_store::{
    AppendRequest, CommandMetadata, EventStore, LogCursor, NewEvent, PostgresEventStore,
    RecordedEvent,
};
use order_messaging::wire::unframe;
use order_messaging::{
    OrderEventDecoder, OrderEventMessage, OrderEventSchema, SchemaRegistryClient,
};
use order_relay::kafka::{self, Committed};
use order_relay::{KafkaConnection, Relay, RelayConfig, Role};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use sqlx::postgres::PgConnectOptions;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TestDatabase;
use tokio::sync::watch;
use uuid::Uuid;

const READ_TIMEOUT: Duration = Duration::from_secs(20);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the stack (`dev/stack up`) and run `eval \"$(dev/stack env)\"`")
    })
}

/// A fresh database holding a fresh event store, and a fresh topic name.
struct Fixture {
    db: TestDatabase,
    store: Arc<PostgresEventStore>,
    topic: String,
    bootstrap: String,
    registry: String,
}

impl Fixture {
    fn kafka(&self) -> KafkaConnection {
        KafkaConnection::new(self.bootstrap.clone())
    }

    async fn new() -> Fixture {
        let db = TestDatabase::create().await;
        let store = Arc::new(
            PostgresEventStore::connect(PgConnectOptions::from_str(&db.url).unwrap(), 8)
                .await
                .expect("open the event store"),
        );
        Fixture {
            db,
            store,
            topic: format!("order-events-relay-{}", Uuid::new_v4().simple()),
            bootstrap: env("KAFKA_BOOTSTRAP_SERVERS"),
            registry: env("SCHEMA_REGISTRY_URL"),
        }
    }

    fn config(&self) -> RelayConfig {
        RelayConfig {
            kafka: KafkaConnection::new(self.bootstrap.clone()),
            schema_registry_url: self.registry.clone(),
            topic: self.topic.clone(),
            partitions: 3,
            replication_factor: 1,
            batch_size: 50,
            kafka_timeout: Duration::from_secs(20),
        }
    }

    /// Every event of the store, in log order.
    async fn all_events(&self) -> Vec<RecordedEvent> {
        let mut all = Vec::new();
        let mut cursor = LogCursor::default();
        loop {
            let batch = self.store.read_log(cursor, 1000).await.unwrap();
            if batch.events.is_empty() {
                return all;
            }
            cursor = batch.next;
            all.extend(batch.events);
        }
    }

    async fn topic(&self) -> Vec<Committed> {
        kafka::read_all_committed(&self.kafka(), &self.topic, READ_TIMEOUT)
            .await
            .expect("read the topic")
    }

    /// Waits until the topic holds `count` messages (or more), then returns them.
    async fn wait_for_messages(&self, count: usize, within: Duration) -> Vec<Committed> {
        let deadline = Instant::now() + within;
        loop {
            // A topic just created may not have its partition leaders yet: read again.
            let read = kafka::read_all_committed(&self.kafka(), &self.topic, READ_TIMEOUT).await;
            match read {
                Ok(read) if read.len() >= count => return read,
                _ if Instant::now() > deadline => return self.topic().await,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes the topic and its subject (best effort: a failed test leaves them for a look).
    async fn clean_up(self) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let _ = admin
            .delete_topics(&[&self.topic], &AdminOptions::new())
            .await;
        let subject = order_messaging::registry::value_subject(&self.topic);
        let _ = SchemaRegistryClient::new(&self.registry)
            .unwrap()
            .delete_subject(&subject)
            .await;
        drop(self.db);
    }

    /// `order-platform relay` on this fixture, as a child process.
    fn spawn_relay(&self, listen: &str, log: &str) -> Child {
        self.spawn_relay_with(listen, log, "20s")
    }

    fn spawn_relay_with(&self, listen: &str, log: &str, kafka_timeout: &str) -> Child {
        let log = std::fs::File::create(std::env::temp_dir().join(log)).unwrap();
        Command::new(support::BIN)
            .arg("relay")
            .args(["--listen", listen])
            .args(["--database-url", &self.db.url])
            .args(["--kafka-bootstrap-servers", &self.bootstrap])
            .args(["--schema-registry-url", &self.registry])
            .args(["--topic", &self.topic])
            .args([
                "--partitions",
                "3",
                "--batch-size",
                "50",
                "--kafka-timeout",
                kafka_timeout,
            ])
            .env_remove("ORDER_PLATFORM_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn order-platform relay")
    }
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn line(sku: &str, quantity: u32, unit_price: i64) -> Line {
    Line {
        sku: sku.into(),
        product_name: format!("Product {sku}"),
        quantity,
        unit_price,
    }
}

/// One command's append of `payloads` to `order` at `expected` (traceparent on odd versions).
fn request(order: Uuid, expected: u64, payloads: Vec<EventPayload>) -> AppendRequest {
    AppendRequest {
        stream_id: order,
        expected_version: expected,
        events: payloads
            .into_iter()
            .map(|payload| {
                let event = Event {
                    payload,
                    occurred_at: chrono::Utc::now(),
                    actor: "relay-test".into(),
                };
                NewEvent::from_domain(&event, Uuid::now_v7())
            })
            .collect(),
        metadata: CommandMetadata {
            command_id: Uuid::new_v4(),
            correlation_id: format!("corr-{order}-{expected}"),
            traceparent: (expected % 2 == 1)
                .then(|| format!("00-{}-{:016x}-01", Uuid::new_v4().simple(), expected + 1)),
            idempotency_key: None,
        },
        idempotency: None,
    }
}

fn created(order: Uuid) -> EventPayload {
    EventPayload::OrderCreated {
        order_id: order,
        customer_id: "customer-1".into(),
        currency: usd(),
        lines: vec![line("A", 2, 1250)],
    }
}

/// Three orders that between them hold every event type.
async fn append_every_type(store: &PostgresEventStore) {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let steps = [
        (a, 0, vec![created(a)]),
        (
            a,
            1,
            vec![EventPayload::ItemAdded {
                line: line("B", 1, i64::MAX),
                currency: usd(),
            }],
        ),
        (
            a,
            2,
            vec![
                EventPayload::ItemRemoved { sku: "B".into() },
                EventPayload::OrderApproved { reason: None },
            ],
        ),
        (
            a,
            4,
            vec![EventPayload::OrderShipped {
                tracking_number: "1Z999".into(),
                carrier: "UPS".into(),
            }],
        ),
        (b, 0, vec![created(b)]),
        (
            b,
            1,
            vec![EventPayload::OrderRejected {
                reason: "credit check failed".into(),
            }],
        ),
        (c, 0, vec![created(c)]),
        (
            c,
            1,
            vec![EventPayload::OrderCanceled {
                reason: Some("customer asked — 取消".into()),
            }],
        ),
    ];
    for (order, expected, payloads) in steps {
        store
            .append(request(order, expected, payloads))
            .await
            .unwrap();
    }
}

/// Asserts the topic holds every event of `events` exactly once, nothing else, each order's
/// events in one partition in version order, with the headers and the Avro body of the event.
async fn assert_published_exactly_once(
    fixture: &Fixture,
    events: &[RecordedEvent],
    messages: &[Committed],
) {
    let store = fixture.store.store_id().0.to_string();
    let mut by_position: HashMap<i64, &Committed> = HashMap::new();
    for m in messages {
        let position: i64 = m.header("global-position").unwrap().parse().unwrap();
        if let Some(earlier) = by_position.insert(position, m) {
            panic!(
                "position {position} published twice: offsets {} and {}",
                earlier.offset, m.offset
            );
        }
    }
    assert_eq!(
        messages.len(),
        events.len(),
        "every event once, nothing else"
    );

    let registry = SchemaRegistryClient::new(&fixture.registry).unwrap();
    let mut decoder = OrderEventDecoder::new(OrderEventSchema::current().clone());
    for e in events {
        let m = by_position
            .get(&e.global_position)
            .unwrap_or_else(|| panic!("event at position {} is missing", e.global_position));
        assert_eq!(m.key.as_deref(), Some(e.stream_id.to_string().as_bytes()));
        assert_eq!(m.header("event-type"), Some(e.event_type.as_str()));
        assert_eq!(m.header("event-id"), Some(e.event_id.to_string().as_str()));
        assert_eq!(
            m.header("stream-version"),
            Some(e.version.to_string().as_str())
        );
        assert_eq!(m.header("correlation-id"), Some(e.correlation_id.as_str()));
        assert_eq!(m.header("traceparent"), e.traceparent.as_deref());
        assert_eq!(m.header("store-id"), Some(store.as_str()));
        let value = m.value.as_deref().unwrap();
        let (id, _) = unframe(value).unwrap();
        if !decoder.knows(id) {
            decoder
                .add_writer_schema(id, &registry.schema_by_id(id).await.unwrap())
                .unwrap();
        }
        assert_eq!(
            decoder.decode(value).unwrap(),
            OrderEventMessage::from_recorded(e).unwrap()
        );
    }

    // Per order: one partition, versions 1, 2, 3, … in offset order.
    let mut per_order: BTreeMap<Vec<u8>, Vec<&Committed>> = BTreeMap::new();
    for m in messages {
        per_order.entry(m.key.clone().unwrap()).or_default().push(m);
    }
    for (order, mut ms) in per_order {
        ms.sort_by_key(|m| m.offset);
        assert!(
            ms.iter().all(|m| m.partition == ms[0].partition),
            "order split over partitions"
        );
        let versions: Vec<u64> = ms
            .iter()
            .map(|m| m.header("stream-version").unwrap().parse().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(
            versions,
            expected,
            "versions of order {}",
            String::from_utf8_lossy(&order)
        );
    }
    // Per partition: global positions only grow with the offset (the log's order).
    let mut per_partition: BTreeMap<i32, Vec<&Committed>> = BTreeMap::new();
    for m in messages {
        per_partition.entry(m.partition).or_default().push(m);
    }
    for (_, mut ms) in per_partition {
        ms.sort_by_key(|m| m.offset);
        let positions: Vec<i64> = ms
            .iter()
            .map(|m| m.header("global-position").unwrap().parse().unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }
}

/// An in-process relay, running until dropped or stopped.
struct Running {
    relay: Arc<Relay>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(relay: Relay) -> Running {
        let relay = Arc::new(relay);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn({
            let relay = relay.clone();
            async move {
                relay
                    .run(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await
            }
        });
        Running { relay, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_in_order_with_headers_and_a_restart_resumes_from_the_topic()
{
    let fixture = Fixture::new().await;
    let options = PgConnectOptions::from_str(&fixture.db.url).unwrap();
    // Some events before the relay starts, some while it runs.
    append_every_type(&fixture.store).await;
    let first = Running::start(Relay::new(
        fixture.store.clone(),
        options.clone(),
        fixture.config(),
    ));
    append_every_type(&fixture.store).await;
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    assert_published_exactly_once(&fixture, &events, &messages).await;
    let health = first.relay.health();
    assert_eq!(health.role, Role::Leader);
    assert_eq!(
        health.position,
        Some(events.last().unwrap().global_position)
    );
    first.relay.measure_lag().await;
    assert_eq!(first.relay.health().events_behind, Some(0));
    first.stop().await;

    // A new relay finds its checkpoint in the topic: the next events follow, nothing repeats.
    append_every_type(&fixture.store).await;
    let second = Running::start(Relay::new(fixture.store.clone(), options, fixture.config()));
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    assert_published_exactly_once(&fixture, &events, &messages).await;
    second.stop().await;

    // A relay of another store refuses this topic and publishes nothing.
    let other = Fixture::new().await;
    append_every_type(&other.store).await;
    let foreign = Running::start(Relay::new(
        other.store.clone(),
        PgConnectOptions::from_str(&other.db.url).unwrap(),
        fixture.config(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while foreign.relay.health().failing_on.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = foreign.relay.health();
    assert_eq!(
        health.failing_on,
        Some(order_relay::Dependency::Data),
        "{health:?}"
    );
    assert!(health.last_error.unwrap().contains("another store"));
    foreign.stop().await;
    assert_eq!(
        fixture.topic().await.len(),
        events.len(),
        "the foreign relay published nothing"
    );
    other.clean_up().await;
    fixture.clean_up().await;
}

/// Appends to `orders` random orders, one event per command, until `stop` is set; each order's
/// events are versions 1, 2, 3, …
async fn keep_appending(
    store: Arc<PostgresEventStore>,
    stop: watch::Receiver<bool>,
    orders: usize,
) {
    let mut versions: Vec<(Uuid, u64)> = (0..orders).map(|_| (Uuid::now_v7(), 0)).collect();
    let mut n = 0usize;
    while !*stop.borrow() {
        let (order, version) = &mut versions[n % orders];
        let payload = if *version == 0 {
            created(*order)
        } else {
            EventPayload::ItemAdded {
                line: line(&format!("S{version}"), 1, 100),
                currency: usd(),
            }
        };
        store
            .append(request(*order, *version, vec![payload]))
            .await
            .unwrap();
        *version += 1;
        n += 1;
        if n.is_multiple_of(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn random_below(n: u64) -> u64 {
    (Uuid::new_v4().as_u128() % n as u128) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_at_random_points_still_publishes_every_event_exactly_once() {
    let kills: u32 = std::env::var("ORDER_RELAY_TEST_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(4);
    let fixture = Fixture::new().await;
    let (stop_writers, writers_stop) = watch::channel(false);
    let writers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(keep_appending(
                fixture.store.clone(),
                writers_stop.clone(),
                10,
            ))
        })
        .collect();
    let mut relay = fixture.spawn_relay("127.0.0.1:0", "relay-kill.log");
    for _ in 0..kills {
        // Let it set up and publish for a while (the first start creates topic and schema).
        tokio::time::sleep(Duration::from_millis(1500 + random_below(2000))).await;
        relay.kill().unwrap(); // SIGKILL
        relay.wait().unwrap();
        relay = fixture.spawn_relay("127.0.0.1:0", "relay-kill.log");
    }
    let _ = stop_writers.send(true);
    for w in writers {
        w.await.unwrap();
    }
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(60))
        .await;
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert!(
        events.len() > 100,
        "only {} events were appended",
        events.len()
    );
    assert_published_exactly_once(&fixture, &events, &messages).await;
    eprintln!(
        "{} events, {kills} kills: every event exactly once",
        events.len()
    );
    fixture.clean_up().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn role(client: &reqwest::Client, port: u16) -> Option<String> {
    let body: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["checks"]["relay"]["detail"]["role"]
        .as_str()
        .or_else(|| body["relay"]["detail"]["role"].as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_takes_over_within_seconds_when_the_leader_is_killed() {
    let fixture = Fixture::new().await;
    let client = reqwest::Client::new();
    let ports = [free_port(), free_port()];
    let mut relays: Vec<Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            fixture.spawn_relay(
                &format!("127.0.0.1:{port}"),
                &format!("relay-standby-{i}.log"),
            )
        })
        .collect();
    append_every_type(&fixture.store).await;
    let published = fixture.all_events().await.len();
    assert_eq!(
        fixture
            .wait_for_messages(published, Duration::from_secs(30))
            .await
            .len(),
        published
    );

    // Exactly one leader; the other waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let roles = [role(&client, ports[0]).await, role(&client, ports[1]).await];
        match (roles[0].as_deref(), roles[1].as_deref()) {
            (Some("leader"), Some("standby")) => break 0,
            (Some("standby"), Some("leader")) => break 1,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("expected one leader and one standby, got {other:?}"),
        }
    };
    relays[leader].kill().unwrap();
    relays[leader].wait().unwrap();
    let killed = Instant::now();
    append_every_type(&fixture.store).await;
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    let took = killed.elapsed();
    assert_published_exactly_once(&fixture, &events, &messages).await;
    assert_eq!(
        role(&client, ports[1 - leader]).await.as_deref(),
        Some("leader")
    );
    let metrics = client
        .get(format!("http://127.0.0.1:{}/metrics", ports[1 - leader]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "order_platform_relay_events_published_total",
        "order_platform_relay_events_behind",
        "order_platform_relay_lag_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    eprintln!("the standby took over and published within {took:?} of the leader's death");
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    relays[1 - leader].kill().unwrap();
    relays[1 - leader].wait().unwrap();
    fixture.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_connection_is_terminated_steps_down_and_nothing_is_published_twice() {
    let fixture = Fixture::new().await;
    let options = PgConnectOptions::from_str(&fixture.db.url).unwrap();
    let a = Running::start(Relay::new(
        fixture.store.clone(),
        options.clone(),
        fixture.config(),
    ));
    append_every_type(&fixture.store).await;
    let count = fixture.all_events().await.len();
    fixture
        .wait_for_messages(count, Duration::from_secs(30))
        .await;
    let b = Running::start(Relay::new(fixture.store.clone(), options, fixture.config()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.relay.health().role, Role::Leader);
    assert_eq!(b.relay.health().role, Role::Standby);

    // An operator (or a failover of the database) ends the leader's lease session.
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND classid = x'4f52'::int::oid AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(fixture.store.pool())
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one lease connection");
    append_every_type(&fixture.store).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let roles = loop {
        let roles = (a.relay.health().role, b.relay.health().role);
        let one_leader = matches!(
            roles,
            (Role::Leader, Role::Standby) | (Role::Standby, Role::Leader)
        );
        if (one_leader && a.relay.health().failing_on.is_some()) || Instant::now() > deadline {
            break roles;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        a.relay
            .health()
            .last_error
            .unwrap_or_default()
            .contains("lease"),
        "the old leader noticed: {roles:?}"
    );
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    assert_published_exactly_once(&fixture, &events, &messages).await;
    a.stop().await;
    b.stop().await;
    fixture.clean_up().await;
}

/// A private single-node KRaft broker for one test, from the Kafka jars `dev/stack` fetched
/// (`ORDER_RELAY_TEST_KAFKA_LIBS`, e.g. `~/.cache/order-platform-stack/kafka_2.13-4.4.0-*/libs`),
/// so that the test can kill and restart it without touching the shared one.
struct PrivateBroker {
    dir: std::path::PathBuf,
    libs: String,
    port: u16,
    process: Option<Child>,
}

impl PrivateBroker {
    fn java(&self) -> Command {
        let mut java = Command::new("java");
        java.args([
            "-Xms64m",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
        ])
        .arg("-cp")
        .arg(format!("{}/*", self.libs));
        java
    }

    fn create(libs: String) -> PrivateBroker {
        let dir = std::env::temp_dir().join(format!("relay-broker-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (port, controller) = (free_port(), free_port());
        let properties = format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\nnum.partitions=1\ndefault.replication.factor=1\nmin.insync.replicas=1\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), properties).unwrap();
        let broker = PrivateBroker {
            dir,
            libs,
            port,
            process: None,
        };
        let formatted = broker
            .java()
            .args([
                "kafka.tools.StorageTool",
                "format",
                "-t",
                "T1JMQVkAQACAAAAAAAAAAQ",
                "-c",
            ])
            .arg(broker.dir.join("server.properties"))
            .output()
            .expect("run java (Kafka's storage tool)");
        assert!(
            formatted.status.success(),
            "{}",
            String::from_utf8_lossy(&formatted.stderr)
        );
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("broker.log")).unwrap();
        self.process = Some(
            self.java()
                .arg("kafka.Kafka")
                .arg(self.dir.join("server.properties"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start the private Kafka broker"),
        );
        // Ready once a transactional producer can initialise (the transaction log exists).
        let deadline = Instant::now() + Duration::from_secs(90);
        let config = RelayConfig {
            kafka: KafkaConnection::new(self.bootstrap()),
            schema_registry_url: String::new(),
            topic: "ready-check".into(),
            partitions: 1,
            replication_factor: 1,
            batch_size: 1,
            kafka_timeout: Duration::from_secs(5),
        };
        let probe = order_event_store::StoreId(Uuid::new_v4());
        while kafka::transactional_producer(&config, probe).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the private broker did not start: see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// It starts a Kafka broker of its own (the jars `dev/stack` fetched), twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_under_the_relay_loses_and_repeats_nothing() {
    let libs = kafka_libs();
    let mut broker = PrivateBroker::create(libs);
    broker.start().await;
    let mut fixture = Fixture::new().await;
    fixture.bootstrap = broker.bootstrap();
    let (stop_writers, writers_stop) = watch::channel(false);
    let writers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(keep_appending(
                fixture.store.clone(),
                writers_stop.clone(),
                10,
            ))
        })
        .collect();
    // A Kafka timeout shorter than the outage: the transaction in flight fails and is aborted,
    // and the relay recovers its cursor from the topic again.
    let mut relay = fixture.spawn_relay_with("127.0.0.1:0", "relay-broker.log", "3s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.kill(); // SIGKILL, mid-stream
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_writers.send(true);
    for w in writers {
        w.await.unwrap();
    }
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(90))
        .await;
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert_published_exactly_once(&fixture, &events, &messages).await;
    eprintln!(
        "{} events across a broker kill and restart: every event exactly once",
        events.len()
    );
    let subject = order_messaging::registry::value_subject(&fixture.topic);
    let _ = SchemaRegistryClient::new(&fixture.registry)
        .unwrap()
        .delete_subject(&subject)
        .await;
}

/// Kafka's `libs` folder: `ORDER_RELAY_TEST_KAFKA_LIBS`, else the one `dev/stack` unpacked.
fn kafka_libs() -> String {
    if let Ok(libs) = std::env::var("ORDER_RELAY_TEST_KAFKA_LIBS") {
        return libs;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("order-platform-stack");
    std::fs::read_dir(&cache)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("libs"))
        .find(|libs| {
            libs.is_dir()
                && libs
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| n.to_string_lossy().starts_with("kafka_"))
        })
        .map(|libs| libs.display().to_string())
        .unwrap_or_else(|| {
            panic!(
                "no Kafka jars under {}: run `dev/stack up kafka` first, or set \
                 ORDER_RELAY_TEST_KAFKA_LIBS to Kafka's libs folder",
                cache.display()
            )
        })
}
