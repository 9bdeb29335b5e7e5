//! The flags of `query-service` and `dead-letters`: the query side fed from Kafka.

use crate::OidcArgs;
use crate::config;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the Kafka-fed read side reads from and writes to; shared by `query-service` and
/// `dead-letters`.
#[derive(Args, Clone, Debug)]
pub struct KafkaReadArgs {
    /// Kafka bootstrap servers, e.g. broker1:9092,broker2:9092 (required).
    #[arg(
        long,
        env = "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
        value_name = "HOST:PORT,..."
    )]
    pub kafka_bootstrap_servers: Option<String>,
    /// A connection setting of every Kafka client, as librdkafka names it: KEY=VALUE, e.g.
    /// security.protocol=sasl_ssl, ssl.ca.location=/etc/kafka/ca.pem,
    /// sasl.mechanisms=SCRAM-SHA-512, sasl.username=…, sasl.password=… (repeatable; several in
    /// one value or in the variable, separated by `;`). Only connection settings:
    /// security.protocol, ssl.*, sasl.*, socket.*, client.id and a few more.
    #[arg(long = "kafka-option", env = "ORDER_PLATFORM_KAFKA_OPTIONS", hide_env_values = true,
        value_delimiter = ';', value_parser = config::parse_kafka_option, value_name = "KEY=VALUE")]
    pub kafka_options: Vec<(String, String)>,
    /// The Schema Registry's Confluent-compatible API root, e.g.
    /// http://registry:8081/apis/ccompat/v7 (required): writer schemas are looked up by id.
    #[arg(long, env = "ORDER_PLATFORM_SCHEMA_REGISTRY_URL", value_name = "URL")]
    pub schema_registry_url: Option<String>,
    /// Elasticsearch, e.g. http://elasticsearch:9200 (required): the read model.
    #[arg(long, env = "ORDER_PLATFORM_ELASTICSEARCH_URL", value_name = "URL")]
    pub elasticsearch_url: Option<String>,
    /// Prefix of every index name (`<prefix>orders`, `<prefix>orders_meta`); empty in
    /// production, set to share a cluster between environments.
    #[arg(
        long,
        env = "ORDER_PLATFORM_ES_INDEX_PREFIX",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub es_index_prefix: String,
    /// The topic of order events (the relay's --topic); dead letters go to `<topic>.dlq`,
    /// watermarks are read from `<topic>.watermarks`.
    #[arg(long, env = "ORDER_PLATFORM_TOPIC", default_value = "order-events")]
    pub topic: String,
    /// The consumer group; query-service replicas with the same group share the
    /// partitions. The dead-letter replay uses `<group>-dlq-replay`.
    #[arg(long, env = "ORDER_PLATFORM_GROUP_ID", default_value = order_kafka_projector::DEFAULT_GROUP_ID)]
    pub group_id: String,
    /// Replication factor of `<topic>.dlq` when it is created (3 in production).
    #[arg(long, env = "ORDER_PLATFORM_REPLICATION_FACTOR", default_value_t = 1,
        value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication_factor: i32,
    /// Deadline of Kafka calls (metadata, dead letters, reading the dead-letter topic).
    #[arg(long, env = "ORDER_PLATFORM_KAFKA_TIMEOUT", default_value = "30s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub kafka_timeout: Duration,
}

#[derive(Args, Clone, Debug)]
pub struct QueryServiceArgs {
    /// Address to listen on (queries, /health/*, /metrics, the admin dead-letter routes).
    #[arg(long, env = "ORDER_PLATFORM_LISTEN", default_value = "127.0.0.1:8081",
        value_parser = config::parse_listen, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The PostgreSQL event store (required): order histories and past states are read
    /// from it, and consistency tokens are checked against its identity.
    #[arg(long, env = "ORDER_PLATFORM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaReadArgs,
    /// Most messages applied to Elasticsearch in one bulk request.
    #[arg(long, env = "ORDER_PLATFORM_BATCH_SIZE", default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Without --oidc-issuer: trust the built-in key of this data dir (the data dir of the
    /// `serve` or command service whose tokens the callers carry).
    #[arg(long, env = "ORDER_PLATFORM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub oidc: OidcArgs,
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDER_PLATFORM_BODY_LIMIT", default_value_t = order_http::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Longest time a request may run (read-your-writes waits included, at most 30s).
    #[arg(long, env = "ORDER_PLATFORM_REQUEST_TIMEOUT", default_value = "35s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Most API requests handled at once; one more is refused with 503 `overloaded`.
    #[arg(long, env = "ORDER_PLATFORM_MAX_IN_FLIGHT", default_value_t = order_http::DEFAULT_MAX_IN_FLIGHT,
        value_parser = config::parse_max_in_flight, value_name = "N")]
    pub max_in_flight: usize,
    /// After SIGTERM or Ctrl-C: let requests finish for at most this long, then stop the
    /// projector (its batch in hand is applied and committed) and exit.
    #[arg(long, env = "ORDER_PLATFORM_SHUTDOWN_TIMEOUT", default_value = "20s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
}

impl QueryServiceArgs {
    /// Like [`crate::ServeArgs::from_flags`]: flags only, no variables, no file.
    pub fn from_flags<I, T>(flags: I) -> Result<QueryServiceArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let command = QueryServiceArgs::augment_args(clap::Command::new("query-service"))
            .no_binary_name(true)
            .mut_args(|a| a.env(None));
        QueryServiceArgs::from_arg_matches(&command.try_get_matches_from(flags)?)
    }
}

#[derive(Args, Clone, Debug)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: DeadLettersAction,
}

#[derive(Subcommand, Clone, Debug)]
pub enum DeadLettersAction {
    /// Print every dead letter of `<topic>.dlq`, one JSON object per line: where it came
    /// from, why, at which stage, its key and event type, id and version when known.
    List(KafkaReadArgs),
    /// Apply every dead letter again (idempotent by version); commit those applied or now
    /// obsolete, report those still failing, print a JSON summary.
    Replay(KafkaReadArgs),
}
