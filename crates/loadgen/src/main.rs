//! `order-loadgen`: drives the Order Platform's command API over HTTP and
//! measures command throughput, command latency, and how long a command's
//! effect takes to show up in the (eventually consistent) read model.
//!
//! The run is always bounded: a warm-up and a measured phase of fixed length
//! (or a fixed number of measured requests), every HTTP request has a
//! timeout, and each visibility sample gives up after 10 s.
//!
//! Output: a human-readable table (stdout, or stderr when `--json` or
//! `--markdown-row` take stdout), one JSON object with `--json`, and one
//! Markdown table row with `--markdown-row LABEL` (used by `bench/run`).

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one visibility sample may poll before it is counted as a timeout.
const VISIBILITY_CAP: Duration = Duration::from_secs(10);
/// Pause between two read-model polls of one visibility sample.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// An order may hold at most this many lines (DESIGN.md §4.4: the 101st is a 409).
const MAX_LINES: u32 = 100;
/// How many distinct error bodies are kept per status, for the report.
const ERROR_SAMPLES_PER_KEY: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every request creates a new order with one line.
    CreateOrder,
    /// Every request adds a line with a new SKU to the worker's own order.
    AddItem,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::CreateOrder => "create-order",
            Scenario::AddItem => "add-item",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "order-loadgen",
    version,
    about = "Load generator for the Order Platform: command throughput, latency and read-model visibility."
)]
struct Args {
    /// Base URL of the platform (only this URL is contacted).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token with a role that may issue commands and read orders (ops or admin).
    #[arg(long, env = "ORDER_LOADGEN_TOKEN", hide_env_values = true)]
    token: String,
    /// What each request does.
    #[arg(long, value_enum, default_value = "create-order")]
    scenario: Scenario,
    /// Concurrent workers, each with at most one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Length of the measured phase (e.g. 20s, 500ms, 2m). Ignored with --requests.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Measure exactly this many requests instead of a fixed duration.
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Warm-up before the measured phase; its requests are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Commands issued one by one after the load phase to measure how long
    /// until the read model (GET without consistency token) shows them.
    #[arg(long, default_value_t = 200)]
    visibility_samples: u32,
    /// Timeout of every single HTTP request.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Print one JSON object on stdout (the human table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the JSON object to this file.
    #[arg(long)]
    json_file: Option<PathBuf>,
    /// Print one Markdown table row, first column LABEL, on stdout
    /// (columns: see `bench/run`; the human table goes to stderr).
    #[arg(long, value_name = "LABEL")]
    markdown_row: Option<String>,
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

/// The HTTP side: one client, the base URL and the token.
struct Api {
    client: reqwest::Client,
    base: String,
    auth: String,
}

/// A successful command: the order it touched and the version it produced.
struct Ack {
    order_id: String,
    version: u64,
}

/// A failed request: the status (or transport error kind) and some of the body.
struct Failure {
    key: String,
    detail: String,
}

impl Api {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&args.url).context("--url is not a valid URL")?;
        if url.scheme() != "http" {
            bail!("--url must be an http:// URL (this build has no TLS)");
        }
        let client = reqwest::Client::builder()
            .timeout(args.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(args.concurrency as usize + 4)
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            client,
            base: args.url.trim_end_matches('/').to_string(),
            auth: format!("Bearer {}", args.token),
        })
    }

    fn item(sku: &str) -> Value {
        json!({"sku": sku, "productName": format!("Load item {sku}"), "quantity": 1, "unitPrice": "9.99"})
    }

    async fn create_order(&self, customer: &str, sku: &str) -> Result<Ack, Failure> {
        let body = json!({"customerId": customer, "currency": "USD", "items": [Self::item(sku)]});
        self.command(format!("{}/api/v1/orders", self.base), body)
            .await
    }

    async fn add_item(&self, order_id: &str, sku: &str) -> Result<Ack, Failure> {
        self.command(
            format!("{}/api/v1/orders/{order_id}/items", self.base),
            Self::item(sku),
        )
        .await
    }

    async fn command(&self, url: String, body: Value) -> Result<Ack, Failure> {
        let response = self
            .client
            .post(url)
            .header("Authorization", &self.auth)
            .json(&body)
            .send()
            .await
            .map_err(transport_failure)?;
        let status = response.status();
        let text = response.text().await.map_err(transport_failure)?;
        if !status.is_success() {
            return Err(Failure {
                key: status.as_u16().to_string(),
                detail: truncate(&text, 300),
            });
        }
        let parsed: Value = serde_json::from_str(&text).map_err(|e| Failure {
            key: format!("{} (bad body)", status.as_u16()),
            detail: format!("{e}: {}", truncate(&text, 200)),
        })?;
        let order_id = parsed["orderId"].as_str().map(str::to_string);
        let version = parsed["version"].as_u64();
        match (order_id, version) {
            (Some(order_id), Some(version)) => Ok(Ack { order_id, version }),
            _ => Err(Failure {
                key: format!("{} (no orderId/version)", status.as_u16()),
                detail: truncate(&text, 200),
            }),
        }
    }

    /// The read model's version of the order, `None` while it does not know it (404).
    async fn read_version(&self, order_id: &str) -> anyhow::Result<Option<u64>> {
        let response = self
            .client
            .get(format!("{}/api/v1/orders/{order_id}", self.base))
            .header("Authorization", &self.auth)
            .send()
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET order answered {status}: {}", truncate(&text, 200));
        }
        let parsed: Value = serde_json::from_str(&text)?;
        parsed["version"]
            .as_u64()
            .map(Some)
            .context("GET order body has no numeric `version`")
    }
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    Failure {
        key: kind.to_string(),
        detail: truncate(&format!("{e:#}"), 300),
    }
}

fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What one worker does between requests: its own order and SKU counter.
struct WorkerState {
    worker: u32,
    customer: String,
    order: Option<(String, u32)>,
    next_sku: u64,
    /// Orders this worker created for add-item (the first one, then one
    /// each time the previous one was full or unusable).
    orders_created: u64,
}

impl WorkerState {
    fn new(worker: u32, run: &str) -> Self {
        WorkerState {
            worker,
            customer: format!("loadgen-{run}-w{worker}"),
            order: None,
            next_sku: 0,
            orders_created: 0,
        }
    }

    fn sku(&mut self) -> String {
        self.next_sku += 1;
        format!("LG-{}-{}", self.worker, self.next_sku)
    }

    /// Makes sure the worker has an order with room for one more line.
    /// The creating request is not part of the add-item measurements.
    async fn ensure_order(&mut self, api: &Api) -> Result<(), Failure> {
        if matches!(&self.order, Some((_, lines)) if *lines < MAX_LINES) {
            return Ok(());
        }
        let sku = self.sku();
        let ack = api.create_order(&self.customer, &sku).await?;
        self.order = Some((ack.order_id, 1));
        self.orders_created += 1;
        Ok(())
    }

    /// One scenario command; the caller times it.
    async fn command(&mut self, api: &Api, scenario: Scenario) -> Result<Ack, Failure> {
        let sku = self.sku();
        match scenario {
            Scenario::CreateOrder => api.create_order(&self.customer, &sku).await,
            Scenario::AddItem => {
                let (order_id, _) = self.order.as_ref().expect("ensure_order ran");
                let result = api.add_item(order_id, &sku).await;
                match &result {
                    Ok(_) => {
                        if let Some((_, lines)) = self.order.as_mut() {
                            *lines += 1;
                        }
                    }
                    // The order cannot take this line (full, wrong state, gone):
                    // start over with a fresh order next time.
                    Err(f) if f.key == "409" || f.key == "404" => self.order = None,
                    Err(_) => {}
                }
                result
            }
        }
    }
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    latencies: Vec<Duration>,
    successes: u64,
    errors: BTreeMap<String, u64>,
    error_samples: BTreeMap<String, Vec<String>>,
    warmup_requests: u64,
    setup_errors: u64,
    rollovers: u64,
    last_completion: Option<Instant>,
}

impl WorkerResult {
    fn record_error(&mut self, failure: Failure) {
        *self.errors.entry(failure.key.clone()).or_default() += 1;
        let samples = self.error_samples.entry(failure.key).or_default();
        if samples.len() < ERROR_SAMPLES_PER_KEY {
            samples.push(failure.detail);
        }
    }
}

/// When the phases begin and end, shared by all workers.
struct Plan {
    measure_from: Instant,
    /// Duration mode: no request starts at or after this instant.
    stop_at: Option<Instant>,
    /// Request mode: measured requests handed out so far, and the limit.
    issued: AtomicU64,
    limit: Option<u64>,
}

impl Plan {
    /// Whether the worker may start another request, and whether it is measured.
    fn next(&self, now: Instant) -> Option<bool> {
        if now < self.measure_from {
            return Some(false);
        }
        if let Some(stop) = self.stop_at
            && now >= stop
        {
            return None;
        }
        if let Some(limit) = self.limit
            && self.issued.fetch_add(1, Ordering::Relaxed) >= limit
        {
            return None;
        }
        Some(true)
    }
}

async fn worker(
    api: Arc<Api>,
    plan: Arc<Plan>,
    scenario: Scenario,
    mut state: WorkerState,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    while let Some(measured) = plan.next(Instant::now()) {
        if scenario == Scenario::AddItem {
            if let Err(failure) = state.ensure_order(&api).await {
                // Not a measured command, but it must not go unnoticed.
                result.setup_errors += 1;
                result.record_error(Failure {
                    key: format!("create (setup) {}", failure.key),
                    detail: failure.detail,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            // The creation may have crossed into the measured phase: re-check.
            if !measured && Instant::now() >= plan.measure_from {
                continue;
            }
        }
        let started = Instant::now();
        let outcome = state.command(&api, scenario).await;
        let finished = Instant::now();
        if !measured {
            result.warmup_requests += 1;
            continue;
        }
        result.last_completion = Some(finished);
        match outcome {
            Ok(_) => {
                result.successes += 1;
                result.latencies.push(finished - started);
            }
            Err(failure) => {
                // Errors are timed too: a slow 503 is still a slow answer.
                result.latencies.push(finished - started);
                result.record_error(failure);
            }
        }
    }
    result.rollovers = state.orders_created.saturating_sub(1);
    result
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Option<Duration>) -> Value {
    match d {
        Some(d) => json!((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0),
        None => Value::Null,
    }
}

fn fmt_ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2}", d.as_secs_f64() * 1000.0),
        None => "-".to_string(),
    }
}

struct Summary {
    requests: u64,
    successes: u64,
    errors: BTreeMap<String, u64>,
    error_samples: BTreeMap<String, Vec<String>>,
    window: Duration,
    latencies: Vec<Duration>,
    warmup_requests: u64,
    rollovers: u64,
    visibility: Vec<Duration>,
    /// The first sample, taken right after the load phase: high when the
    /// projector still had a backlog to work off.
    visibility_first: Option<Duration>,
    visibility_timeouts: u64,
    visibility_errors: BTreeMap<String, u64>,
}

impl Summary {
    fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.successes as f64 / secs
        } else {
            0.0
        }
    }
    fn errors_total(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(k, _)| !k.starts_with("create (setup)"))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Issues `samples` commands one after another; for each, polls the read
/// model every millisecond until it shows the command's version.
async fn measure_visibility(
    api: &Api,
    scenario: Scenario,
    samples: u32,
    run: &str,
) -> (Vec<Duration>, Option<Duration>, u64, BTreeMap<String, u64>) {
    let mut state = WorkerState::new(u32::MAX, run);
    state.customer = format!("loadgen-{run}-visibility");
    let mut times = Vec::with_capacity(samples as usize);
    let mut timeouts = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..samples {
        if scenario == Scenario::AddItem
            && let Err(f) = state.ensure_order(api).await
        {
            *errors
                .entry(format!("create (setup) {}", f.key))
                .or_default() += 1;
            continue;
        }
        let ack = match state.command(api, scenario).await {
            Ok(ack) => ack,
            Err(f) => {
                *errors.entry(format!("command {}", f.key)).or_default() += 1;
                continue;
            }
        };
        let acked = Instant::now();
        loop {
            match api.read_version(&ack.order_id).await {
                Ok(Some(v)) if v >= ack.version => {
                    times.push(acked.elapsed());
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    *errors
                        .entry(format!("poll: {}", truncate(&format!("{e:#}"), 80)))
                        .or_default() += 1;
                }
            }
            if acked.elapsed() >= VISIBILITY_CAP {
                timeouts += 1;
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    let first = times.first().copied();
    times.sort();
    (times, first, timeouts, errors)
}

async fn run(args: &Args) -> anyhow::Result<Summary> {
    let api = Arc::new(Api::new(args)?);
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    // add-item: one order per worker before the clock starts.
    let mut states = Vec::new();
    for w in 0..args.concurrency {
        states.push(WorkerState::new(w, &run_id));
    }
    if args.scenario == Scenario::AddItem {
        let setups = futures::future::join_all(states.iter_mut().map(|s| {
            let api = api.clone();
            async move { s.ensure_order(&api).await }
        }))
        .await;
        if let Some(Err(f)) = setups.into_iter().find(|r| r.is_err()) {
            bail!(
                "could not create the initial orders: {} {}",
                f.key,
                f.detail
            );
        }
    }

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let plan = Arc::new(Plan {
        measure_from,
        stop_at: match args.requests {
            Some(_) => None,
            None => Some(measure_from + args.duration),
        },
        issued: AtomicU64::new(0),
        limit: args.requests,
    });
    let handles: Vec<_> = states
        .into_iter()
        .map(|state| tokio::spawn(worker(api.clone(), plan.clone(), args.scenario, state)))
        .collect();

    let mut latencies = Vec::new();
    let mut successes = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_samples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut warmup_requests = 0;
    let mut rollovers = 0;
    let mut last = measure_from;
    for handle in handles {
        let r = handle.await.context("a worker panicked")?;
        latencies.extend(r.latencies);
        successes += r.successes;
        warmup_requests += r.warmup_requests;
        rollovers += r.rollovers;
        for (k, v) in r.errors {
            *errors.entry(k).or_default() += v;
        }
        for (k, v) in r.error_samples {
            let samples = error_samples.entry(k).or_default();
            for s in v {
                if samples.len() < ERROR_SAMPLES_PER_KEY {
                    samples.push(s);
                }
            }
        }
        if let Some(t) = r.last_completion {
            last = last.max(t);
        }
    }
    latencies.sort();
    let requests = latencies.len() as u64;
    // Duration mode: the window is the configured one, stretched by requests
    // still in flight when it closed. Request mode: until the last answer.
    let window = match plan.stop_at {
        Some(stop) => last.max(stop) - measure_from,
        None => last - measure_from,
    };

    let (visibility, visibility_first, visibility_timeouts, visibility_errors) =
        measure_visibility(&api, args.scenario, args.visibility_samples, &run_id).await;

    Ok(Summary {
        requests,
        successes,
        errors,
        error_samples,
        window,
        latencies,
        warmup_requests,
        rollovers,
        visibility,
        visibility_first,
        visibility_timeouts,
        visibility_errors,
    })
}

fn to_json(args: &Args, s: &Summary) -> Value {
    let lat = &s.latencies;
    let vis = &s.visibility;
    json!({
        "scenario": args.scenario.name(),
        "url": args.url,
        "concurrency": args.concurrency,
        "durationSeconds": args.requests.is_none().then_some(args.duration.as_secs_f64()),
        "requestLimit": args.requests,
        "warmupSeconds": args.warmup.as_secs_f64(),
        "requests": s.requests,
        "successes": s.successes,
        "errors": s.errors_total(),
        "errorsByStatus": s.errors,
        "errorSamples": s.error_samples,
        "warmupRequests": s.warmup_requests,
        "orderRollovers": s.rollovers,
        "windowSeconds": s.window.as_secs_f64(),
        "throughputPerSecond": (s.throughput() * 10.0).round() / 10.0,
        "latencyMs": {
            "p50": ms(percentile(lat, 50.0)),
            "p90": ms(percentile(lat, 90.0)),
            "p99": ms(percentile(lat, 99.0)),
            "max": ms(lat.last().copied()),
        },
        "visibility": {
            "samples": vis.len(),
            "requested": args.visibility_samples,
            "timeouts": s.visibility_timeouts,
            "errors": s.visibility_errors,
            "p50Ms": ms(percentile(vis, 50.0)),
            "p99Ms": ms(percentile(vis, 99.0)),
            "maxMs": ms(vis.last().copied()),
            "firstMs": ms(s.visibility_first),
        },
    })
}

fn human(args: &Args, s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    let lat = &s.latencies;
    let vis = &s.visibility;
    let length = match args.requests {
        Some(n) => format!("{n} requests"),
        None => format!("{:.1}s", args.duration.as_secs_f64()),
    };
    writeln!(out, "order-loadgen  {}  {}", args.scenario.name(), args.url)?;
    writeln!(
        out,
        "  concurrency {}, measured {length} after {:.1}s warm-up ({} warm-up requests)",
        args.concurrency,
        args.warmup.as_secs_f64(),
        s.warmup_requests
    )?;
    writeln!(out)?;
    writeln!(out, "  {:<28} {:>12}", "requests (measured)", s.requests)?;
    writeln!(out, "  {:<28} {:>12}", "successes", s.successes)?;
    writeln!(out, "  {:<28} {:>12}", "errors", s.errors_total())?;
    writeln!(
        out,
        "  {:<28} {:>12.3}",
        "window (s)",
        s.window.as_secs_f64()
    )?;
    writeln!(
        out,
        "  {:<28} {:>12.1}",
        "throughput (commands/s)",
        s.throughput()
    )?;
    for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)] {
        writeln!(
            out,
            "  {:<28} {:>12}",
            format!("latency {name} (ms)"),
            fmt_ms(percentile(lat, p))
        )?;
    }
    writeln!(
        out,
        "  {:<28} {:>12}",
        "latency max (ms)",
        fmt_ms(lat.last().copied())
    )?;
    if args.scenario == Scenario::AddItem {
        writeln!(out, "  {:<28} {:>12}", "order rollovers", s.rollovers)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "  visibility (command response -> GET shows version; {} of {} samples, {} timed out at {}s)",
        vis.len(),
        args.visibility_samples,
        s.visibility_timeouts,
        VISIBILITY_CAP.as_secs()
    )?;
    writeln!(
        out,
        "  {:<28} {:>12}",
        "visibility p50 (ms)",
        fmt_ms(percentile(vis, 50.0))
    )?;
    writeln!(
        out,
        "  {:<28} {:>12}",
        "visibility p99 (ms)",
        fmt_ms(percentile(vis, 99.0))
    )?;
    writeln!(
        out,
        "  {:<28} {:>12}",
        "visibility max (ms)",
        fmt_ms(vis.last().copied())
    )?;
    writeln!(
        out,
        "  {:<28} {:>12}",
        "visibility first sample (ms)",
        fmt_ms(s.visibility_first)
    )?;
    if !s.errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "  errors by status:")?;
        for (k, v) in &s.errors {
            writeln!(out, "    {k:<26} {v:>12}")?;
            for sample in s.error_samples.get(k).into_iter().flatten() {
                writeln!(out, "      e.g. {sample}")?;
            }
        }
    }
    if !s.visibility_errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "  visibility phase errors:")?;
        for (k, v) in &s.visibility_errors {
            writeln!(out, "    {k:<26} {v:>12}")?;
        }
    }
    Ok(())
}

fn markdown_row(label: &str, args: &Args, s: &Summary) -> String {
    let lat = &s.latencies;
    let vis = &s.visibility;
    let mut errors = s.errors_total().to_string();
    if s.errors_total() > 0 {
        let detail: Vec<String> = s
            .errors
            .iter()
            .filter(|(k, _)| !k.starts_with("create (setup)"))
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        errors = format!("{errors} ({})", detail.join(", "));
    }
    let mut vis_note = String::new();
    if s.visibility_timeouts > 0 {
        vis_note = format!(" ({} timeouts)", s.visibility_timeouts);
    }
    format!(
        "| {label} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {}{vis_note} |",
        args.scenario.name(),
        args.concurrency,
        s.requests,
        s.throughput(),
        fmt_ms(percentile(lat, 50.0)),
        fmt_ms(percentile(lat, 90.0)),
        fmt_ms(percentile(lat, 99.0)),
        fmt_ms(lat.last().copied()),
        errors,
        fmt_ms(percentile(vis, 50.0)),
        fmt_ms(percentile(vis, 99.0)),
        fmt_ms(vis.last().copied()),
    )
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("order-loadgen: error: starting the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(report(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("order-loadgen: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs the load and prints the results. Exit status 2 when not a single
/// measured command succeeded: such a run measures nothing.
async fn report(args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let summary = run(args).await?;
    let json = to_json(args, &summary);
    if let Some(path) = &args.json_file {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let stdout_taken = args.json || args.markdown_row.is_some();
    if stdout_taken {
        human(args, &summary, &mut std::io::stderr().lock())?;
    } else {
        human(args, &summary, &mut std::io::stdout().lock())?;
    }
    if args.json {
        println!("{json}");
    }
    if let Some(label) = &args.markdown_row {
        println!("{}", markdown_row(label, args, &summary));
    }
    if summary.successes == 0 {
        eprintln!("order-loadgen: error: no measured command succeeded");
        return Ok(std::process::ExitCode::from(2));
    }
    Ok(std::process::ExitCode::SUCCESS)
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

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn request_plan_stops_after_limit() {
        let now = Instant::now();
        let plan = Plan {
            measure_from: now,
            stop_at: None,
            issued: AtomicU64::new(0),
            limit: Some(2),
        };
        assert_eq!(plan.next(now), Some(true));
        assert_eq!(plan.next(now), Some(true));
        assert_eq!(plan.next(now), None);
    }

    #[test]
    fn duration_plan_has_warmup_and_end() {
        let now = Instant::now();
        let plan = Plan {
            measure_from: now + Duration::from_secs(1),
            stop_at: Some(now + Duration::from_secs(2)),
            issued: AtomicU64::new(0),
            limit: None,
        };
        assert_eq!(plan.next(now), Some(false));
        assert_eq!(plan.next(now + Duration::from_millis(1500)), Some(true));
        assert_eq!(plan.next(now + Duration::from_secs(2)), None);
    }
}
