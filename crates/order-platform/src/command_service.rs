//! `order-platform command-service`: the command routes (`POST`/`DELETE`,
//! DESIGN.md §4.1) as a process of their own, in front of the PostgreSQL
//! event store, with `/health/*`, `/metrics` and the commands' OpenAPI
//! document (which the gateway merges with the query service's).
//!
//! It needs nothing but PostgreSQL: a command is decided against the order
//! rebuilt from its events (and snapshots), and its answer is the order as the
//! write side now knows it (`OrderView` is only the body's shape, computed from
//! that state, not read from a read model). So commands keep being accepted
//! while Kafka, the relay, Elasticsearch or the query service are down; the
//! relay publishes what was appended once Kafka is back.

use crate::cli::UsageError;
use crate::config;
use crate::serve::{EventStoreCheck, cannot_listen, shutdown_signal};
use crate::service::{ServiceParts, service_router, trusted_verifier};
use crate::{OidcArgs, StoreArgs};
use axum::Router;
use clap::Args;
use order_command_service::CommandService;
use order_http::ReadinessCheck;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Clone, Debug)]
pub struct CommandServiceArgs {
    /// Address to listen on: IP:PORT, HOST:PORT or a port alone (8081 means
    /// 127.0.0.1:8081).
    #[arg(long, env = "ORDER_PLATFORM_LISTEN", default_value = "127.0.0.1:8081",
        value_parser = config::parse_listen, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The PostgreSQL event store, e.g. postgres://user:pass@host/db (required).
    /// Its migrations run at start-up.
    #[arg(
        long,
        env = "ORDER_PLATFORM_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub oidc: OidcArgs,
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
    /// Without --oidc-issuer: trust the built-in key of this data dir (the data
    /// dir of a `serve` sharing it; `order-platform token --data-dir` signs
    /// with it). Nothing else is kept there.
    #[arg(long, env = "ORDER_PLATFORM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDER_PLATFORM_BODY_LIMIT", default_value_t = order_http::DEFAULT_BODY_LIMIT,
        value_name = "BYTES")]
    pub body_limit: usize,
    /// Snapshot an order every this many events (0 disables snapshots).
    #[arg(
        long,
        env = "ORDER_PLATFORM_SNAPSHOT_EVERY",
        default_value_t = 50,
        value_name = "EVENTS"
    )]
    pub snapshot_every: u64,
    /// Longest time a command may run (e.g. 500ms, 30s); a slower one is
    /// answered 503 `request_timeout`, wholly applied or not at all.
    #[arg(long, env = "ORDER_PLATFORM_REQUEST_TIMEOUT", default_value = "30s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Most commands handled at once; one more is refused at once with 503
    /// `overloaded` and Retry-After. /health/* and /metrics are not counted.
    #[arg(long, env = "ORDER_PLATFORM_MAX_IN_FLIGHT", default_value_t = order_http::DEFAULT_MAX_IN_FLIGHT,
        value_parser = config::parse_max_in_flight, value_name = "N")]
    pub max_in_flight: usize,
    /// After SIGTERM or Ctrl-C: stop accepting connections, let commands in
    /// flight finish for at most this long, then exit anyway.
    #[arg(long, env = "ORDER_PLATFORM_SHUTDOWN_TIMEOUT", default_value = "20s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
}

/// The settings without which the command service cannot start, named as the
/// user can give them (a usage error: exit status 2).
fn database_url(args: &CommandServiceArgs) -> anyhow::Result<String> {
    match &args.database_url {
        Some(url) if !url.trim().is_empty() => {
            // Checked before anything else starts: a typo is a usage error.
            let scheme = url.split("://").next().unwrap_or_default();
            let parsed = match scheme {
                "postgres" | "postgresql" => sqlx::postgres::PgConnectOptions::from_str(url)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                _ => Err(format!("scheme {scheme:?}")),
            };
            parsed.map_err(|e| {
                UsageError(format!(
                    "--database-url (ORDER_PLATFORM_DATABASE_URL, config `database_url`) is \
                     not a PostgreSQL URL ({e}); use postgres://USER:PASSWORD@HOST:5432/DATABASE"
                ))
            })?;
            Ok(url.clone())
        }
        _ => Err(UsageError(
            "the command service needs --database-url (or ORDER_PLATFORM_DATABASE_URL, or \
             `database_url` in the --config file): the PostgreSQL event store, e.g. \
             postgres://USER:PASSWORD@HOST:5432/DATABASE"
                .into(),
        )
        .into()),
    }
}

/// The command service's HTTP application, on its PostgreSQL store.
pub async fn command_service_router(args: &CommandServiceArgs) -> anyhow::Result<Router> {
    order_http::metrics_handle();
    let url = database_url(args)?;
    let verifier =
        trusted_verifier(&args.oidc, args.data_dir.as_deref(), "command service").await?;
    let store = crate::serve::open_event_store(&StoreArgs {
        data_dir: PathBuf::new(),
        database_url: Some(url),
    })
    .await?;
    let commands = order_command_service::router(CommandService {
        store: store.clone(),
        // Nobody to wake in this process: the relay tails the log by itself.
        on_append: Arc::new(|_| {}),
        snapshot_every: args.snapshot_every,
    });
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(EventStoreCheck(store))];
    let parts = ServiceParts {
        verifier,
        checks,
        limits: order_http::Limits {
            request_timeout: args.request_timeout,
            max_in_flight: args.max_in_flight,
        },
        body_limit: args.body_limit,
        pages: false,
    };
    Ok(service_router(commands, parts))
}

/// `order-platform command-service`, until Ctrl-C or SIGTERM.
pub async fn command_service(args: CommandServiceArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::start(&args.telemetry, "order-platform-command-service")?;
    let router = command_service_router(&args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| cannot_listen(args.listen, e))?;
    let address = listener.local_addr()?;
    let _ = writeln!(
        std::io::stdout(),
        "Order Platform command service listening on http://{address}\n\
         API document: http://{address}/api/v1/openapi.json"
    );
    tracing::info!(%address, "command service listening");
    crate::serve::serve_until_stopped(listener, router, shutdown_signal(), args.shutdown_timeout)
        .await?;
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

    /// `command-service` parsed from `argv` with the file `file` applied, as
    /// `main` does it, without the developer's ORDER_PLATFORM_* variables.
    fn parsed(argv: &[&str], file: &str) -> CommandServiceArgs {
        let matches = Cli::command()
            .mut_args(|a| a.env(None))
            .mut_subcommand("command-service", |s| s.mut_args(|a| a.env(None)))
            .try_get_matches_from(argv)
            .expect("valid arguments");
        let Some(Command::CommandService(mut args)) =
            Cli::from_arg_matches(&matches).unwrap().command
        else {
            panic!("not command-service")
        };
        let file: FileConfig = toml::from_str(file).unwrap();
        let given = matches.subcommand_matches("command-service").unwrap();
        file.apply_to_command_service(&mut args, given);
        args
    }

    #[test]
    fn settings_come_from_flags_then_the_file_then_defaults() {
        let file = "database_url = \"postgres://u:p@db/orders\"\n\
                    oidc_issuer = \"https://sso.example.com/realms/o\"\n\
                    oidc_audience = \"api\"\n\
                    snapshot_every = 7\n\
                    request_timeout = \"5s\"\n";
        let args = parsed(
            &["order-platform", "command-service", "--snapshot-every", "9"],
            file,
        );
        assert_eq!(database_url(&args).unwrap(), "postgres://u:p@db/orders");
        assert_eq!(args.snapshot_every, 9, "the flag wins");
        assert_eq!(
            args.request_timeout,
            Duration::from_secs(5),
            "from the file"
        );
        assert_eq!(args.max_in_flight, order_http::DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(args.listen, "127.0.0.1:8081".parse().unwrap(), "default");
        assert_eq!(args.oidc.oidc_audience.as_deref(), Some("api"));
    }

    #[test]
    fn a_missing_or_foreign_database_url_is_a_usage_error_naming_it() {
        for argv in [
            &["order-platform", "command-service"][..],
            &["order-platform", "command-service", "--database-url", " "],
            &[
                "order-platform",
                "command-service",
                "--database-url",
                "mysql://db/x",
            ],
        ] {
            let error = database_url(&parsed(argv, "")).unwrap_err();
            assert!(error.is::<UsageError>(), "{error}");
            assert!(error.to_string().contains("--database-url"), "{error}");
        }
    }
}
