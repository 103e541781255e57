//! The table printed at the end of a run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::driver::{Report, policy_name};
use crate::rss::Growth;
use crate::stats::fmt_us;

/// What the run was.
pub struct Header {
    /// The store URL as given (password redacted).
    pub store: String,
    /// Its namespace.
    pub namespace: String,
    /// Processes (driver included).
    pub processes: usize,
    /// Workload tasks.
    pub concurrency: usize,
    /// Workload duration.
    pub duration: Duration,
    /// Faults injected.
    pub faults: bool,
    /// Workload seed.
    pub seed: u64,
}

/// The error kinds an operation may return in a soak; any other kind is
/// a violation (`unexpected reply`).
pub const EXPECTED: &str = "NotFound (terminated, expired, or a read-back probe), NotReady (reserved, never activated), ConflictBudgetExhausted (CAS contention), Unavailable (storage timeout or outage)";

/// Prints the summary; `true` if no invariant was violated.
pub fn print(h: &Header, r: &Report, driver_rss: &[(f64, u64)], in_process: bool) -> bool {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== soak summary: {} ({}), {} process(es), concurrency {}, {} s, faults {}, seed {}",
        h.store,
        h.namespace,
        h.processes,
        h.concurrency,
        h.duration.as_secs(),
        if h.faults { "on" } else { "off" },
        h.seed
    );
    let _ = writeln!(
        out,
        "nodes: 0 {}, 1 {}, 2 {}",
        policy_name(0),
        policy_name(1),
        policy_name(2)
    );
    let _ = writeln!(
        out,
        "\n| operation | calls | ops/s | p50 | p99 | errors by kind |\n|---|---:|---:|---:|---:|---|"
    );
    let mut total = 0;
    for (op, s) in &r.stats {
        total += s.calls;
        let errors = if s.errors.is_empty() {
            "-".to_owned()
        } else {
            s.errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {op} | {} | {:.0} | {} | {} | {errors} |",
            s.calls,
            s.calls as f64 / r.elapsed,
            fmt_us(s.latency.quantile(0.5)),
            fmt_us(s.latency.quantile(0.99)),
        );
    }
    let _ = writeln!(
        out,
        "| all | {total} | {:.0} | | | |",
        total as f64 / r.elapsed
    );
    let _ = writeln!(out, "\nexpected error kinds: {EXPECTED}");
    let [made, expiring, reserved, terminated, active] = r.sessions;
    let _ = writeln!(
        out,
        "sessions: {made} created, {expiring} with a short TTL, {reserved} reserved and abandoned, {terminated} terminated, {active} live at the end"
    );
    for (what, n) in &r.notes {
        let _ = writeln!(out, "  {what}: {n}");
    }
    if !r.faults.is_empty() {
        let _ = writeln!(out, "faults injected (through one FaultProxy per node):");
        for (what, n) in &r.faults {
            let _ = writeln!(out, "  {what}: {n}");
        }
    }
    let _ = writeln!(
        out,
        "\n| node | policy | builds | closes | shutdown |\n|---|---|---:|---:|---|"
    );
    for (n, f) in r.finish.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {n} | {} | {} | {} | {} |",
            policy_name(n),
            f.builds,
            f.closes,
            if f.shutdown_complete {
                "complete"
            } else {
                "INCOMPLETE"
            }
        );
    }
    let warm_up = (h.duration.as_secs_f64() * 0.25).max(5.0);
    let _ = writeln!(
        out,
        "\nRSS (warm-up = first sample after {warm_up:.0} s; flagged if the end exceeds 1.5x warm-up + 32 MiB)\n| process | warm-up | end | peak | samples |\n|---|---:|---:|---:|---:|"
    );
    let mut grew = Vec::new();
    let mut row = |name: String, samples: &[(f64, u64)]| match Growth::of(samples, warm_up) {
        Some(g) => {
            let mib = |k: u64| k as f64 / 1024.0;
            let flag = if g.grew() {
                grew.push(name.clone());
                " GREW"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {name} | {:.1} MiB | {:.1} MiB{flag} | {:.1} MiB | {} |",
                mib(g.warm),
                mib(g.end),
                mib(g.peak),
                samples.len()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| {name} | - | - | - | {} (run too short) |",
                samples.len()
            );
        }
    };
    let driver_name = if in_process {
        "driver + 3 nodes".to_owned()
    } else {
        "driver".to_owned()
    };
    row(driver_name, driver_rss);
    if !in_process {
        for (n, f) in r.finish.iter().enumerate() {
            row(format!("node {n}"), &f.rss);
        }
    }
    let mut violations = r.violations.total();
    for g in &grew {
        violations += 1;
        let _ = writeln!(out, "VIOLATION rss growth: {g} grew after warm-up");
    }
    let _ = writeln!(out, "\ninvariant violations: {violations}");
    for (kind, n) in &r.violations.by_kind {
        let _ = writeln!(out, "  {kind}: {n}");
    }
    for e in &r.violations.examples {
        let _ = writeln!(out, "  e.g. {e}");
    }
    println!("{out}");
    violations == 0
}
