//! Measured windows, interleaved rounds, and the printed table.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Settings;
use crate::cpu;

/// A future the benchmark awaits.
pub type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One operation: called with (task, iteration), it runs one op on the
/// task's own session for that iteration.
pub type OpFn = Arc<dyn Fn(usize, u64) -> BoxFut + Send + Sync>;

/// The server's CPU time so far, ns (`None`: not measurable).
pub type ServerCpu =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<u64>> + Send>> + Send + Sync>;

/// A named operation.
pub struct Op {
    /// What the table calls it.
    pub name: &'static str,
    /// How to run it.
    pub run: OpFn,
}

/// One window of one operation.
#[derive(Clone, Copy, Debug)]
struct Sample {
    ops_per_s: f64,
    client_us: f64,
    server_us: Option<f64>,
}

/// The session index task `task` uses at iteration `n`: each task owns the
/// indexes `task, task + tasks, ...` below [`crate::SESSIONS`], in turn.
pub fn session_of(task: usize, tasks: usize, n: u64) -> usize {
    let owned = crate::SESSIONS.div_ceil(tasks).max(1);
    let k = (n as usize) % owned;
    let i = task + k * tasks;
    if i < crate::SESSIONS { i } else { task }
}

/// Runs `op` on `tasks` tasks for `len`; the number of operations done.
pub async fn count(op: &Op, tasks: usize, len: Duration) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let run = op.run.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    run(task, n).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(len).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0u64;
    for h in handles {
        ops += h.await.expect("a benchmark task panicked");
    }
    ops
}

async fn window(op: &Op, tasks: usize, len: Duration, server: &ServerCpu) -> Sample {
    let s0 = server().await;
    let c0 = cpu::client_ns();
    let t0 = Instant::now();
    let ops = count(op, tasks, len).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let c1 = cpu::client_ns();
    let s1 = server().await;
    let per_op = |ns: u64| ns as f64 / 1000.0 / ops.max(1) as f64;
    Sample {
        ops_per_s: ops as f64 / elapsed,
        client_us: per_op(c1.saturating_sub(c0)),
        server_us: s0.zip(s1).map(|(a, b)| per_op(b.saturating_sub(a))),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// The medians of one operation at one task count.
pub struct Row {
    /// Operation name.
    pub name: &'static str,
    /// Median ops/s.
    pub ops_per_s: f64,
    samples: Vec<Sample>,
}

/// Measures `ops` at `tasks` concurrent tasks: a short warm-up window
/// each, then `settings.rounds` rounds, each running every operation for
/// one window in turn (interleaved, so drift hits them alike). Prints the
/// table and returns the rows.
pub async fn cell(
    title: &str,
    ops: &[Op],
    tasks: usize,
    settings: &Settings,
    server: &ServerCpu,
    server_note: &str,
) -> Vec<Row> {
    for op in ops {
        window(op, tasks, Duration::from_millis(200), server).await;
    }
    let mut samples: Vec<Vec<Sample>> = ops.iter().map(|_| Vec::new()).collect();
    for _ in 0..settings.rounds {
        for (i, op) in ops.iter().enumerate() {
            samples[i].push(window(op, tasks, settings.window, server).await);
        }
    }
    let rows: Vec<Row> = ops
        .iter()
        .zip(samples)
        .map(|(op, samples)| Row {
            name: op.name,
            ops_per_s: median(samples.iter().map(|s| s.ops_per_s).collect()),
            samples,
        })
        .collect();
    println!(
        "## {title}, {tasks} task{}\n",
        if tasks == 1 { "" } else { "s" }
    );
    println!(
        "| operation | ops/s (median) | µs per op (latency) | client CPU µs/op | server CPU µs/op |"
    );
    println!("|---|---|---|---|---|");
    for row in &rows {
        let server = row
            .samples
            .iter()
            .map(|s| s.server_us)
            .collect::<Option<Vec<_>>>()
            .map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}", median(v)));
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {server} |",
            row.name,
            row.ops_per_s,
            tasks as f64 / row.ops_per_s * 1e6,
            median(row.samples.iter().map(|s| s.client_us).collect()),
        );
    }
    if !server_note.is_empty() {
        println!("\n{server_note}");
    }
    println!();
    rows
}

/// Prints the throughput ratio `a / b` (medians), with the range of the
/// per-round ratios, and the target when there is one.
pub fn ratios(rows: &[Row], pairs: &[(&str, &str, Option<f64>)]) {
    println!("| ratio (throughput) | median | rounds min–max | target |");
    println!("|---|---|---|---|");
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    for &(a, b, target) in pairs {
        let (Some(ra), Some(rb)) = (find(a), find(b)) else {
            continue;
        };
        let ratio = ra.ops_per_s / rb.ops_per_s;
        let per_round: Vec<f64> = ra
            .samples
            .iter()
            .zip(&rb.samples)
            .map(|(x, y)| x.ops_per_s / y.ops_per_s)
            .collect();
        let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_round.iter().copied().fold(0.0, f64::max);
        let target = target.map_or_else(
            || "-".to_owned(),
            |t| {
                format!(
                    ">= {t:.2}{}",
                    if ratio >= t { " met" } else { " **missed**" }
                )
            },
        );
        println!("| {a} ÷ {b} | {ratio:.2} | {lo:.2}–{hi:.2} | {target} |");
    }
    println!();
}
