//! `cargo xtask bench --report`: every ratio against its baseline and its
//! target, as `target/bench-report/report.md` and `ratios.svg`.
//!
//! Each ratio is the median of a measured criterion benchmark over the
//! median of its baseline from the same bench target; the pairs and the
//! targets (all "at most", from the crate READMEs) are listed in [`RATIOS`].
//! Throughput ratios that the benches print themselves (Redis at 64 tasks,
//! Postgres at 16) are not criterion measurements and are not in the report.

use std::fmt::Write as _;
use std::path::Path;

/// One ratio: `measured` over `baseline`, criterion ids (`group/function`,
/// or a lone function benchmarked outside a group).
pub struct Ratio {
    pub case: &'static str,
    pub measured: &'static str,
    pub baseline: &'static str,
    /// The ratio must be at most this.
    pub target: Option<f64>,
}

pub const RATIOS: &[Ratio] = &[
    Ratio {
        case: "MemoryStore load vs RwLock<HashMap>",
        measured: "memory_load/memory_store",
        baseline: "memory_load/baseline",
        target: None,
    },
    Ratio {
        case: "MemoryStore update vs RwLock<HashMap>",
        measured: "memory_update/memory_store",
        baseline: "memory_update/baseline",
        target: None,
    },
    Ratio {
        case: "Redis version vs GET, 1 task",
        measured: "redis/version",
        baseline: "redis/get",
        target: Some(1.2),
    },
    Ratio {
        case: "Redis load vs GET, 1 task",
        measured: "redis/load",
        baseline: "redis/get",
        target: Some(1.5),
    },
    Ratio {
        case: "Redis update vs GET, 1 task",
        measured: "redis/update",
        baseline: "redis/get",
        target: Some(2.0),
    },
    Ratio {
        case: "Postgres version vs SELECT, 1 task",
        measured: "postgres_1_task/version",
        baseline: "postgres_1_task/raw SELECT",
        target: Some(1.2),
    },
    Ratio {
        case: "Postgres load vs SELECT, 1 task",
        measured: "postgres_1_task/load",
        baseline: "postgres_1_task/raw SELECT",
        target: Some(1.3),
    },
    Ratio {
        case: "Postgres update vs UPDATE, 1 task",
        measured: "postgres_1_task/update",
        baseline: "postgres_1_task/raw UPDATE",
        target: Some(1.2),
    },
    Ratio {
        case: "Manager hit (Push) vs RwLock<HashMap>",
        measured: "hit_push",
        baseline: "baseline_rwlock_hashmap_lookup",
        target: Some(5.0),
    },
    Ratio {
        case: "Manager hit (EveryAccess, memory) vs version",
        measured: "hit_every_access",
        baseline: "raw_store_version",
        target: Some(1.2),
    },
    Ratio {
        case: "Cold restore, 1000 waiters vs 1",
        measured: "cold_restore/fan_in_1000",
        baseline: "cold_restore/single",
        target: Some(2.0),
    },
];

/// A measured row: (case, measured median ns, baseline median ns, target).
pub type Row = (&'static str, f64, f64, Option<f64>);

fn median_ns(criterion: &Path, id: &str) -> Option<f64> {
    let est = criterion.join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(est).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// The rows whose both sides have estimates under `criterion`.
pub fn rows(criterion: &Path) -> (Vec<Row>, Vec<&'static str>) {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for r in RATIOS {
        match (
            median_ns(criterion, r.measured),
            median_ns(criterion, r.baseline),
        ) {
            (Some(m), Some(b)) if b > 0.0 => rows.push((r.case, m, b, r.target)),
            _ => missing.push(r.case),
        }
    }
    (rows, missing)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

pub fn markdown(rows: &[Row], missing: &[&str], when: &str) -> String {
    let mut s = format!(
        "# Benchmark report\n\nMedians from criterion, {when}. Each ratio is the measured median over its baseline's, from the same bench run; targets are upper bounds.\n\n![ratios](ratios.svg)\n\n| case | measured | baseline | ratio | target | |\n|---|---|---|---|---|---|\n"
    );
    for (case, m, b, t) in rows {
        let ratio = m / b;
        let (target, verdict) = match t {
            Some(t) if ratio <= *t => (format!("<= {t}x"), "met"),
            Some(t) => (format!("<= {t}x"), "**missed**"),
            None => ("-".to_owned(), "reported"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {ratio:.2}x | {target} | {verdict} |",
            escape(case),
            fmt_ns(*m),
            fmt_ns(*b)
        );
    }
    if !missing.is_empty() {
        let _ = write!(
            s,
            "\nNot measured in this report: {}.\n",
            missing.join("; ")
        );
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bars: the ratio (green when it meets its target, red when
/// not, grey without one), a dark tick at the target, a dashed line at 1x.
pub fn svg(rows: &[Row]) -> String {
    let (label_w, bar_w, row_h, top) = (320.0, 420.0, 28.0, 30.0);
    let scale_max = rows
        .iter()
        .map(|(_, m, b, t)| (m / b).max(t.unwrap_or(0.0)))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let x = |r: f64| label_w + r / scale_max * bar_w;
    let height = top + row_h * rows.len() as f64 + 20.0;
    let width = label_w + bar_w + 80.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{label_w}\" y=\"18\">ratio to baseline (tick: target, dashed: 1x)</text>\n"
    );
    let one = x(1.0);
    let _ = writeln!(
        s,
        "<line x1=\"{one:.1}\" y1=\"{top}\" x2=\"{one:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
        height - 20.0
    );
    for (i, (case, m, b, t)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let ratio = m / b;
        let color = match t {
            Some(t) if ratio <= *t => "#3a9d5d",
            Some(_) => "#d1495b",
            None => "#9aa5b1",
        };
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n<rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{ratio:.2}x</text>",
            label_w - 8.0,
            y + 17.0,
            escape(case),
            y + 5.0,
            x(ratio) - label_w,
            row_h - 10.0,
            // Right of the bar and of the target tick, whichever ends later.
            x(ratio.max(t.unwrap_or(0.0))) + 6.0,
            y + 17.0,
        );
        if let Some(t) = t {
            let tx = x(*t);
            let _ = writeln!(
                s,
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#222\" stroke-width=\"2\"/>",
                y + 2.0,
                y + row_h - 2.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_estimates_and_renders() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-report-{}", std::process::id()));
        for (id, median) in [
            ("redis/get", 100.0),
            ("redis/version", 110.0),
            ("redis/load", 200.0),
        ] {
            let p = dir.join(id).join("new");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(
                p.join("estimates.json"),
                format!("{{\"median\":{{\"point_estimate\":{median}}}}}"),
            )
            .unwrap();
        }
        let (rows, missing) = rows(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(missing.len(), RATIOS.len() - 2);
        let md = markdown(&rows, &missing, "test");
        assert!(
            md.contains(
                "| Redis version vs GET, 1 task | 110 ns | 100 ns | 1.10x | <= 1.2x | met |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| Redis load vs GET, 1 task | 200 ns | 100 ns | 2.00x | <= 1.5x | **missed** |"
            ),
            "{md}"
        );
        let svg = svg(&rows);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("#d1495b") && svg.contains("#3a9d5d"));
    }
}
