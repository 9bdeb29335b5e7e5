//! The command line: what to load, how hard and for how long, and where the
//! results go. `bench/run` passes these flags; keep them stable.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Every request creates a new order with one line.
    CreateOrder,
    /// Every request adds a line with a new SKU to the worker's own order.
    AddItem,
    /// An order's whole life, one request at a time: create (one line), add a
    /// line, approve, ship, then read it back (GET with the last command's consistency token).
    /// Four commands and one read per cycle; every request is measured.
    Mixed,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::CreateOrder => "create-order",
            Scenario::AddItem => "add-item",
            Scenario::Mixed => "mixed",
        }
    }
}
#[derive(Debug, Parser)]
#[command(
    name = "order-loadgen",
    version,
    about = "Load generator for the Order Platform: command throughput, latency and read-model visibility."
)]
pub(crate) struct Args {
    /// Base URL of the platform, or of the command service when the query
    /// service runs apart (see --query-url).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Base URL the visibility samples read from (`GET /api/v1/orders/{id}`):
    /// the query service of the production topology. Default: --url.
    #[arg(long, value_name = "URL")]
    pub(crate) query_url: Option<String>,
    /// Bearer token with a role that may issue commands and read orders (ops or admin).
    #[arg(long, env = "ORDER_LOADGEN_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// What each request does.
    #[arg(long, value_enum, default_value = "create-order")]
    pub(crate) scenario: Scenario,
    /// Concurrent workers, each with at most one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) concurrency: u32,
    /// Send at most this many requests per second in total, evenly spaced
    /// (a steady offered load, e.g. half the measured maximum), instead of as
    /// fast as the workers can. Latency is timed from each request's send; keep
    /// enough workers that none falls behind its schedule.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Length of the measured phase (e.g. 20s, 500ms, 2m). Ignored with --requests.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Take the visibility samples during the measured phase, under the load,
    /// instead of after it on an idle system.
    #[arg(long)]
    pub(crate) visibility_under_load: bool,
    /// Measure exactly this many requests instead of a fixed duration.
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) requests: Option<u64>,
    /// Warm-up before the measured phase; its requests are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Commands issued one by one after the load phase to measure how long
    /// until the read model (GET without consistency token) shows them.
    #[arg(long, default_value_t = 200)]
    pub(crate) visibility_samples: u32,
    /// Timeout of every single HTTP request.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) request_timeout: Duration,
    /// Print one JSON object on stdout (the human table goes to stderr).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the JSON object to this file.
    #[arg(long)]
    pub(crate) json_file: Option<PathBuf>,
    /// Print one Markdown table row, first column LABEL, on stdout
    /// (columns: see `bench/run`; the human table goes to stderr).
    #[arg(long, value_name = "LABEL")]
    pub(crate) markdown_row: Option<String>,
}
/// A positive number of requests per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "invalid rate {s:?}; use requests per second, e.g. 400"
        )),
    }
}

/// "20s", "500ms", "2m", "1h", or a bare number of seconds (may be fractional).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 20s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in `{s}`: use ms, s, m or h")),
    };
    if !seconds.is_finite() || !(0.0..=7.0 * 86400.0).contains(&seconds) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
