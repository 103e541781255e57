//! Tool calls per second and p50/p99 latency through one gateway node
//! versus calling the backend directly, in the same run, at 1 and 32
//! concurrent clients (each its own MCP session): on memory (push) and, with
//! `SESSION_TEST_REDIS_URL` (feature `redis`), on Redis (every-access and
//! push). Run: `cargo xtask bench gateway` or
//! `cargo bench -p session-gateway --features redis --bench gateway`.
//! `GATEWAY_BENCH_SECS` sets the measuring time per case (default 3).
//!
//! For instruction counts (`valgrind --tool=callgrind`), which the shared
//! machine's load does not move: `GATEWAY_BENCH_CALLS=N` makes every client
//! do exactly N calls instead of running for a time,
//! `GATEWAY_BENCH_CLIENTS=1` (or `32`) runs one concurrency only and
//! `GATEWAY_BENCH_ONLY=direct|memory|rmcp|redis` one case only (`rmcp`:
//! the gateway on memory with `direct_calls` off, every call through
//! rmcp's server: the same-run measure of the node's direct path). Instructions per call
//! = (Ir at 2N − Ir at N) / N / clients (setup cancels out).
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use session_core::{MemoryStore, SessionStore, StoreConfig};
use session_gateway::backend;
use session_gateway::config::Config;
use session_gateway::demo::DemoBackend;
use session_gateway::node;
use session_manager::ValidationPolicy;

struct Row {
    case: String,
    clients: usize,
    calls: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// How long each client calls: for a time, or a fixed number of calls.
#[derive(Clone, Copy)]
enum Amount {
    Secs(f64),
    Calls(usize),
}

fn amount() -> Amount {
    let env = |k: &str| std::env::var(k).ok();
    match env("GATEWAY_BENCH_CALLS")
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
    {
        Some(n) => Amount::Calls(n),
        None => Amount::Secs(
            env("GATEWAY_BENCH_SECS")
                .and_then(|s| s.parse().ok())
                .unwrap_or(3.0),
        ),
    }
}

fn concurrencies() -> Vec<usize> {
    match std::env::var("GATEWAY_BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![1, 32],
    }
}

fn runs(case: &str) -> bool {
    std::env::var("GATEWAY_BENCH_ONLY").map_or(true, |only| only == case)
}

async fn drive(
    url: &str,
    clients: usize,
    tool: &str,
    amount: Amount,
) -> (usize, f64, Vec<Duration>) {
    let http = reqwest::Client::new();
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(backend::connect_fresh(&http, url).await.expect("connect"));
    }
    // Warm up (restores, connection pools).
    for c in &conns {
        let p = CallToolRequestParams::new(tool.to_owned()).with_arguments(
            serde_json::json!({"a": 1, "b": 2})
                .as_object()
                .unwrap()
                .clone(),
        );
        c.peer().call_tool(p).await.expect("warm-up call");
    }
    let deadline = match amount {
        Amount::Secs(secs) => Some(Instant::now() + Duration::from_secs_f64(secs)),
        Amount::Calls(_) => None,
    };
    let calls = match amount {
        Amount::Calls(n) => n,
        Amount::Secs(_) => usize::MAX,
    };
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            let tool = tool.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let args = serde_json::json!({"a": 1, "b": 2})
                    .as_object()
                    .unwrap()
                    .clone();
                while lat.len() < calls && deadline.is_none_or(|d| Instant::now() < d) {
                    let t = Instant::now();
                    let p = CallToolRequestParams::new(tool.clone()).with_arguments(args.clone());
                    let r = c.peer().call_tool(p).await.expect("call");
                    assert_ne!(r.is_error, Some(true));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    (all.len(), elapsed, all)
}

fn row(case: &str, clients: usize, (n, secs, mut lat): (usize, f64, Vec<Duration>)) -> Row {
    lat.sort();
    let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
    Row {
        case: case.to_owned(),
        clients,
        calls: n,
        per_sec: n as f64 / secs,
        p50: q(0.5),
        p99: q(0.99),
    }
}

async fn gateway_case(
    rows: &mut Vec<Row>,
    name: &str,
    store: Arc<dyn SessionStore>,
    policy: ValidationPolicy,
    math: &DemoBackend,
    amount: Amount,
) {
    let mut cfg = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        policy: Some(policy),
        // "rmcp path" cases: every call through rmcp's server.
        direct_calls: !name.ends_with("rmcp path"),
        ..Config::default()
    };
    cfg.add_backend("math", &math.url()).unwrap();
    let n = node::start(cfg, store, None).await.unwrap();
    for clients in concurrencies() {
        rows.push(row(
            name,
            clients,
            drive(&n.url(), clients, "math__add", amount).await,
        ));
    }
    n.shutdown().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let amount = amount();
    let math = DemoBackend::start("math", SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let mut rows = Vec::new();
    if runs("direct") {
        for clients in concurrencies() {
            rows.push(row(
                "direct to backend",
                clients,
                drive(&math.url(), clients, "add", amount).await,
            ));
        }
    }
    if runs("memory") {
        let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
        gateway_case(
            &mut rows,
            "gateway, memory, push",
            memory.clone(),
            ValidationPolicy::Push,
            &math,
            amount,
        )
        .await;
    }
    if runs("rmcp") {
        let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
        gateway_case(
            &mut rows,
            "gateway, memory, push, rmcp path",
            memory,
            ValidationPolicy::Push,
            &math,
            amount,
        )
        .await;
    }
    #[cfg(feature = "redis")]
    match std::env::var("SESSION_TEST_REDIS_URL") {
        Ok(url) if runs("redis") => {
            for (name, policy) in [
                (
                    "gateway, redis, every-access",
                    ValidationPolicy::EveryAccess,
                ),
                ("gateway, redis, push", ValidationPolicy::Push),
            ] {
                let prefix = format!("gwbench:{:08x}:", rand::random::<u32>());
                let store = session_manager::RedisStore::connect(
                    session_manager::RedisConfig::new(url.clone()).prefix(prefix),
                )
                .await
                .expect("connect to Redis");
                let store: Arc<dyn SessionStore> = Arc::new(store);
                gateway_case(&mut rows, name, store.clone(), policy, &math, amount).await;
                // The bench's sessions are terminated by nobody: remove them.
                let mut cursor = None;
                loop {
                    let page = store.scan(cursor.as_ref(), 256).await.unwrap();
                    for id in &page.ids {
                        let _ = store.delete(id).await;
                    }
                    match page.next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
            }
        }
        Ok(_) => {}
        Err(_) => eprintln!("SESSION_TEST_REDIS_URL unset: Redis cases skipped"),
    }
    #[cfg(not(feature = "redis"))]
    eprintln!("built without the `redis` feature: Redis cases skipped");

    println!(
        "\n{:<30} {:>7} {:>9} {:>10} {:>9} {:>9}",
        "case", "clients", "calls", "calls/s", "p50", "p99"
    );
    for r in &rows {
        println!(
            "{:<30} {:>7} {:>9} {:>10.0} {:>9.2?} {:>9.2?}",
            r.case, r.clients, r.calls, r.per_sec, r.p50, r.p99
        );
    }
    let per_sec = |case: &str, clients: usize| {
        rows.iter()
            .find(|r| r.case.starts_with(case) && r.clients == clients)
            .map(|r| r.per_sec)
    };
    for r in rows.iter().filter(|r| r.case.starts_with("gateway")) {
        if let Some(direct) = per_sec("direct", r.clients) {
            println!(
                "{} at {} client(s): {:.2}x direct",
                r.case,
                r.clients,
                r.per_sec / direct
            );
        }
    }
    if let (Some(mem32), Some(direct32)) = (per_sec("gateway, memory", 32), per_sec("direct", 32)) {
        let ratio = mem32 / direct32;
        println!(
            "target: gateway >= 0.5x direct at 32 clients on memory: {:.2}x -> {}",
            ratio,
            if ratio >= 0.5 { "met" } else { "NOT met" }
        );
    }
    math.stop().await;
}
