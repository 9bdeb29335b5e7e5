//! The three renderings of a [`Summary`]: the human table, the JSON object
//! (`--json`, `--json-file`) and the Markdown table row (`--markdown-row`,
//! whose columns `bench/run` prints as the table header).

use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

use crate::cli::{Args, Scenario};
use crate::stats::{Summary, percentile};
use crate::visibility::VISIBILITY_CAP;

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

pub(crate) fn to_json(args: &Args, s: &Summary) -> Value {
    let lat = &s.latencies;
    let vis = &s.visibility;
    json!({
        "scenario": args.scenario.name(),
        "url": args.url,
        "concurrency": args.concurrency,
        "ratePerSecond": args.rate,
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
        "commandSuccesses": s.command_successes,
        "commandsPerSecond": (s.command_throughput() * 10.0).round() / 10.0,
        "commandsIssued": s.commands_issued,
        "latencyByStepMs": s.by_step.iter().map(|(step, lat)| (step.to_string(), json!({
            "requests": lat.len(),
            "p50": ms(percentile(lat, 50.0)),
            "p99": ms(percentile(lat, 99.0)),
        }))).collect::<serde_json::Map<String, Value>>(),
        "latencyMs": {
            "p50": ms(percentile(lat, 50.0)),
            "p90": ms(percentile(lat, 90.0)),
            "p95": ms(percentile(lat, 95.0)),
            "p99": ms(percentile(lat, 99.0)),
            "max": ms(lat.last().copied()),
        },
        "visibility": {
            "underLoad": args.visibility_under_load,
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

pub(crate) fn human(args: &Args, s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
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
    if args.scenario == Scenario::Mixed {
        writeln!(
            out,
            "  {:<28} {:>12.1}",
            "commands/s (without reads)",
            s.command_throughput()
        )?;
        for (step, lat) in &s.by_step {
            writeln!(
                out,
                "  {:<28} {:>12}",
                format!("{step} p50 / p99 (ms)"),
                format!(
                    "{} / {}",
                    fmt_ms(percentile(lat, 50.0)),
                    fmt_ms(percentile(lat, 99.0))
                )
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "  visibility (command response -> GET shows version, {}; {} of {} samples, {} timed out at {}s)",
        if args.visibility_under_load {
            "under the load"
        } else {
            "after the load"
        },
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

pub(crate) fn markdown_row(label: &str, args: &Args, s: &Summary) -> String {
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
