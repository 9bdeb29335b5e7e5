//! The query side's harness: a fresh PostgreSQL database, `serve` on it (the command
//! side, whose built-in key signs the tokens), the relay in process, and the flags of a
//! query service reading what they produce, each with its own topic and index prefix.

use crate::support::{TempDir, TestDatabase};
use order_auth::{LocalSigningKey, Role};
use order_platform::{App, QueryServiceApp, QueryServiceArgs, ServeArgs};
use order_relay::{KafkaConnection, Relay, RelayConfig};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the dev stack and run `eval \"$(dev/stack env)\"`")
    })
}

pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
}

impl Http {
    pub fn new(address: impl std::fmt::Display) -> Http {
        Http {
            client: reqwest::Client::new(),
            base: format!("http://{address}"),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

/// How the relay and the query service reach Kafka.
pub struct KafkaLink {
    pub bootstrap: String,
    pub options: Vec<(String, String)>,
}

impl KafkaLink {
    /// The stack's PLAINTEXT listener.
    pub fn plaintext() -> KafkaLink {
        KafkaLink {
            bootstrap: env("KAFKA_BOOTSTRAP_SERVERS"),
            options: Vec::new(),
        }
    }

    /// The stack's SASL_SSL listener: SASL/PLAIN as its user with `password`, over TLS
    /// verified against the stack's CA.
    pub fn sasl_ssl(password: &str) -> KafkaLink {
        let options = [
            ("security.protocol", "sasl_ssl".to_string()),
            ("sasl.mechanisms", "PLAIN".to_string()),
            ("sasl.username", env("KAFKA_SASL_USERNAME")),
            ("sasl.password", password.to_string()),
            ("ssl.ca.location", env("STACK_CA_FILE")),
        ];
        KafkaLink {
            bootstrap: env("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"),
            options: options.map(|(k, v)| (k.to_string(), v)).to_vec(),
        }
    }

    pub fn connection(&self) -> KafkaConnection {
        KafkaConnection::new(self.bootstrap.clone())
            .with_options(self.options.iter().cloned())
            .expect("valid Kafka options")
    }
}

/// `serve` and the relay on a fresh database, topic and index prefix.
pub struct Stack {
    pub db: TestDatabase,
    _dir: TempDir,
    /// The data dir of `serve` (its key signs the tokens).
    pub data: String,
    pub topic: String,
    pub prefix: String,
    pub bootstrap: String,
    /// `--kafka-option`s of the query service (the relay's too).
    pub kafka_options: Vec<(String, String)>,
    pub registry: String,
    pub serve: App,
    key: LocalSigningKey,
    stop_relay: watch::Sender<bool>,
    relay: JoinHandle<()>,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_on(KafkaLink::plaintext()).await
    }

    /// The relay publishes, and the query service reads, through `kafka`.
    pub async fn start_on(kafka: KafkaLink) -> Stack {
        let db = TestDatabase::create().await;
        let dir = TempDir::new("query-service");
        let data_dir = dir.path().join("data");
        let data = data_dir.to_str().unwrap().to_string();
        let topic = format!("order-events-qs-{}", Uuid::new_v4().simple());
        let registry = env("SCHEMA_REGISTRY_URL");
        let serve = App::start(
            ServeArgs::from_flags([
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
                "--database-url",
                &db.url,
            ])
            .unwrap(),
        )
        .await
        .expect("serve starts");
        let key = LocalSigningKey::load(&data_dir).unwrap();
        let options = PgConnectOptions::from_str(&db.url).unwrap();
        let store = Arc::new(
            order_event_store::PostgresEventStore::connect(options.clone(), 4)
                .await
                .unwrap(),
        );
        let relay = Arc::new(Relay::new(
            store,
            options,
            RelayConfig {
                kafka: kafka.connection(),
                schema_registry_url: registry.clone(),
                topic: topic.clone(),
                partitions: 3,
                replication_factor: 1,
                batch_size: 50,
                kafka_timeout: Duration::from_secs(20),
            },
        ));
        let (stop_relay, mut stopped) = watch::channel(false);
        let relay = tokio::spawn(async move {
            relay
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Stack {
            db,
            _dir: dir,
            data,
            topic,
            prefix: format!("test-{}-", Uuid::new_v4().simple()),
            bootstrap: kafka.bootstrap,
            kafka_options: kafka.options,
            registry,
            serve,
            key,
            stop_relay,
            relay,
        }
    }

    pub fn token(&self, sub: &str, role: Role) -> String {
        self.key
            .issue(sub, &[role], chrono::Utc::now(), chrono::Duration::hours(1))
            .unwrap()
    }

    /// A query service on this stack, in process, started (its consumer running).
    pub async fn start_query_service(&self) -> QueryServiceApp {
        let mut flags = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        flags.extend(self.query_flags());
        let query = QueryServiceApp::start(QueryServiceArgs::from_flags(flags).unwrap())
            .await
            .expect("the query service starts");
        query.started().await;
        query
    }

    /// The flags of a query service on this stack.
    pub fn query_flags(&self) -> Vec<String> {
        let options = self
            .kafka_options
            .iter()
            .flat_map(|(key, value)| ["--kafka-option".to_string(), format!("{key}={value}")]);
        [
            "--database-url",
            &self.db.url,
            "--kafka-bootstrap-servers",
            &self.bootstrap,
            "--schema-registry-url",
            &self.registry,
            "--elasticsearch-url",
            &env("ELASTICSEARCH_URL"),
            "--es-index-prefix",
            &self.prefix,
            "--topic",
            &self.topic,
            "--group-id",
            &format!("{}-query", self.topic),
            "--data-dir",
            &self.data,
        ]
        .into_iter()
        .map(str::to_string)
        .chain(options)
        .collect()
    }

    /// Stops `serve` and the relay and deletes the topics, subject and indices.
    pub async fn stop(self) {
        let _ = self.stop_relay.send(true);
        let _ = self.relay.await;
        self.serve.shutdown().await.unwrap();
        let plaintext = env("KAFKA_BOOTSTRAP_SERVERS");
        clean_up(&plaintext, &self.registry, &self.topic, &self.prefix).await;
    }
}

pub async fn clean_up(bootstrap: &str, registry: &str, topic: &str, prefix: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topics = [
        topic.to_string(),
        format!("{topic}.dlq"),
        format!("{topic}.watermarks"),
    ];
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    let _ = order_messaging::SchemaRegistryClient::new(registry)
        .unwrap()
        .delete_subject(&order_messaging::registry::value_subject(topic))
        .await;
    let http = reqwest::Client::new();
    let url = env("ELASTICSEARCH_URL");
    let listed = http
        .get(format!(
            "{url}/_cat/indices/{prefix}*?format=json&h=index&expand_wildcards=all"
        ))
        .send()
        .await;
    if let Ok(listed) = listed {
        let rows: Value = listed.json().await.unwrap_or_default();
        let names: Vec<&str> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["index"].as_str())
            .collect();
        if !names.is_empty() {
            let _ = http
                .delete(format!("{url}/{}", names.join(",")))
                .send()
                .await;
        }
    }
}
