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

#[path = "../support/mod.rs"]
mod support;

mod broker;
mod in_process;
mod processes;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
