//! `session-soak`: three session managers under a mixed workload, with an
//! invariant checker. Run it through `cargo xtask soak`:
//!
//! ```text
//! cargo xtask soak --duration SECS --store URL [--concurrency N] [--faults] [--seed N]
//! ```
//!
//! For `memory://` the three managers share one `MemoryStore` in this
//! process; for Redis, Postgres and SQLite each manager is a worker process
//! (this binary, `session-soak worker --node I --store URL`) driven over
//! its stdin/stdout. The driver owns the workload and the model, so every
//! reply from any node is checked against everything acknowledged so far
//! (rules in `soak/README.md`; the checks in `driver/ops.rs` and
//! `driver/verify.rs`).

mod driver;
mod faults;
mod model;
mod namespace;
mod node;
mod protocol;
mod rss;
mod stats;
mod summary;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::{Driver, Settings};
use node::Handle;

const USAGE: &str = "usage: session-soak [--duration SECS] [--store URL] [--concurrency N] [--faults] [--seed N] [--sabotage lost-update|double-apply|resurrect|leak]\n       session-soak worker --node I --store URL";

/// The command line of a soak run.
#[derive(Debug)]
struct Args {
    duration: Duration,
    store: String,
    concurrency: usize,
    faults: bool,
    seed: u64,
    sabotage: Option<worker::Sabotage>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        duration: Duration::from_secs(30),
        store: "memory://".into(),
        concurrency: 16,
        faults: false,
        seed: 1,
        sabotage: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                let v = value(a)?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--duration: {v:?} is not a number of seconds"))?;
                out.duration = Duration::from_secs(secs);
            }
            "--store" => out.store = value(a)?,
            "--concurrency" => {
                let v = value(a)?;
                out.concurrency = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| format!("--concurrency: {v:?} is not 1..=1024"))?;
            }
            "--seed" => {
                let v = value(a)?;
                out.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: {v:?} is not a number"))?;
            }
            "--faults" => out.faults = true,
            "--sabotage" => {
                let v = value(a)?;
                out.sabotage = Some(
                    worker::Sabotage::parse(&v)
                        .ok_or_else(|| format!("--sabotage: unknown {v:?}"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.first().is_some_and(|a| a == "worker") {
        runtime.block_on(worker_main(&args[1..]))
    } else {
        match parse(&args) {
            Ok(a) => runtime.block_on(soak(a)),
            Err(e) => {
                eprintln!("soak: {e}");
                return ExitCode::from(2);
            }
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn worker_main(args: &[String]) -> Result<bool, String> {
    let (mut node, mut url, mut sabotage) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--node" => node = it.next().and_then(|v| v.parse::<usize>().ok()),
            "--store" => url = it.next().cloned(),
            "--sabotage" => sabotage = it.next().and_then(|v| worker::Sabotage::parse(v)),
            other => return Err(format!("worker: unknown argument {other:?}\n{USAGE}")),
        }
    }
    let (Some(node), Some(url)) = (node, url) else {
        return Err(format!("worker: --node and --store are required\n{USAGE}"));
    };
    worker::serve(node, &url, sabotage).await?;
    Ok(true)
}

async fn soak(args: Args) -> Result<bool, String> {
    let started = Instant::now();
    let ns = namespace::Namespace::for_url(&args.store)?;
    let url = ns.url().to_owned();
    eprintln!(
        "soak: store {} ({})",
        session_core::redact_url(&url),
        ns.describe()
    );
    let checker = session_manager::connect(&url)
        .await
        .map_err(|e| session_core::display_chain(&e).clone())?;
    let in_process = ns.in_process();
    if args.faults && in_process {
        return Err("--faults needs a networked store (redis:// or postgres://)".into());
    }
    let (injector, worker_urls) = if args.faults {
        let (injector, urls) = faults::Injector::start(&url, 3).await?;
        (Some(Arc::new(injector)), urls)
    } else {
        (None, vec![url.clone(); 3])
    };
    let nodes: Vec<Handle> = if in_process {
        (0..3)
            .map(|i| {
                Handle::Local(Arc::new(worker::Node::start(
                    i,
                    checker.clone(),
                    started,
                    args.sabotage,
                )))
            })
            .collect()
    } else {
        let mut nodes = Vec::new();
        for (i, worker_url) in worker_urls.iter().enumerate() {
            let remote =
                node::Remote::spawn(i, worker_url, args.sabotage, Duration::from_secs(60)).await?;
            nodes.push(Handle::Remote(Box::new(remote)));
        }
        nodes
    };
    let driver_rss = rss::sampler(started);
    let driver = Driver::new(
        nodes,
        checker.clone(),
        Settings {
            duration: args.duration,
            concurrency: args.concurrency,
            seed: args.seed,
            faults: injector,
        },
    );
    let report = driver.run().await;
    let driver_rss = driver_rss.lock().map(|v| v.clone()).unwrap_or_default();
    if let Err(e) = ns.clean(&checker).await {
        eprintln!("soak: cleaning up: {e}");
    }
    let header = summary::Header {
        store: session_core::redact_url(&args.store).clone(),
        namespace: ns.describe(),
        processes: if in_process { 1 } else { 4 },
        concurrency: args.concurrency,
        duration: args.duration,
        faults: args.faults,
        seed: args.seed,
    };
    let passed = summary::print(&header, &report, &driver_rss, in_process);
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_command_line() {
        let a = parse(&args(
            "--duration 5 --store redis://x --concurrency 8 --faults --seed 7",
        ))
        .unwrap();
        assert_eq!(a.duration, Duration::from_secs(5));
        assert_eq!(a.store, "redis://x");
        assert_eq!((a.concurrency, a.faults, a.seed), (8, true, 7));
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.store.as_str(), d.concurrency, d.faults),
            ("memory://", 16, false)
        );
    }

    #[test]
    fn refuses_bad_arguments() {
        for bad in [
            "--duration",
            "--duration x",
            "--concurrency 0",
            "--bogus",
            "--seed -1",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
