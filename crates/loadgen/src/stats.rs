//! The merged measurements of a run and the statistics drawn from them
//! (nearest-rank percentiles, throughput over the measured window).

use std::collections::BTreeMap;
use std::time::Duration;

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The merged measurements of one run (load phase, then visibility), as
/// the report renders them. Latencies and visibility times are sorted.
pub(crate) struct Summary {
    pub(crate) requests: u64,
    pub(crate) successes: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) error_samples: BTreeMap<String, Vec<String>>,
    pub(crate) window: Duration,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) warmup_requests: u64,
    pub(crate) rollovers: u64,
    /// Sorted latencies by kind of request (one kind except for mixed).
    pub(crate) by_step: BTreeMap<&'static str, Vec<Duration>>,
    /// Command requests sent in any phase, including warm-up and set-up.
    pub(crate) commands_issued: u64,
    /// Measured successful requests that were commands (not reads).
    pub(crate) command_successes: u64,
    pub(crate) visibility: Vec<Duration>,
    /// The first sample, taken right after the load phase: high when the
    /// projector still had a backlog to work off.
    pub(crate) visibility_first: Option<Duration>,
    pub(crate) visibility_timeouts: u64,
    pub(crate) visibility_errors: BTreeMap<String, u64>,
}

impl Summary {
    pub(crate) fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.successes as f64 / secs
        } else {
            0.0
        }
    }
    pub(crate) fn command_throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.command_successes as f64 / secs
        } else {
            0.0
        }
    }
    pub(crate) fn errors_total(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(k, _)| !k.starts_with("create (setup)"))
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
