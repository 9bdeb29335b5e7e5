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

mod api;
mod cli;
mod load;
mod report;
mod scenario;
mod stats;
mod visibility;

use anyhow::Context;
use clap::Parser;

use crate::cli::Args;
use crate::report::{human, markdown_row, to_json};

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
    let summary = load::run(args).await?;
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
