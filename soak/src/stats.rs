//! Per-operation counts, errors by kind and latency histograms.

use std::collections::BTreeMap;

/// A latency histogram in microseconds with bounded memory: exact below
/// 64 µs, then 32 buckets per power of two (about 3% resolution).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u32 = 32;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; 64 + 64 * SUB as usize],
            total: 0,
        }
    }
}

fn bucket(us: u64) -> usize {
    if us < 64 {
        return us as usize;
    }
    let e = us.ilog2(); // >= 6
    let mantissa = (us >> (e - 5)) as u32 - SUB; // 0..32
    64 + ((e - 6) * SUB + mantissa) as usize
}

fn lower_bound(b: usize) -> u64 {
    if b < 64 {
        return b as u64;
    }
    let i = (b - 64) as u32;
    let e = i / SUB + 6;
    let mantissa = u64::from(i % SUB + SUB);
    mantissa << (e - 5)
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, us: u64) {
        let b = bucket(us).min(self.counts.len() - 1);
        self.counts[b] += 1;
        self.total += 1;
    }

    /// The `q` quantile (0..=1), as the lower bound of its bucket.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(b));
            }
        }
        None
    }
}

/// What one operation kind did over the run.
#[derive(Clone, Debug, Default)]
pub struct OpStats {
    /// Calls that returned (success or error).
    pub calls: u64,
    /// Latency of every call.
    pub latency: Histogram,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// Formats microseconds for the table.
pub fn fmt_us(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(u) if u < 1000 => format!("{u} µs"),
        Some(u) if u < 1_000_000 => format!("{:.1} ms", u as f64 / 1000.0),
        Some(u) => format!("{:.2} s", u as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in [0, 1, 63, 64, 65, 100, 1000, 12_345, 1_000_000, 60_000_000] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            let lo = lower_bound(b);
            assert!(lo <= us && us - lo <= us / 32 + 1, "{us} -> {lo}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100 {
            h.record(us);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert!(h.quantile(0.99).is_some_and(|q| (96..=99).contains(&q)));
    }
}
