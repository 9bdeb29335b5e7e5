//! The load phase: workers, each with at most one request in flight, share
//! a [`Plan`] that says when the warm-up ends and when (or after how many
//! requests) the measured phase stops; their results are merged into the
//! [`Summary`], followed by the visibility samples.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::api::{Api, Failure};
use crate::cli::{Args, Scenario};
use crate::scenario::WorkerState;
use crate::stats::Summary;
use crate::visibility::measure_visibility;

/// How many distinct error bodies are kept per status, for the report.
const ERROR_SAMPLES_PER_KEY: usize = 1;

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
    /// Measured latencies by kind of request (mixed: create, add-item, ...).
    by_step: BTreeMap<&'static str, Vec<Duration>>,
    /// Command requests sent in any phase (warm-up, measured, add-item set-up):
    /// the denominator of the server's CPU per command.
    commands_issued: u64,
    /// Measured successful requests that were commands (mixed also reads).
    command_successes: u64,
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
    /// With `--rate`: the first slot and the spacing of the shared schedule.
    pace: Option<(Instant, Duration)>,
    /// Slots of the schedule handed out so far (each worker takes the next).
    slots: AtomicU64,
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

    /// With `--rate`, when the next request may be sent: the schedule's next
    /// free slot, shared by every worker.
    fn next_slot(&self) -> Option<Instant> {
        let (first, spacing) = self.pace?;
        let slot = self.slots.fetch_add(1, Ordering::Relaxed);
        let offset = spacing.checked_mul(u32::try_from(slot).unwrap_or(u32::MAX))?;
        Some(first + offset)
    }
}

async fn worker(
    api: Arc<Api>,
    plan: Arc<Plan>,
    scenario: Scenario,
    mut state: WorkerState,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    loop {
        if let Some(at) = plan.next_slot() {
            tokio::time::sleep_until(at.into()).await;
        }
        let Some(measured) = plan.next(Instant::now()) else {
            break;
        };
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
        let step = state.next_step(scenario);
        if step.is_command() {
            result.commands_issued += 1;
        }
        let started = Instant::now();
        let outcome = state.command(&api, scenario).await;
        let finished = Instant::now();
        if !measured {
            result.warmup_requests += 1;
            continue;
        }
        result.last_completion = Some(finished);
        // Errors are timed too: a slow 503 is still a slow answer.
        result.latencies.push(finished - started);
        result
            .by_step
            .entry(step.name())
            .or_default()
            .push(finished - started);
        match outcome {
            Ok(_) => {
                result.successes += 1;
                if step.is_command() {
                    result.command_successes += 1;
                }
            }
            Err(failure) => result.record_error(failure),
        }
    }
    result.rollovers = state.orders_created.saturating_sub(1);
    result.commands_issued += state.orders_created;
    result
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Summary> {
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
        pace: args
            .rate
            .map(|rate| (start, Duration::from_secs_f64(1.0 / rate))),
        slots: AtomicU64::new(0),
    });
    let handles: Vec<_> = states
        .into_iter()
        .map(|state| tokio::spawn(worker(api.clone(), plan.clone(), args.scenario, state)))
        .collect();
    // Under load: the samples are taken while the workers run, from the start
    // of the measured phase.
    let sampling = args.visibility_under_load.then(|| {
        let api = api.clone();
        let (scenario, samples, run_id) = (args.scenario, args.visibility_samples, run_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            measure_visibility(&api, scenario, samples, &run_id).await
        })
    });

    let mut latencies = Vec::new();
    let mut successes = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_samples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut warmup_requests = 0;
    let mut rollovers = 0;
    let mut last = measure_from;
    let mut by_step: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut commands_issued = 0;
    let mut command_successes = 0;
    for handle in handles {
        let r = handle.await.context("a worker panicked")?;
        latencies.extend(r.latencies);
        for (step, times) in r.by_step {
            by_step.entry(step).or_default().extend(times);
        }
        commands_issued += r.commands_issued;
        command_successes += r.command_successes;
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
    for times in by_step.values_mut() {
        times.sort();
    }
    let requests = latencies.len() as u64;
    // Duration mode: the window is the configured one, stretched by requests
    // still in flight when it closed. Request mode: until the last answer.
    let window = match plan.stop_at {
        Some(stop) => last.max(stop) - measure_from,
        None => last - measure_from,
    };

    let (visibility, visibility_first, visibility_timeouts, visibility_errors) = match sampling {
        Some(sampling) => sampling.await.context("the visibility sampler panicked")?,
        None => measure_visibility(&api, args.scenario, args.visibility_samples, &run_id).await,
    };

    Ok(Summary {
        requests,
        successes,
        errors,
        error_samples,
        window,
        latencies,
        warmup_requests,
        rollovers,
        by_step,
        commands_issued,
        command_successes,
        visibility,
        visibility_first,
        visibility_timeouts,
        visibility_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_plan_stops_after_limit() {
        let now = Instant::now();
        let plan = Plan {
            measure_from: now,
            stop_at: None,
            issued: AtomicU64::new(0),
            limit: Some(2),
            pace: None,
            slots: AtomicU64::new(0),
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
            pace: None,
            slots: AtomicU64::new(0),
        };
        assert_eq!(plan.next(now), Some(false));
        assert_eq!(plan.next(now + Duration::from_millis(1500)), Some(true));
        assert_eq!(plan.next(now + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_paced_plan_hands_out_evenly_spaced_slots() {
        let now = Instant::now();
        let plan = Plan {
            measure_from: now,
            stop_at: None,
            issued: AtomicU64::new(0),
            limit: None,
            pace: Some((now, Duration::from_millis(5))),
            slots: AtomicU64::new(0),
        };
        let slots: Vec<Duration> = (0..3).map(|_| plan.next_slot().unwrap() - now).collect();
        assert_eq!(slots, [0, 5, 10].map(Duration::from_millis));
    }
}
