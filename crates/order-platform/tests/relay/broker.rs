//! The broker itself killed and restarted under the relay, on a private broker.

use super::*;

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
