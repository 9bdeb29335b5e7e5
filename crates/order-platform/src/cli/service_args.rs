//! The arguments of `relay` and `gateway`.

use crate::OidcArgs;
use crate::config;
use clap::{Args, FromArgMatches};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct RelayArgs {
    /// Address of the relay's /health/live, /health/ready and /metrics.
    #[arg(long, env = "ORDER_PLATFORM_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The PostgreSQL event store to publish, e.g. postgres://user:pass@host/db (required;
    /// also holds the relay's leader lease).
    #[arg(long, env = "ORDER_PLATFORM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
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
    /// http://registry:8081/apis/ccompat/v7 (required). The schema is registered under
    /// `<topic>-value` with compatibility FULL_TRANSITIVE.
    #[arg(long, env = "ORDER_PLATFORM_SCHEMA_REGISTRY_URL", value_name = "URL")]
    pub schema_registry_url: Option<String>,
    /// The topic to publish to (created if missing).
    #[arg(long, env = "ORDER_PLATFORM_TOPIC", default_value = "order-events")]
    pub topic: String,
    /// Partitions of the topic, when the relay creates it (an existing topic is left as is).
    #[arg(long, env = "ORDER_PLATFORM_PARTITIONS", default_value_t = 6,
        value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Replication factor of the topic, when the relay creates it (3 in production).
    #[arg(long, env = "ORDER_PLATFORM_REPLICATION_FACTOR", default_value_t = 1,
        value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication_factor: i32,
    /// Most events per Kafka transaction.
    #[arg(long, env = "ORDER_PLATFORM_BATCH_SIZE", default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Deadline of each Kafka call: transaction begin/commit/abort, metadata, the checkpoint
    /// scan of the topic (e.g. 30s).
    #[arg(long, env = "ORDER_PLATFORM_KAFKA_TIMEOUT", default_value = "30s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub kafka_timeout: Duration,
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

#[derive(Args, Clone, Debug)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, env = "ORDER_PLATFORM_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Base URL of the command service (POST/DELETE are sent there), e.g.
    /// http://command:8080. May be the same as --query-url (`serve`).
    #[arg(long, env = "ORDER_PLATFORM_COMMAND_URL", value_name = "URL")]
    pub command_url: Option<String>,
    /// Base URL of the query service (GET/HEAD are sent there).
    #[arg(long, env = "ORDER_PLATFORM_QUERY_URL", value_name = "URL")]
    pub query_url: Option<String>,
    #[command(flatten)]
    pub oidc: OidcArgs,
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
    /// Without --oidc-issuer: trust the built-in key of this data dir (the data
    /// dir of the `serve` behind the gateway).
    #[arg(long, env = "ORDER_PLATFORM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Share rate limits across gateway replicas through this Redis, e.g.
    /// redis://redis:6379/0. Without it (or while it is unreachable) each
    /// replica limits on its own.
    #[arg(
        long,
        env = "ORDER_PLATFORM_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
    /// Prefix of the rate-limit keys in Redis.
    #[arg(
        long,
        env = "ORDER_PLATFORM_REDIS_PREFIX",
        default_value = "order-platform:ratelimit"
    )]
    pub redis_prefix: String,
    /// A rate limit, CLASS=REQUESTS/PERIOD[+BURST], where CLASS is anonymous
    /// (per client IP), customer, ops, analyst or admin (per subject; a caller
    /// with several roles gets the most generous). Repeat for several. Default:
    /// anonymous=60/1m+20 customer=600/1m+100 analyst=1200/1m+200 ops=3000/1m+300
    /// admin=3000/1m+300.
    #[arg(long = "rate-limit", env = "ORDER_PLATFORM_RATE_LIMIT", value_delimiter = ',',
        value_parser = parse_rate_limit, value_name = "CLASS=BUDGET")]
    pub rate_limits: Vec<(order_gateway::Class, order_gateway::Budget)>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDER_PLATFORM_BODY_LIMIT", default_value_t = order_http::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Deadline of a command through the gateway (503 `upstream_timeout` after it).
    #[arg(long, env = "ORDER_PLATFORM_COMMAND_TIMEOUT", default_value = "10s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub command_timeout: Duration,
    /// Deadline of a query (above the longest read-your-writes wait, 30s).
    #[arg(long, env = "ORDER_PLATFORM_QUERY_TIMEOUT", default_value = "35s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub query_timeout: Duration,
    /// Retries of an idempotent request (GET, or a command with an
    /// Idempotency-Key) whose service could not be reached.
    #[arg(long, env = "ORDER_PLATFORM_RETRIES", default_value_t = 2)]
    pub retries: u32,
    /// Most API requests forwarded at once; one more is refused at once with
    /// 503 `overloaded` and Retry-After (never queued). Higher than a service's
    /// default: queries may wait up to 30 s for read-your-writes.
    #[arg(long, env = "ORDER_PLATFORM_MAX_IN_FLIGHT", default_value_t = 1024,
        value_parser = config::parse_max_in_flight, value_name = "N")]
    pub max_in_flight: usize,
    /// A browser origin allowed by CORS (e.g. https://app.example.com). Repeat
    /// for several. None by default: no cross-origin browser access.
    #[arg(
        long = "cors-allow-origin",
        env = "ORDER_PLATFORM_CORS_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_allow_origins: Vec<String>,
    /// Send Strict-Transport-Security: set it when clients reach the gateway
    /// over HTTPS (TLS terminated in front of it).
    #[arg(long, env = "ORDER_PLATFORM_HSTS")]
    pub hsts: bool,
    /// After SIGTERM or Ctrl-C, let requests in flight finish for at most this long.
    #[arg(long, env = "ORDER_PLATFORM_SHUTDOWN_TIMEOUT", default_value = "20s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
}

impl GatewayArgs {
    /// Like [`ServeArgs::from_flags`]: flags only, no variables, no file.
    pub fn from_flags<I, T>(flags: I) -> Result<GatewayArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = GatewayArgs::augment_args(clap::Command::new("gateway"))
            .no_binary_name(true)
            .mut_args(|a| a.env(None));
        GatewayArgs::from_arg_matches(&command.try_get_matches_from(flags)?)
    }

    /// The budgets: the defaults, overridden class by class.
    pub fn budgets(&self) -> order_gateway::Budgets {
        let mut budgets = order_gateway::Budgets::default();
        for (class, budget) in &self.rate_limits {
            budgets.0.insert(*class, *budget);
        }
        budgets
    }
}

/// `customer=600/1m+100`.
pub(crate) fn parse_rate_limit(
    text: &str,
) -> Result<(order_gateway::Class, order_gateway::Budget), String> {
    let (class, budget) = text.split_once('=').ok_or_else(|| {
        format!("invalid rate limit {text:?}; use CLASS=REQUESTS/PERIOD[+BURST], e.g. customer=600/1m+100")
    })?;
    let class = order_gateway::Class::parse(class.trim()).ok_or_else(|| {
        format!(
            "unknown class {class:?} in {text:?}; use anonymous, customer, ops, analyst or admin"
        )
    })?;
    Ok((class, order_gateway::Budget::parse(budget.trim())?))
}
