//! The admin commands of the Elasticsearch read side: `order-platform rebuild`
//! builds the next orders index from the PostgreSQL event store while the
//! current one keeps serving, then moves the alias to it (DESIGN §7; the steps
//! are in `order_read_model_es::rebuild`); `order-platform verify` compares the
//! index with a replay of the event store.

use crate::cli::UsageError;
use crate::config;
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use order_event_store::PostgresEventStore;
use order_read_model_es::{EsConfig, EsReadStore, RebuildProgress};
use sqlx::postgres::PgConnectOptions;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Where the event store and the orders index are.
#[derive(Args, Clone)]
pub struct ReadSideArgs {
    /// The PostgreSQL event store, e.g. postgres://user:pass@host/db (required).
    #[arg(long, env = "ORDER_PLATFORM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Base URL of an Elasticsearch node, e.g. http://es:9200 (required).
    #[arg(long, env = "ORDER_PLATFORM_ELASTICSEARCH_URL", value_name = "URL")]
    pub elasticsearch_url: Option<String>,
    /// Prefix of every index name (`<prefix>orders`, `<prefix>orders_meta`); empty in
    /// production.
    #[arg(
        long,
        env = "ORDER_PLATFORM_ES_INDEX_PREFIX",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub es_index_prefix: String,
    /// Deadline of each Elasticsearch request (e.g. 60s).
    #[arg(long, env = "ORDER_PLATFORM_ELASTICSEARCH_TIMEOUT", default_value = "60s",
        value_parser = config::parse_duration, value_name = "DURATION")]
    pub elasticsearch_timeout: Duration,
}

#[derive(Args, Clone)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub read_side: ReadSideArgs,
    /// Events read from the store and written per `_bulk` request.
    #[arg(long = "batch-size", env = "ORDER_PLATFORM_REBUILD_BATCH_SIZE", value_name = "EVENTS",
        default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rebuild_batch_size: u32,
    /// After the swap, delete the index that served before (otherwise it is kept,
    /// write-blocked, so the alias can be moved back to it).
    #[arg(long)]
    pub drop_old: bool,
}

#[derive(Args, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub read_side: ReadSideArgs,
}

/// Opens the event store and the read store `args` name; `who` is the subcommand.
async fn open(args: &ReadSideArgs, who: &str) -> anyhow::Result<(PostgresEventStore, EsReadStore)> {
    let required = |value, flag, variable, key| config::required(value, who, flag, variable, key);
    let url = required(
        args.database_url.clone(),
        "database-url",
        "ORDER_PLATFORM_DATABASE_URL",
        "database_url",
    )?;
    let es_url = required(
        args.elasticsearch_url.clone(),
        "elasticsearch-url",
        "ORDER_PLATFORM_ELASTICSEARCH_URL",
        "elasticsearch_url",
    )?;
    let options = PgConnectOptions::from_str(&url).map_err(|e| {
        UsageError(format!(
            "--database-url / ORDER_PLATFORM_DATABASE_URL is not a valid postgres:// URL: {e}"
        ))
    })?;
    let store = PostgresEventStore::connect(options, 4)
        .await
        .context("opening the PostgreSQL event store")?;
    let mut config = EsConfig::new(es_url.trim_end_matches('/'));
    config.prefix = args.es_index_prefix.clone();
    config.timeout = args.elasticsearch_timeout;
    let read = EsReadStore::open(config)
        .await
        .context("opening the Elasticsearch read store")?;
    Ok((store, read))
}

/// `order-platform verify`: `missing=0 stale=0 duplicated=0` and success, or the
/// differences and failure.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    crate::telemetry::logs_only("warn");
    let (store, read) = open(&args.read_side, "verify").await?;
    let differences = read.verify(&store).await.context("comparing")?;
    println!(
        "{} orders in the event store, {} documents in {}: {differences}",
        differences.orders,
        differences.documents,
        read.alias()
    );
    if differences.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the read model differs from a replay of the event store")
    }
}

/// `order-platform rebuild`: prints the report on stdout, progress on stderr.
pub async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    // A command run by hand: its own output is the progress and the report.
    crate::telemetry::logs_only("warn");
    let (store, read) = open(&args.read_side, "rebuild").await?;
    let mut shown = Progress::new();
    let report = read
        .rebuild(&store, args.rebuild_batch_size as usize, &mut |p| {
            shown.update(p)
        })
        .await
        .context("rebuilding")?;
    shown.finish();
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "rebuilt {} from {} events in {seconds:.1} s ({:.0} events/s); {} now points to it",
        report.new_index,
        report.events,
        report.events as f64 / seconds.max(1e-6),
        read.alias(),
    );
    match report.old_index {
        Some(old) if args.drop_old => {
            read.drop_index(&old)
                .await
                .with_context(|| format!("dropping {old}"))?;
            println!("dropped {old}");
        }
        Some(old) => println!(
            "kept {old} (write-blocked): move the alias back to undo, or rebuild with --drop-old"
        ),
        None => {}
    }
    Ok(())
}

/// A progress bar on a terminal; elsewhere (a log file, CI) a line every few seconds.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Instant,
}

/// How often progress is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  {eta} left")
                    .expect("a valid template"),
            );
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, progress: &RebuildProgress) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(progress.total);
                bar.set_position(progress.done);
            }
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!(
                    "{}/{} events, {:.0} events/s, {} left",
                    progress.done,
                    progress.total,
                    progress.rate,
                    progress
                        .remaining
                        .map_or("unknown".into(), |d| format!("{} s", d.as_secs())),
                );
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
