//! Resident memory over time: `VmRSS` from `/proc/self/status`, sampled
//! every [`EVERY`] by a background task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often RSS is sampled.
pub const EVERY: Duration = Duration::from_secs(2);

/// This process's resident set in KiB (`None` off Linux).
pub fn current_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts sampling (inside a Tokio runtime): the samples are
/// `(seconds since started, KiB)`.
pub fn sampler(started: Instant) -> Arc<Mutex<Vec<(f64, u64)>>> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let weak = Arc::downgrade(&samples);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let Some(samples) = weak.upgrade() else { break };
            if let (Some(kib), Ok(mut s)) = (current_kib(), samples.lock()) {
                s.push((started.elapsed().as_secs_f64(), kib));
            }
        }
    });
    samples
}

/// Warm-up and end of one process's samples, and whether it grew past
/// the bound after warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Growth {
    /// RSS at the end of warm-up (the first sample at or after it), KiB.
    pub warm: u64,
    /// The last sample, KiB.
    pub end: u64,
    /// The largest sample, KiB.
    pub peak: u64,
}

impl Growth {
    /// Summarises `samples` with warm-up ending at `warm_up` seconds.
    pub fn of(samples: &[(f64, u64)], warm_up: f64) -> Option<Self> {
        let warm = samples.iter().find(|(t, _)| *t >= warm_up)?.1;
        let end = samples.last()?.1;
        let peak = samples.iter().map(|(_, k)| *k).max()?;
        Some(Self { warm, end, peak })
    }

    /// Generous bound: the end may be at most 1.5x the warm-up value plus
    /// 32 MiB (allocator caches, the driver's own bookkeeping of ids).
    pub fn grew(&self) -> bool {
        self.end > self.warm + self.warm / 2 + 32 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss() {
        assert!(current_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn growth_is_measured_from_warm_up() {
        let s = [(1.0, 500_000), (10.0, 100_000), (20.0, 110_000)];
        let g = Growth::of(&s, 5.0).unwrap();
        assert_eq!((g.warm, g.end, g.peak), (100_000, 110_000, 500_000));
        assert!(!g.grew());
        let g = Growth::of(&[(10.0, 100_000), (20.0, 190_000)], 5.0).unwrap();
        assert!(g.grew());
        assert_eq!(Growth::of(&[(1.0, 5)], 5.0), None);
    }
}
