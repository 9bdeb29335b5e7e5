//! The optional TOML configuration file (`--config FILE`, or `ORDER_PLATFORM_CONFIG`).
//!
//! Every setting can come from four places; the first one that has it wins:
//! the command-line flag, its `ORDER_PLATFORM_*` environment variable, the
//! configuration file, the built-in default. The file's keys are the flag names
//! in snake case:
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data_dir = "/var/lib/order-platform"      # relative paths: from the file's folder
//! database_url = "postgres://orders:secret@db/orders"
//! body_limit = 1048576
//! snapshot_every = 10
//! request_timeout = "30s"                   # durations: ms, s, m or h
//! max_in_flight = 512
//! shutdown_timeout = "20s"
//! oidc_issuer = "https://sso.example.com/realms/orders"   # trust this issuer's tokens
//! oidc_audience = "order-platform-api"
//! oidc_jwks_cache = "5m"
//! # relay
//! kafka_bootstrap_servers = "kafka:9092"
//! schema_registry_url = "http://registry:8081/apis/ccompat/v7"
//! topic = "order-events"
//! partitions = 6
//! replication_factor = 3
//! batch_size = 500
//! kafka_timeout = "30s"
//! [kafka_options]                          # TLS and SASL, as librdkafka names them
//! "security.protocol" = "sasl_ssl"
//! "ssl.ca.location" = "/etc/kafka/ca.pem"
//! # query-service and dead-letters (also kafka_*, schema_registry_url, topic, batch_size)
//! elasticsearch_url = "http://elasticsearch:9200"
//! es_index_prefix = ""
//! group_id = "order-platform-query"
//! ```
//!
//! The file is checked whole before anything starts: an unknown key, a value of
//! the wrong type or an unparsable address is an error that names the key and
//! its line and says in words what the key takes (`body_limit` must be a whole
//! number of bytes, e.g. 1048576), even for a key the running subcommand does
//! not use. It is a usage error: the binary exits with status 2.

use crate::cli::UsageError;
use crate::telemetry::TelemetryArgs;
use crate::{OidcArgs, ServeArgs, StoreArgs};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, deserialize_with = "listen")]
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    #[serde(default, deserialize_with = "body_limit")]
    body_limit: Option<usize>,
    #[serde(default, deserialize_with = "snapshot_every")]
    snapshot_every: Option<u64>,
    #[serde(default, deserialize_with = "request_timeout")]
    request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "max_in_flight")]
    max_in_flight: Option<usize>,
    #[serde(default, deserialize_with = "shutdown_timeout")]
    shutdown_timeout: Option<Duration>,
    kafka_bootstrap_servers: Option<String>,
    schema_registry_url: Option<String>,
    topic: Option<String>,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    batch_size: Option<u32>,
    #[serde(default, deserialize_with = "kafka_timeout")]
    kafka_timeout: Option<Duration>,
    /// `{"security.protocol" = "sasl_ssl", "sasl.username" = "relay"}`.
    kafka_options: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "issuer")]
    oidc_issuer: Option<String>,
    oidc_audience: Option<String>,
    oidc_client_id: Option<String>,
    #[serde(default, deserialize_with = "oidc_jwks_cache")]
    oidc_jwks_cache: Option<Duration>,
    #[serde(default, deserialize_with = "oidc_jwks_min_refresh")]
    oidc_jwks_min_refresh: Option<Duration>,
    #[serde(default, deserialize_with = "oidc_leeway")]
    oidc_leeway: Option<Duration>,
    #[serde(default, deserialize_with = "oidc_startup_timeout")]
    oidc_startup_timeout: Option<Duration>,
    // The gateway's.
    command_url: Option<String>,
    query_url: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    /// `{customer = "600/1m+100", anonymous = "60/1m"}`.
    rate_limits: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "command_timeout")]
    command_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "query_timeout")]
    query_timeout: Option<Duration>,
    retries: Option<u32>,
    cors_allow_origins: Option<Vec<String>>,
    hsts: Option<bool>,
    // The Kafka-fed query side's (`query.rs`), `rebuild`'s and `verify`'s.
    elasticsearch_url: Option<String>,
    es_index_prefix: Option<String>,
    group_id: Option<String>,
    rebuild_batch_size: Option<u32>,
    #[serde(default, deserialize_with = "elasticsearch_timeout")]
    elasticsearch_timeout: Option<Duration>,
    // Every service's traces (`telemetry.rs`).
    #[serde(default, deserialize_with = "otlp_endpoint")]
    otlp_endpoint: Option<String>,
    #[serde(default, deserialize_with = "trace_sample_ratio")]
    trace_sample_ratio: Option<f64>,
}

/// What `listen` takes, for error messages.
const LISTEN_EXAMPLES: &str = "use HOST:PORT or a port, e.g. 127.0.0.1:8080, \
     0.0.0.0:8080 (every interface), [::1]:8080, localhost:8080, or 8080 (= 127.0.0.1:8080)";

/// The address to listen on, as `--listen`, `ORDER_PLATFORM_LISTEN` and the
/// file's `listen` take it: `IP:PORT` (`127.0.0.1:8080`, `[::1]:8080`), a bare
/// port (`8080`: 127.0.0.1, this machine only), or `HOST:PORT` with a host name
/// (`localhost:8080`), resolved now. A name that resolves to several addresses
/// (`localhost` is often both 127.0.0.1 and ::1) means its first IPv4 address,
/// else its first address: one socket, one address in the banner. Give an IP to
/// choose another.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("the address is empty; {LISTEN_EXAMPLES}"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u16>()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .map_err(|_| {
                format!("port {text} is out of range: a port is 0 to 65535 (0: any free port)")
            });
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Some((_, rest)) = text.split_once("://") {
        let bare = rest.trim_end_matches('/');
        return Err(format!(
            "{text:?} is a URL; give the address alone, e.g. {bare}"
        ));
    }
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Err(format!(
            "{text:?} has no port; add one, e.g. {}",
            SocketAddr::new(ip, 8080)
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} has no port; add one, e.g. {text}:8080"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!(
            "invalid address {text:?}: the port {port:?} is not a number from 0 to 65535; \
             {LISTEN_EXAMPLES}"
        ));
    };
    let is_name = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !is_name {
        return Err(format!("invalid address {text:?}; {LISTEN_EXAMPLES}"));
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "cannot resolve the host name {host:?} of {text:?} ({e}); \
                 use an IP address, e.g. 127.0.0.1:{port} or 0.0.0.0:{port}"
            )
        })?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| {
            format!(
                "the host name {host:?} resolves to no address; \
                 use an IP address, e.g. 127.0.0.1:{port}"
            )
        })
}

/// A duration such as `500ms`, `30s`, `2m` or `1h`: at least 1 ms, at most a day.
/// Shared by the flags, their variables and the file.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {text:?}; use a whole number with ms, s, m or h, e.g. 30s");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    match millis {
        Some(ms) if (1..=86_400_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(format!("duration {text:?} must be between 1ms and 24h")),
    }
}

/// The largest `max_in_flight` accepted: far above what one process can serve,
/// and below the limits of the semaphore that counts requests.
const MAX_IN_FLIGHT_CEILING: usize = 1_000_000;

/// `max_in_flight`: 1 to a million.
pub fn parse_max_in_flight(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_IN_FLIGHT_CEILING).contains(n))
        .ok_or_else(|| {
            format!("invalid max in-flight {text:?}; use a whole number from 1 to {MAX_IN_FLIGHT_CEILING}")
        })
}

/// A value of the file as TOML wrote it: the settings below read it themselves,
/// so that a value of the wrong type is explained in words (serde alone says
/// `invalid type: string "big", expected usize`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Integer(i64),
    Float(f64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

fn refuse<E: serde::de::Error>(key: &str, expected: &str) -> E {
    E::custom(format!("`{key}` must be {expected}"))
}

/// A whole number from 0 to `max`, or `expected` (in words) as the error.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
    key: &str,
    max: u64,
    expected: &str,
) -> Result<u64, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Integer(n) if n >= 0 && n as u64 <= max => Ok(n as u64),
        _ => Err(refuse(key, expected)),
    }
}

fn body_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let max = usize::MAX.try_into().unwrap_or(u64::MAX);
    let expected = "a whole number of bytes, e.g. 1048576 (1 MiB, the default)";
    let n = whole_number(d, "body_limit", max, expected)?;
    Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
}

fn snapshot_every<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let expected = "a whole number of events, e.g. 10 (the default; 0 turns snapshots off)";
    whole_number(d, "snapshot_every", u64::MAX, expected).map(Some)
}

fn issuer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    crate::cli::parse_issuer(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn max_in_flight<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let expected = format!(
        "a whole number of requests from 1 to {MAX_IN_FLIGHT_CEILING}, e.g. 512 (the default)"
    );
    let ceiling = MAX_IN_FLIGHT_CEILING as u64;
    match whole_number(d, "max_in_flight", ceiling, &expected)? {
        0 => Err(refuse("max_in_flight", &expected)),
        n => Ok(Some(n as usize)),
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
    key: &str,
) -> Result<Option<Duration>, D::Error> {
    let expected = "a duration in quotes such as \"30s\" \
                    (a whole number with ms, s, m or h, from 1ms to 24h)";
    match Raw::deserialize(d)? {
        Raw::Text(text) => parse_duration(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("`{key}`: {e}"))),
        _ => Err(refuse(key, expected)),
    }
}

fn request_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d, "request_timeout")
}

fn shutdown_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d, "shutdown_timeout")
}

/// One deserializer per duration key of the relay and the OIDC/gateway settings,
/// so that an error names its key.
macro_rules! duration_keys {
    ($($key:ident),* $(,)?) => {
        $(
            fn $key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
                duration(d, stringify!($key))
            }
        )*
    };
}
duration_keys!(
    kafka_timeout,
    oidc_jwks_cache,
    oidc_jwks_min_refresh,
    oidc_leeway,
    oidc_startup_timeout,
    command_timeout,
    query_timeout,
    elasticsearch_timeout,
);

/// `otlp_endpoint`: an http(s) URL of an OTLP/HTTP collector.
fn otlp_endpoint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Text(text) => crate::telemetry::parse_endpoint(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("`otlp_endpoint`: {e}"))),
        _ => Err(refuse(
            "otlp_endpoint",
            "a URL in quotes such as \"http://127.0.0.1:4318\"",
        )),
    }
}

/// `trace_sample_ratio`: a number from 0.0 to 1.0 (`1` too).
fn trace_sample_ratio<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let expected = "a number from 0.0 to 1.0, e.g. 0.1";
    let ratio = match Raw::deserialize(d)? {
        Raw::Integer(n) => n as f64,
        Raw::Float(x) => x,
        _ => return Err(refuse("trace_sample_ratio", expected)),
    };
    if (0.0..=1.0).contains(&ratio) {
        Ok(Some(ratio))
    } else {
        Err(refuse("trace_sample_ratio", expected))
    }
}

/// `listen`: the text `--listen` takes, or a bare port as a number (`8080`).
fn listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let parsed = match Raw::deserialize(d)? {
        Raw::Text(text) => parse_listen(&text),
        Raw::Integer(n) => parse_listen(&n.to_string()),
        Raw::Float(_) | Raw::Other(_) => Err(format!(
            "the address must be text in quotes; {LISTEN_EXAMPLES}"
        )),
    };
    parsed
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`listen`: {e}")))
}

/// `KEY=VALUE` of `--kafka-option`.
pub fn parse_kafka_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not KEY=VALUE, e.g. security.protocol=sasl_ssl"
        )),
    }
}

/// The Kafka brokers `who` needs and how to connect to them: `--kafka-bootstrap-servers`
/// and the `--kafka-option`s, checked (a setting that is not a connection setting, or that
/// librdkafka refuses, is a usage error naming it).
pub fn kafka_connection(
    bootstrap_servers: &Option<String>,
    options: &[(String, String)],
    who: &str,
) -> anyhow::Result<order_relay::KafkaConnection> {
    let bootstrap = required(
        bootstrap_servers.clone(),
        who,
        "kafka-bootstrap-servers",
        "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
        "kafka_bootstrap_servers",
    )?;
    order_relay::KafkaConnection::new(bootstrap)
        .with_options(options.iter().cloned())
        .map_err(|e| {
            UsageError(format!(
                "--kafka-option (ORDER_PLATFORM_KAFKA_OPTIONS, `kafka_options`): {e}"
            ))
            .into()
        })
}

/// A setting `who` cannot run without, named as the user can give it:
/// `the relay needs --database-url (or ORDER_PLATFORM_DATABASE_URL, or
/// `database_url` in the --config file)`, a usage error (exit status 2).
pub fn required(
    value: Option<String>,
    who: &str,
    flag: &str,
    variable: &str,
    key: &str,
) -> anyhow::Result<String> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(crate::cli::UsageError(format!(
            "{who} needs --{flag} (or {variable}, or `{key}` in the --config file)"
        ))
        .into()),
    }
}

/// Puts the file's value (if any) into `setting` when the user left the argument
/// `id` alone: no flag and no environment variable.
fn fill_one<T>(setting: &mut T, from_file: Option<T>, given: &ArgMatches, id: &str) {
    let defaulted = matches!(
        given.value_source(id),
        None | Some(ValueSource::DefaultValue)
    );
    if let Some(value) = from_file
        && defaulted
    {
        *setting = value;
    }
}

/// `fill!(file => args, given; a, b, …)`: [`fill_one`] for each named setting, whose
/// file key, argument field and clap id all share the name. A file's `Option<T>`
/// fills a `T` or an `Option<T>` argument alike (`Into`).
macro_rules! fill {
    ($file:expr => $args:expr, $given:expr; $($key:ident),+ $(,)?) => {
        $(
            $crate::config::fill_one(
                &mut $args.$key,
                $file.$key.clone().map(Into::into),
                $given,
                stringify!($key),
            );
        )+
    };
}

impl FileConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        let mut config: FileConfig =
            toml::from_str(&text).map_err(|e| UsageError(located(path, &text, &e)))?;
        if let Some(dir) = &config.data_dir
            && dir.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new(""));
            config.data_dir = Some(base.join(dir));
        }
        Ok(config)
    }

    /// Fills the settings of `serve` that neither a flag nor the environment set.
    pub fn apply_to_serve(&self, args: &mut ServeArgs, given: &ArgMatches) {
        fill!(self => args, given; listen, body_limit, snapshot_every, request_timeout,
            max_in_flight, shutdown_timeout);
        self.apply_to_store(&mut args.store, given);
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
    }

    /// Fills the OIDC settings (every service that verifies tokens).
    pub fn apply_to_oidc(&self, args: &mut OidcArgs, given: &ArgMatches) {
        fill!(self => args, given; oidc_issuer, oidc_audience, oidc_client_id, oidc_jwks_cache,
            oidc_jwks_min_refresh, oidc_leeway, oidc_startup_timeout);
    }

    /// Fills the trace export settings (every service).
    pub fn apply_to_telemetry(&self, args: &mut TelemetryArgs, given: &ArgMatches) {
        fill!(self => args, given; otlp_endpoint, trace_sample_ratio);
    }

    /// Fills the storage settings (used by `serve` and `migrate`).
    pub fn apply_to_store(&self, args: &mut StoreArgs, given: &ArgMatches) {
        fill!(self => args, given; data_dir, database_url);
    }

    /// Fills `--kafka-option` from the file's `[kafka_options]` table.
    fn apply_to_kafka_options(&self, options: &mut Vec<(String, String)>, given: &ArgMatches) {
        let from_file = self
            .kafka_options
            .clone()
            .map(|table| table.into_iter().collect());
        fill_one(options, from_file, given, "kafka_options");
    }

    /// Fills the data dir (the one setting `token` shares with the server).
    pub fn apply_to_data_dir(&self, data_dir: &mut PathBuf, given: &ArgMatches) {
        fill_one(data_dir, self.data_dir.clone(), given, "data_dir");
    }
}

/// `configuration file F, line N: <what is wrong>` and the line itself, from
/// a TOML error (whose own text is a caret diagram over several lines).
fn located(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let file = path.display();
    let Some(span) = error.span() else {
        return format!("configuration file {file}: {}", error.message().trim());
    };
    let start = span.start.min(text.len());
    let number = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(number - 1).unwrap_or_default().trim();
    let message = error.message().trim().replace('\n', "; ");
    format!("configuration file {file}, line {number}: {message}\n    {number} | {line}")
}

mod query;
mod services;
#[cfg(test)]
mod tests;
