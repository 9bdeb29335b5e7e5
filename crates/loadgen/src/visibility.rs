//! Read-model visibility: how long after a command's response the
//! (eventually consistent) read model shows its effect. Sampled after the
//! load phase, one command at a time, by polling the order without a
//! consistency token until it carries the command's version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::api::{Api, truncate};
use crate::cli::Scenario;
use crate::scenario::WorkerState;

/// How long one visibility sample may poll before it is counted as a timeout.
pub(crate) const VISIBILITY_CAP: Duration = Duration::from_secs(10);
/// Pause between two read-model polls of one visibility sample.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Issues `samples` commands one after another; for each, polls the read
/// model every millisecond until it shows the command's version.
pub(crate) async fn measure_visibility(
    api: &Api,
    scenario: Scenario,
    samples: u32,
    run: &str,
) -> (Vec<Duration>, Option<Duration>, u64, BTreeMap<String, u64>) {
    // The mixed scenario's samples are its first step, a create.
    let scenario = match scenario {
        Scenario::Mixed => Scenario::CreateOrder,
        other => other,
    };
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
