//! The command line of `order-platform`: subcommands, flags, and what each
//! subcommand runs.
//!
//! With no subcommand it runs `serve`: the whole platform in one process on
//! embedded defaults (SQLite in `./data`, http://127.0.0.1:8080), and serve's
//! flags work without the subcommand (`order-platform --listen 9000`).
//!
//! Errors are printed by [`main`] as `error: <message>` and their causes, never
//! a backtrace: exit status 2 for a usage error (a flag, a value, the
//! configuration file: [`UsageError`]), 1 for a failure while running (a port
//! in use, a data dir locked by another server, a database that does not
//! answer).

use crate::{config, relay, serve};
use anyhow::Context;
use clap::error::ErrorKind;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use config::FileConfig;
use order_auth::{AuthError, LocalSigningKey, Role};
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A mistake in what the user asked for (a flag, a value, the configuration
/// file), as opposed to a failure while running: `main` exits with 2 for it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[derive(Parser)]
#[command(
    name = "order-platform",
    version,
    about = "Event-sourced order management platform",
    after_help = "With no subcommand, runs `serve`, and serve's flags work without it: \
        `order-platform --listen 127.0.0.1:9000 --data-dir x` is \
        `order-platform serve --listen 127.0.0.1:9000 --data-dir x`.\n\
        Exit status: 0 on success, 2 for a usage or configuration error, 1 for a \
        failure while running."
)]
pub(crate) struct Cli {
    /// A TOML file with settings (keys are the flag names in snake case, e.g.
    /// `data_dir`). Flags and ORDER_PLATFORM_* variables take precedence over it.
    #[arg(
        long,
        global = true,
        env = "ORDER_PLATFORM_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

// `CommandService` names the `command-service` subcommand (clap derives the
// name from the variant), so it keeps the enum's name as its prefix.
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the whole platform in one process (the default).
    Serve(ServeArgs),
    /// Print a bearer token signed with the data dir's key, alone on stdout.
    Token(TokenArgs),
    /// Create or upgrade the event store and read model schemas, then exit.
    Migrate(StoreArgs),
    /// Publish the PostgreSQL event store's log to Kafka, exactly once (one active relay per
    /// store and topic; start several, the others wait as standbys).
    Relay(RelayArgs),
    /// Run the API gateway in front of the command and query services: token
    /// checks, rate limits (shared through Redis), routing.
    Gateway(GatewayArgs),
    /// Build the next Elasticsearch orders index from the PostgreSQL event store while the
    /// current one serves, then move the alias to it (no downtime).
    Rebuild(crate::rebuild::RebuildArgs),
    /// Compare every Elasticsearch order with a replay of the PostgreSQL event store and print
    /// `missing=… stale=… duplicated=…` (exit 1 if any differ).
    Verify(crate::rebuild::VerifyArgs),
    /// Run the command routes (POST/DELETE) alone, on the PostgreSQL event store:
    /// the write side of a production deployment, behind the gateway.
    CommandService(crate::command_service::CommandServiceArgs),
    /// Serve the queries from Elasticsearch, fed from Kafka by an in-process consumer
    /// group (production): read-your-writes through the relay's watermarks, dead letters.
    QueryService(QueryServiceArgs),
    /// List or replay the dead letters of the Kafka projector (`<topic>.dlq`).
    DeadLetters(DeadLettersArgs),
}

mod query_args;
mod service_args;
pub use query_args::{DeadLettersAction, DeadLettersArgs, KafkaReadArgs, QueryServiceArgs};
pub(crate) use service_args::parse_rate_limit;
pub use service_args::{GatewayArgs, RelayArgs};

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Folder for the SQLite files and the signing key.
    #[arg(long, env = "ORDER_PLATFORM_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Keep events in PostgreSQL instead of SQLite, e.g. postgres://user:pass@host/db.
    #[arg(long, env = "ORDER_PLATFORM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT, HOST:PORT or a port alone (8080 means
    /// 127.0.0.1:8080, this machine only; 0.0.0.0:8080 is every interface). A host
    /// name is resolved at start-up; one with several addresses (localhost: 127.0.0.1
    /// and ::1) means its first IPv4 address.
    #[arg(long, env = "ORDER_PLATFORM_LISTEN", default_value = "127.0.0.1:8080",
        value_parser = config::parse_listen, value_name = "ADDR")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDER_PLATFORM_BODY_LIMIT", default_value_t = order_http::DEFAULT_BODY_LIMIT,
        value_parser = parse_body_limit, value_name = "BYTES")]
    pub body_limit: usize,
    /// Snapshot an order every this many events (0 disables snapshots).
    #[arg(long, env = "ORDER_PLATFORM_SNAPSHOT_EVERY", default_value_t = order_command_service::DEFAULT_SNAPSHOT_EVERY,
        value_parser = parse_snapshot_every, value_name = "EVENTS")]
    pub snapshot_every: u64,
    /// When the read model in the data dir was built from another event store
    /// (say SQLite, and now --database-url names PostgreSQL), empty it and rebuild
    /// it from this one instead of refusing to start. A one-off: not read from
    /// the configuration file.
    #[arg(long, env = "ORDER_PLATFORM_REBUILD")]
    pub rebuild: bool,
    /// Longest time a request may run (e.g. 500ms, 30s, 2m); a slower one is
    /// abandoned and answered 503 with code `request_timeout`.
    #[arg(long, env = "ORDER_PLATFORM_REQUEST_TIMEOUT", default_value = "30s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Most API requests handled at once; one more is refused at once with 503,
    /// code `overloaded` and Retry-After (never queued). /health/* and /metrics
    /// are not counted and always answer.
    #[arg(long, env = "ORDER_PLATFORM_MAX_IN_FLIGHT", default_value_t = order_http::DEFAULT_MAX_IN_FLIGHT,
        value_parser = config::parse_max_in_flight, value_name = "N")]
    pub max_in_flight: usize,
    /// After SIGTERM or Ctrl-C: stop accepting connections, let requests in
    /// flight finish for at most this long (e.g. 10s), then exit anyway.
    #[arg(long, env = "ORDER_PLATFORM_SHUTDOWN_TIMEOUT", default_value = "20s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub oidc: OidcArgs,
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

/// Whose tokens to trust. Without `--oidc-issuer`, the built-in key of the data
/// dir (tokens from `order-platform token`); with it, that OIDC issuer only.
#[derive(Args, Clone, Debug)]
pub struct OidcArgs {
    /// Trust bearer tokens of this OpenID Connect issuer (its URL exactly as in
    /// the tokens' `iss`, e.g. https://sso.example.com/realms/orders) instead of
    /// the built-in key. Its discovery document and keys are fetched at start-up.
    #[arg(long, env = "ORDER_PLATFORM_OIDC_ISSUER", value_name = "URL",
        value_parser = parse_issuer)]
    pub oidc_issuer: Option<String>,
    /// The audience (`aud`) tokens of the issuer must carry for this API.
    /// Required with --oidc-issuer.
    #[arg(long, env = "ORDER_PLATFORM_OIDC_AUDIENCE", value_name = "AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The issuer's client that stands for this API: its client roles
    /// (`resource_access.<client>.roles`) count besides the realm roles; roles on
    /// every other client are ignored. Default: the audience.
    #[arg(long, env = "ORDER_PLATFORM_OIDC_CLIENT_ID", value_name = "CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// How long the issuer's keys (JWKS) are used before being fetched again: a
    /// key removed at the issuer stops being accepted within this time.
    #[arg(long, env = "ORDER_PLATFORM_OIDC_JWKS_CACHE", default_value = "5m",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub oidc_jwks_cache: Duration,
    /// A token signed with a key we do not know makes us fetch the keys again,
    /// at most once per this interval (made-up key ids cannot flood the issuer).
    #[arg(long, env = "ORDER_PLATFORM_OIDC_JWKS_MIN_REFRESH", default_value = "5s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub oidc_jwks_min_refresh: Duration,
    /// Clock skew allowed when checking a token's `exp` and `nbf`.
    #[arg(long, env = "ORDER_PLATFORM_OIDC_LEEWAY", default_value = "30s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub oidc_leeway: Duration,
    /// At start-up, keep trying to reach the issuer for this long (it may be
    /// starting too), then exit with an error naming it.
    #[arg(long, env = "ORDER_PLATFORM_OIDC_STARTUP_TIMEOUT", default_value = "30s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub oidc_startup_timeout: Duration,
}

impl OidcArgs {
    /// The verifier's configuration, `None` for the built-in key. Errors name
    /// the setting that is missing.
    pub fn config(&self) -> anyhow::Result<Option<order_oidc::OidcConfig>> {
        let Some(issuer) = &self.oidc_issuer else {
            if self.oidc_audience.is_some() || self.oidc_client_id.is_some() {
                anyhow::bail!(
                    "--oidc-audience / --oidc-client-id (ORDER_PLATFORM_OIDC_AUDIENCE, \
                     ORDER_PLATFORM_OIDC_CLIENT_ID, oidc_audience, oidc_client_id) are set \
                     but --oidc-issuer (ORDER_PLATFORM_OIDC_ISSUER, oidc_issuer) is not: \
                     set the issuer too, or remove them to use the built-in key"
                );
            }
            return Ok(None);
        };
        let audience = self.oidc_audience.clone().filter(|a| !a.trim().is_empty());
        let Some(audience) = audience else {
            anyhow::bail!(
                "--oidc-issuer needs --oidc-audience (ORDER_PLATFORM_OIDC_AUDIENCE, \
                 oidc_audience): the `aud` this API's tokens carry, e.g. order-platform-api"
            );
        };
        let mut config = order_oidc::OidcConfig::new(issuer.clone(), audience);
        if let Some(client) = &self.oidc_client_id {
            config.client_id = client.clone();
        }
        config.jwks_cache = self.oidc_jwks_cache;
        config.jwks_min_refresh = self.oidc_jwks_min_refresh;
        config.leeway = self.oidc_leeway;
        Ok(Some(config))
    }
}

/// An issuer URL: http(s), no query or fragment.
pub(crate) fn parse_issuer(text: &str) -> Result<String, String> {
    let ok = (text.starts_with("https://") || text.starts_with("http://"))
        && text.len() > "https://".len()
        && !text.contains(['?', '#', ' ']);
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid issuer {text:?}; use the issuer's URL as in the tokens' `iss`, \
             e.g. https://sso.example.com/realms/orders"
        ))
    }
}

impl ServeArgs {
    /// `serve`'s settings from flags alone (`["--data-dir", "d", "--listen",
    /// "127.0.0.1:0"]`), every other setting at its command-line default, and no
    /// `ORDER_PLATFORM_*` variable or configuration file consulted: how a test or
    /// an embedding program describes an [`crate::App`] with the very flags it
    /// would give the binary.
    pub fn from_flags<I, T>(flags: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = ServeArgs::augment_args(clap::Command::new("serve"))
            .no_binary_name(true)
            .mut_args(|a| a.env(None));
        ServeArgs::from_arg_matches(&command.try_get_matches_from(flags)?)
    }
}

#[derive(Args)]
pub(crate) struct TokenArgs {
    /// The subject: for customers, their customer id.
    #[arg(long)]
    sub: String,
    /// A role: customer, ops, analyst or admin. Repeat for several.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    roles: Vec<Role>,
    /// The data dir of the server that must accept the token (the server creates
    /// the key there when it first starts).
    #[arg(long, env = "ORDER_PLATFORM_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Lifetime, such as 90s, 30m, 1h or 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: chrono::Duration,
}

/// `--body-limit`: bytes, in words when it is not a number.
fn parse_body_limit(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| {
        format!("invalid body limit {text:?}; use a whole number of bytes, e.g. 1048576 (1 MiB)")
    })
}

/// `--snapshot-every`: events, in words when it is not a number.
fn parse_snapshot_every(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid snapshot interval {text:?}; use a whole number of events, \
             e.g. 50 (0 turns snapshots off)"
        )
    })
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        format!("unknown role {text:?}; expected one of customer, ops, analyst, admin")
    })
}

/// `90s`, `30m`, `1h`, `7d`.
fn parse_ttl(text: &str) -> Result<chrono::Duration, String> {
    let bad = || format!("invalid duration {text:?}; use a number with s, m, h or d, e.g. 1h");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if seconds <= 0 || seconds > 366 * 86_400 {
        return Err(format!("duration {text:?} must be between 1s and 366d"));
    }
    Ok(chrono::Duration::seconds(seconds))
}

/// The whole of `main`: parses the command line, runs the subcommand, and
/// prints an error as `error: <message>` with its causes (no backtrace, even
/// with `RUST_BACKTRACE=1`: a user's mistake is not a crash). Exit status 2
/// for a [`UsageError`], 1 for any other failure.
pub fn main() -> ExitCode {
    let (config, command, given) = match parse_command_line(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        // help and --version (status 0), or a usage error (2), as clap prints them
        Err(e) => e.exit(),
    };
    match run(config, command, given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = std::io::stderr().write_all(report(&error).as_bytes());
            if error.chain().any(|e| e.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `error: <message>`, then each cause on its own line, as cargo prints them.
fn report(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}\n");
    let causes: Vec<String> = error.chain().skip(1).map(|e| e.to_string()).collect();
    if !causes.is_empty() {
        text.push_str("\nCaused by:\n");
        for cause in causes {
            text.push_str(&format!("    {cause}\n"));
        }
    }
    text
}

/// Runs the parsed subcommand.
fn run(config: Option<PathBuf>, command: Command, given: ArgMatches) -> anyhow::Result<()> {
    let file = match &config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    match command {
        Command::Token(mut args) => {
            file.apply_to_data_dir(&mut args.data_dir, &given);
            token(args)
        }
        Command::Migrate(mut args) => {
            file.apply_to_store(&mut args, &given);
            runtime()?.block_on(serve::migrate(args))
        }
        Command::Relay(mut args) => {
            file.apply_to_relay(&mut args, &given);
            let runtime = runtime()?;
            let relayed = runtime.block_on(relay::relay(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            relayed
        }
        Command::Gateway(mut args) => {
            file.apply_to_gateway(&mut args, &given)?;
            let runtime = runtime()?;
            let served = runtime.block_on(crate::gateway::gateway(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            served
        }
        Command::Rebuild(mut args) => {
            file.apply_to_rebuild(&mut args, &given);
            let runtime = runtime()?;
            let rebuilt = runtime.block_on(crate::rebuild::rebuild(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            rebuilt
        }
        Command::Verify(mut args) => {
            file.apply_to_read_side(&mut args.read_side, &given);
            let runtime = runtime()?;
            let verified = runtime.block_on(crate::rebuild::verify(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            verified
        }
        Command::CommandService(mut args) => {
            file.apply_to_command_service(&mut args, &given);
            let runtime = runtime()?;
            let served = runtime.block_on(crate::command_service::command_service(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            served
        }
        Command::QueryService(mut args) => {
            file.apply_to_query_service(&mut args, &given);
            let runtime = runtime()?;
            let served = runtime.block_on(crate::query_service::query_service(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            served
        }
        Command::DeadLetters(mut args) => {
            if let (
                DeadLettersAction::List(kafka) | DeadLettersAction::Replay(kafka),
                Some((_, action)),
            ) = (&mut args.action, given.subcommand())
            {
                file.apply_to_kafka_read(kafka, action);
            }
            let runtime = runtime()?;
            let done = runtime.block_on(crate::dead_letters::command(args));
            runtime.shutdown_timeout(Duration::from_secs(1));
            done
        }
        Command::Serve(mut args) => {
            file.apply_to_serve(&mut args, &given);
            let runtime = runtime()?;
            let served = runtime.block_on(serve::serve(args));
            // Requests abandoned at the shutdown deadline may still be tasks of
            // this runtime: do not let them hold the exit up.
            runtime.shutdown_timeout(Duration::from_secs(1));
            served
        }
    }
}

/// The `--config` file, the subcommand, and clap's matches for the subcommand
/// (which tell whether a value came from a flag, the environment or a default),
/// from `argv` (the binary's name first).
///
/// No subcommand means `serve`: `order-platform [--config FILE]` alone, and
/// `order-platform --listen 9000 --data-dir x`, which is read as
/// `order-platform serve --listen 9000 --data-dir x`. Flags that belong to
/// another subcommand, written before it (`order-platform --data-dir x token …`),
/// are refused with the command line to type instead.
pub(crate) fn parse_command_line(
    argv: Vec<OsString>,
) -> Result<(Option<PathBuf>, Command, ArgMatches), clap::Error> {
    let as_serve = || {
        let mut argv = argv.clone();
        argv.insert(1.min(argv.len()), "serve".into());
        argv
    };
    let mut matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(matches) if matches.subcommand().is_some() => matches,
        Ok(_) => Cli::command().try_get_matches_from(as_serve())?,
        Err(e) if e.kind() == ErrorKind::UnknownArgument => {
            match Cli::command().try_get_matches_from(as_serve()) {
                Ok(matches) => matches,
                Err(serve_error) => {
                    return Err(flags_before_subcommand(&argv).unwrap_or(serve_error));
                }
            }
        }
        Err(e) => return Err(e),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
    match (cli.command, matches.remove_subcommand()) {
        (Some(command), Some((_, given))) => Ok((cli.config, command, given)),
        _ => Err(Cli::command().error(
            ErrorKind::MissingSubcommand,
            "no subcommand, even after defaulting to serve",
        )),
    }
}

/// `order-platform --data-dir x token --sub a`: a subcommand after flags that
/// are not the top level's. The error says the command line that works.
fn flags_before_subcommand(argv: &[OsString]) -> Option<clap::Error> {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let at = argv
        .iter()
        .skip(2)
        .position(|a| names.iter().any(|n| a == n.as_str()))?
        + 2;
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut fixed = vec!["order-platform".to_string(), words[at].clone()];
    fixed.extend(words[1..at].iter().cloned());
    fixed.extend(words[at + 1..].iter().cloned());
    Some(Cli::command().error(
        ErrorKind::UnknownArgument,
        format!(
            "flags go after the subcommand `{}`\n\n  did you mean `{}`?",
            words[at],
            fixed.join(" ")
        ),
    ))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    if args.sub.trim().is_empty() {
        return Err(UsageError(
            "--sub must not be blank: give the subject, e.g. --sub alice".into(),
        )
        .into());
    }
    // Only the server creates the key: a key made here would sign tokens that no
    // running server accepts.
    let key = match LocalSigningKey::load(&args.data_dir) {
        Err(AuthError::NoKey { .. }) => {
            let dir = args.data_dir.display();
            anyhow::bail!(
                "no signing key in {dir}: start the server first (`order-platform serve \
                 --data-dir {dir}`) or point --data-dir at the data dir of the running server"
            )
        }
        loaded => loaded?,
    };
    let token = key.issue(&args.sub, &args.roles, chrono::Utc::now(), args.ttl)?;
    writeln!(std::io::stdout(), "{token}").context("writing the token to stdout")?;
    Ok(())
}

#[cfg(test)]
mod tests;
