//! `order-platform relay`: the Kafka relay (`order-relay`) as a process, with its operational
//! endpoints (`/health/live`, `/health/ready`, `/metrics`) on `--listen`.

use crate::cli::RelayArgs;
use crate::config;
use crate::serve::shutdown_signal;
use anyhow::Context;
use async_trait::async_trait;
use order_event_store::{EventStore, PostgresEventStore};
use order_http::ReadinessCheck;
use order_relay::{Relay, RelayConfig};
use sqlx::postgres::PgConnectOptions;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// How long the relay may take to finish its transaction once asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts to reach PostgreSQL at start-up.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// Checks the settings and turns them into the relay's configuration and the store's options.
pub(crate) fn settings(args: &RelayArgs) -> anyhow::Result<(PgConnectOptions, RelayConfig)> {
    let required =
        |value, flag, variable, key| config::required(value, "the relay", flag, variable, key);
    let url = required(
        args.database_url.clone(),
        "database-url",
        "ORDER_PLATFORM_DATABASE_URL",
        "database_url",
    )?;
    let options = PgConnectOptions::from_str(&url)
        .context("ORDER_PLATFORM_DATABASE_URL / --database-url is not a valid postgres:// URL")?;
    let config = RelayConfig {
        kafka: config::kafka_connection(
            &args.kafka_bootstrap_servers,
            &args.kafka_options,
            "the relay",
        )?,
        schema_registry_url: required(
            args.schema_registry_url.clone(),
            "schema-registry-url",
            "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
            "schema_registry_url",
        )?,
        topic: args.topic.clone(),
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        batch_size: args.batch_size as usize,
        kafka_timeout: args.kafka_timeout,
    };
    if config.topic.is_empty()
        || !config
            .topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        anyhow::bail!(
            "topic {:?} is not a valid Kafka topic name (letters, digits, '.', '_', '-')",
            config.topic
        );
    }
    if !(1..=10_000).contains(&config.partitions) {
        anyhow::bail!(
            "partitions must be from 1 to 10000, not {}",
            config.partitions
        );
    }
    if !(1..=100).contains(&config.replication_factor) {
        anyhow::bail!(
            "replication_factor must be from 1 to 100, not {}",
            config.replication_factor
        );
    }
    if !(1..=100_000).contains(&config.batch_size) {
        anyhow::bail!(
            "batch_size must be from 1 to 100000, not {}",
            config.batch_size
        );
    }
    Ok((options, config))
}

/// Connects to the event store, waiting (and saying so, in the log and in `/health/ready`)
/// while PostgreSQL is unreachable.
async fn connect(options: &PgConnectOptions, starting: &Starting) -> Arc<dyn EventStore> {
    loop {
        match PostgresEventStore::connect(options.clone(), 4).await {
            Ok(store) => return Arc::new(store),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = CONNECT_RETRY.as_secs(),
                    "cannot open the PostgreSQL event store; retrying");
                *starting.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        }
    }
}

/// The readiness checks before the relay exists (it needs the store's identity) and after:
/// `/health/ready` answers from the start, naming PostgreSQL while it is unreachable.
#[derive(Default)]
struct Starting {
    relay: OnceLock<Vec<Arc<dyn ReadinessCheck>>>,
    /// The last failure to open the event store.
    error: Mutex<Option<String>>,
}

/// One of the relay's checks, by position in [`Relay::readiness_checks`], answered for it
/// until the relay exists.
struct Deferred {
    name: &'static str,
    index: usize,
    starting: Arc<Starting>,
}

#[async_trait]
impl ReadinessCheck for Deferred {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        match self.starting.relay.get() {
            Some(checks) => checks[self.index].check().await,
            None if self.name == "eventStore" => Err(format!(
                "connecting to PostgreSQL: {}",
                self.starting
                    .error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_deref()
                    .unwrap_or("first attempt")
            )),
            None => Err("not started: waiting for the event store".into()),
        }
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        match self.starting.relay.get() {
            Some(checks) => checks[self.index].detail().await,
            None => None,
        }
    }
}

/// `order-platform relay`: runs until Ctrl-C or SIGTERM.
pub async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::start(&args.telemetry, "order-platform-relay")?;
    order_http::metrics_handle();
    let (options, config) = settings(&args)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // Like every service's banner: says where its health and metrics are (and lets a
    // supervisor or test learn a port chosen with :0).
    let _ = writeln!(
        std::io::stdout(),
        "Order Platform relay listening on http://{address} (health and metrics; topic {})",
        args.topic
    );
    let starting = Arc::new(Starting::default());
    // The names and order of `Relay::readiness_checks`.
    let checks = ["kafka", "schemaRegistry", "eventStore", "relay"]
        .into_iter()
        .enumerate()
        .map(|(index, name)| {
            Arc::new(Deferred {
                name,
                index,
                starting: starting.clone(),
            }) as Arc<dyn ReadinessCheck>
        })
        .collect();
    let router = order_http::operational_router(checks);
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let http = tokio::spawn({
        let stopping = until_stopped(stopped.clone());
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopping)
                .await
        }
    });
    let store = tokio::select! {
        store = connect(&options, &starting) => store,
        () = shutdown_signal() => {
            let _ = stop.send(true);
            return Ok(());
        }
    };
    let topic = config.topic.clone();
    let relay = Arc::new(Relay::new(store, options, config));
    let _ = starting.relay.set(relay.readiness_checks());
    let lag = tokio::spawn({
        let relay = relay.clone();
        let stopping = until_stopped(stopped.clone());
        async move { relay.watch_lag(stopping).await }
    });
    let running = tokio::spawn({
        let relay = relay.clone();
        let stopping = until_stopped(stopped);
        async move { relay.run(stopping).await }
    });
    tracing::info!(%address, %topic, store = %relay.store_id(), "relay started (health and metrics on this address)");
    shutdown_signal().await;
    tracing::info!("stopping");
    let _ = stop.send(true);
    if tokio::time::timeout(STOP_TIMEOUT, running).await.is_err() {
        tracing::warn!("the relay did not stop in time; exiting anyway");
    }
    let _ = lag.await;
    let _ = tokio::time::timeout(STOP_TIMEOUT, http).await;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::FileConfig;
    use clap::{CommandFactory, FromArgMatches};

    /// `relay` parsed from `argv` with `file` applied, as `main` does it, without consulting
    /// the developer's ORDER_PLATFORM_* variables.
    fn relay_args(argv: &[&str], file: &str) -> RelayArgs {
        let matches = Cli::command()
            .mut_args(|a| a.env(None))
            .mut_subcommand("relay", |s| s.mut_args(|a| a.env(None)))
            .try_get_matches_from(argv)
            .expect("valid arguments");
        let Some(Command::Relay(mut args)) = Cli::from_arg_matches(&matches).unwrap().command
        else {
            panic!("not relay")
        };
        let file: FileConfig = toml::from_str(file).unwrap();
        file.apply_to_relay(&mut args, matches.subcommand_matches("relay").unwrap());
        args
    }

    #[test]
    fn the_relay_takes_its_settings_from_flags_then_the_file_then_defaults() {
        let file = "database_url = \"postgres://u:p@db/orders\"\n\
                    kafka_bootstrap_servers = \"k1:9092\"\n\
                    schema_registry_url = \"http://r/apis/ccompat/v7\"\n\
                    partitions = 12\n\
                    kafka_timeout = \"5s\"\n\
                    [kafka_options]\n\
                    \"security.protocol\" = \"sasl_ssl\"\n\
                    \"sasl.username\" = \"relay\"\n";
        let args = relay_args(&["order-platform", "relay", "--topic", "mine"], file);
        let (_, config) = settings(&args).unwrap();
        assert_eq!(config.kafka.bootstrap_servers(), "k1:9092");
        assert_eq!(
            config.kafka.client().get("security.protocol"),
            Some("sasl_ssl")
        );
        assert_eq!(config.kafka.client().get("sasl.username"), Some("relay"));
        assert_eq!(config.schema_registry_url, "http://r/apis/ccompat/v7");
        assert_eq!(config.topic, "mine", "the flag wins");
        assert_eq!(config.partitions, 12, "from the file");
        assert_eq!(config.replication_factor, 1, "default");
        assert_eq!(config.batch_size, 500, "default");
        assert_eq!(config.kafka_timeout, Duration::from_secs(5));
        assert_eq!(args.listen, "127.0.0.1:8090".parse().unwrap());

        let args = relay_args(
            &[
                "order-platform",
                "relay",
                "--kafka-bootstrap-servers",
                "k2:9092",
                "--partitions",
                "2",
                "--kafka-option",
                "security.protocol=ssl;ssl.ca.location=/etc/ca.pem",
            ],
            file,
        );
        let (_, config) = settings(&args).unwrap();
        assert_eq!(config.kafka.bootstrap_servers(), "k2:9092");
        let client = config.kafka.client();
        assert_eq!(
            client.get("security.protocol"),
            Some("ssl"),
            "the flags win"
        );
        assert_eq!(client.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(
            client.get("sasl.username"),
            None,
            "the flags replace the file's table"
        );
        assert_eq!(config.partitions, 2);
        assert_eq!(config.topic, "order-events");
    }

    #[test]
    fn a_missing_or_bad_setting_is_named() {
        let args = relay_args(&["order-platform", "relay"], "");
        let error = settings(&args).unwrap_err().to_string();
        assert!(error.contains("--database-url"), "{error}");
        assert!(error.contains("ORDER_PLATFORM_DATABASE_URL"), "{error}");

        let args = relay_args(
            &[
                "order-platform",
                "relay",
                "--database-url",
                "postgres://db/x",
            ],
            "schema_registry_url = \"http://r\"",
        );
        let error = settings(&args).unwrap_err().to_string();
        assert!(error.contains("--kafka-bootstrap-servers"), "{error}");
        assert!(error.contains("kafka_bootstrap_servers"), "{error}");

        let args = relay_args(
            &[
                "order-platform",
                "relay",
                "--database-url",
                "postgres://db/x",
                "--topic",
                "a b",
            ],
            "schema_registry_url = \"http://r\"\nkafka_bootstrap_servers = \"k\"\npartitions = 0",
        );
        let error = settings(&args).unwrap_err().to_string();
        assert!(error.contains("\"a b\""), "{error}");

        // Exactly-once rests on the delivery settings: they cannot be given.
        let args = relay_args(
            &[
                "order-platform",
                "relay",
                "--database-url",
                "postgres://db/x",
                "--kafka-option",
                "enable.idempotence=false",
            ],
            "schema_registry_url = \"http://r\"\nkafka_bootstrap_servers = \"k\"",
        );
        let error = settings(&args).unwrap_err();
        assert!(error.downcast_ref::<crate::cli::UsageError>().is_some());
        let error = error.to_string();
        assert!(
            error.contains("--kafka-option")
                && error.contains("enable.idempotence: not a connection setting"),
            "{error}"
        );
        assert!(
            Cli::command()
                .try_get_matches_from(["order-platform", "relay", "--kafka-option", "no-equals"])
                .is_err()
        );
        assert!(
            Cli::command()
                .try_get_matches_from(["order-platform", "relay", "--partitions", "0"])
                .is_err()
        );
    }
}
