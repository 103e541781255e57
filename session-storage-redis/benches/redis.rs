//! RedisStore against raw redis-rs on the same server and the same kind of
//! connection (a `ConnectionManager`).
//!
//! Baseline: `GET` of a value as large as the session metadata JSON. Then
//! `version`, `load` and `update` (CAS): median latency at 1 task and
//! throughput at 64 concurrent tasks, as ratios to the baseline. `update`
//! is a write, so it is also reported against two write baselines: a raw
//! `SET key value XX` of the same size, and a minimal Lua compare-and-set
//! (`HGET v`, compare, `HSET v m`) run through `EVALSHA`.
//!
//! ```text
//! SESSION_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p session-storage-redis --bench redis
//! ```
//!
//! Throughput is measured in `BENCH_ROUNDS` (default 7) interleaved windows
//! of `BENCH_WINDOW_MS` (default 1000) per operation; the median counts.
//! Latency interleaves the operations in rounds as well.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version};
use session_storage_redis::{RedisConfig, RedisStore};

const TASKS: usize = 64;
const LATENCY_SAMPLES: usize = 4000;
const ROUNDS: usize = 10;

type BoxFut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One benchmarked operation, per task: `setup` gives each task its own
/// state (a session or key), `run` performs one operation on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Get,
    SetXx,
    CasLua,
    Version,
    Load,
    Update,
}

/// The minimal compare-and-set a write baseline runs through `EVALSHA`.
static CAS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HGET', KEYS[1], 'v') == ARGV[1] then \
           redis.call('HSET', KEYS[1], 'v', ARGV[2], 'm', ARGV[3]) return 1 end return 0",
    )
});

impl Op {
    const ALL: [Op; 6] = [
        Op::Get,
        Op::SetXx,
        Op::CasLua,
        Op::Version,
        Op::Load,
        Op::Update,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET (baseline)",
            Op::SetXx => "SET XX (write baseline)",
            Op::CasLua => "EVALSHA minimal CAS (write baseline)",
            Op::Version => "version",
            Op::Load => "load",
            Op::Update => "update (CAS)",
        }
    }

    /// Target: (max latency ratio at 1 task, min throughput ratio at 64).
    fn target(self) -> Option<(f64, f64)> {
        match self {
            Op::Get | Op::SetXx | Op::CasLua => None,
            Op::Version => Some((1.2, 0.85)),
            Op::Load => Some((1.5, 0.7)),
            Op::Update => Some((2.0, 0.5)),
        }
    }
}

struct Ctx {
    store: RedisStore,
    raw: ConnectionManager,
    metadata: Metadata,
    value: String,
    raw_prefix: String,
}

/// Per-task state.
struct Slot {
    id: SessionId,
    key: String,
    version: Version,
    /// The hash the minimal CAS baseline writes, and its version.
    cas_key: String,
    cas_version: u64,
}

impl Ctx {
    async fn slot(&self, n: usize) -> Slot {
        let id = SessionId::generate();
        self.store
            .create(&id, &self.metadata, Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        let key = format!("{}get:{n}", self.raw_prefix);
        let mut raw = self.raw.clone();
        let () = raw.set_ex(&key, &self.value, 600).await.unwrap();
        let cas_key = format!("{}cas:{n}", self.raw_prefix);
        let () = redis::cmd("HSET")
            .arg(&cas_key)
            .arg("v")
            .arg(1)
            .arg("m")
            .arg(&self.value)
            .exec_async(&mut raw)
            .await
            .unwrap();
        Slot {
            id,
            key,
            version: Version::INITIAL,
            cas_key,
            cas_version: 1,
        }
    }

    fn run<'a>(&'a self, op: Op, slot: &'a mut Slot, raw: &'a mut ConnectionManager) -> BoxFut<'a> {
        Box::pin(async move {
            match op {
                Op::Get => {
                    let v: Option<String> = raw.get(&slot.key).await.unwrap();
                    black_box(v.unwrap());
                }
                Op::SetXx => {
                    let ok: Option<String> = redis::cmd("SET")
                        .arg(&slot.key)
                        .arg(&self.value)
                        .arg("XX")
                        .query_async(raw)
                        .await
                        .unwrap();
                    black_box(ok.expect("SET XX of an existing key"));
                }
                Op::CasLua => {
                    let next = slot.cas_version + 1;
                    let done: i64 = CAS
                        .key(&slot.cas_key)
                        .arg(slot.cas_version)
                        .arg(next)
                        .arg(&self.value)
                        .invoke_async(raw)
                        .await
                        .unwrap();
                    assert_eq!(done, 1, "minimal CAS lost its version");
                    slot.cas_version = next;
                }
                Op::Version => {
                    black_box(self.store.version(&slot.id).await.unwrap().unwrap());
                }
                Op::Load => {
                    black_box(self.store.load(&slot.id).await.unwrap().unwrap());
                }
                Op::Update => match self
                    .store
                    .update(&slot.id, slot.version, &self.metadata)
                    .await
                    .unwrap()
                {
                    Update::Applied(v) => slot.version = v,
                    other => panic!("update: {other:?}"),
                },
            }
        })
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn latency(ctx: &Ctx) -> Vec<Duration> {
    let mut slots = Vec::new();
    for (n, _) in Op::ALL.iter().enumerate() {
        slots.push(ctx.slot(n).await);
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); Op::ALL.len()];
    let mut raw = ctx.raw.clone();
    // Warm up every path (scripts loaded, connection hot).
    for (i, op) in Op::ALL.iter().enumerate() {
        for _ in 0..200 {
            ctx.run(*op, &mut slots[i], &mut raw).await;
        }
    }
    // Interleave rounds so drift on the machine hits every op alike.
    for _ in 0..ROUNDS {
        for (i, op) in Op::ALL.iter().enumerate() {
            for _ in 0..LATENCY_SAMPLES / ROUNDS {
                let t = Instant::now();
                ctx.run(*op, &mut slots[i], &mut raw).await;
                samples[i].push(t.elapsed());
            }
        }
    }
    samples.iter_mut().map(|s| median(s)).collect()
}

/// Throughput of every op at [`TASKS`] concurrent tasks: `rounds` short
/// windows per op, interleaved so load from elsewhere on the machine hits
/// every op alike; the median window counts.
async fn throughput(ctx: &Arc<Ctx>, window: Duration, rounds: usize) -> Vec<f64> {
    // Each task gets its own session/key per op, set up once.
    let mut slots = Vec::new();
    for n in 0..TASKS {
        slots.push(ctx.slot(100 + n).await);
    }
    let slots: Vec<Arc<tokio::sync::Mutex<Slot>>> = slots
        .into_iter()
        .map(|s| Arc::new(tokio::sync::Mutex::new(s)))
        .collect();
    let mut per_op: Vec<Vec<f64>> = vec![Vec::new(); Op::ALL.len()];
    for _ in 0..rounds {
        for (i, op) in Op::ALL.iter().enumerate() {
            per_op[i].push(window_ops(ctx, *op, &slots, window).await);
        }
    }
    per_op
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

async fn window_ops(
    ctx: &Arc<Ctx>,
    op: Op,
    slots: &[Arc<tokio::sync::Mutex<Slot>>],
    window: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
    let mut tasks = Vec::new();
    for slot in slots {
        let (ctx, stop, count, start, slot) = (
            ctx.clone(),
            stop.clone(),
            count.clone(),
            start.clone(),
            slot.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut slot = slot.lock().await;
            let mut raw = ctx.raw.clone();
            for _ in 0..5 {
                ctx.run(op, &mut slot, &mut raw).await;
            }
            start.wait().await;
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ctx.run(op, &mut slot, &mut raw).await;
                done += 1;
            }
            count.fetch_add(done, Ordering::Relaxed);
        }));
    }
    start.wait().await;
    let t = Instant::now();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    #[allow(clippy::cast_precision_loss)]
    let ops = count.load(Ordering::Relaxed) as f64;
    ops / elapsed.as_secs_f64()
}

/// Metadata shaped like a vMCP session with three backends.
fn session_metadata() -> Metadata {
    let mut md = Metadata::new()
        .with("vmcp.backend.ids", "fetch,github,jira")
        .unwrap();
    for b in ["fetch", "github", "jira"] {
        md = md
            .with(
                format!("vmcp.backend.session.{b}"),
                uuid::Uuid::new_v4().to_string(),
            )
            .unwrap();
    }
    md.with(
        "vmcp.identity.binding",
        "https://issuer.example.com/realms/acme\0user-1234567890",
    )
    .unwrap()
    .with("tenant", "acme")
    .unwrap()
}

async fn cleanup(ctx: &Ctx, prefix: &str) {
    let mut raw = ctx.raw.clone();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut raw)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = raw.del(keys).await.unwrap();
        }
        cursor = next;
        if cursor == 0 {
            return;
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a test-mode run (`cargo test --benches`) passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("redis bench: skipped (run with cargo bench)");
        return;
    }
    let url = std::env::var("SESSION_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let window = Duration::from_millis(
        std::env::var("BENCH_WINDOW_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000),
    );
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let prefix = format!("vmcp:bench:{}:", uuid::Uuid::new_v4());
        let store_cfg = RedisConfig::new(&url)
            .prefix(&prefix)
            .store(StoreConfig::new(Duration::from_secs(600)).unwrap());
        let store = RedisStore::connect(store_cfg).await.expect("connect");
        let client = redis::Client::open(url.as_str()).unwrap();
        let raw = ConnectionManager::new_with_config(
            client,
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(RedisConfig::DEFAULT_CONNECT_TIMEOUT))
                .set_response_timeout(Some(RedisConfig::DEFAULT_RESPONSE_TIMEOUT)),
        )
        .await
        .unwrap();
        let metadata = session_metadata();
        let value = "x".repeat(metadata.json().len());
        let ctx = Arc::new(Ctx { store, raw, value, metadata, raw_prefix: format!("{prefix}raw:") });

        println!(
            "redis bench: {url}, metadata {} bytes, {TASKS} tasks, {rounds} x {} ms windows",
            ctx.value.len(),
            window.as_millis()
        );
        let lat = latency(&ctx).await;
        let tput = throughput(&ctx, window, rounds).await;
        println!();
        println!("| operation | median latency (1 task) | ratio | target | throughput ({TASKS} tasks) | ratio | target |");
        println!("|---|---|---|---|---|---|---|");
        let mut all_ok = true;
        for (i, op) in Op::ALL.iter().enumerate() {
            let lr = lat[i].as_secs_f64() / lat[0].as_secs_f64();
            let tr = tput[i] / tput[0];
            let (lt, tt) = match op.target() {
                Some((l, t)) => {
                    let ok = lr <= l && tr >= t;
                    all_ok &= ok;
                    (format!("<= {l:.2}x{}", if lr <= l { "" } else { " MISSED" }), format!(">= {t:.2}x{}", if tr >= t { "" } else { " MISSED" }))
                }
                None => ("-".to_owned(), "-".to_owned()),
            };
            println!(
                "| {} | {:.1} µs | {lr:.2}x | {lt} | {:.0} ops/s | {tr:.2}x | {tt} |",
                op.name(),
                lat[i].as_secs_f64() * 1e6,
                tput[i],
            );
        }
        // `update` is a write: against the write baselines too.
        let at = |op: Op| Op::ALL.iter().position(|o| *o == op).unwrap();
        let u = at(Op::Update);
        println!();
        println!("| update (CAS) against | latency ratio (1 task) | throughput ratio ({TASKS} tasks) |");
        println!("|---|---|---|");
        for base in [Op::SetXx, Op::CasLua] {
            let b = at(base);
            println!(
                "| {} | {:.2}x | {:.2}x |",
                base.name(),
                lat[u].as_secs_f64() / lat[b].as_secs_f64(),
                tput[u] / tput[b],
            );
        }
        println!();
        println!("{}", if all_ok { "all targets met" } else { "some targets MISSED" });
        (ctx, prefix)
    });
    let (ctx, prefix) = outcome;
    if std::env::var("BENCH_CRITERION").map_or(true, |v| v != "0") {
        criterion_latency(&rt, &ctx);
    }
    rt.block_on(cleanup(&ctx, &prefix));
}

/// The same single-task latencies through criterion (its own statistics and
/// reports under `target/criterion`); `BENCH_CRITERION=0` skips it.
fn criterion_latency(rt: &tokio::runtime::Runtime, ctx: &Arc<Ctx>) {
    let mut c = criterion::Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    let mut group = c.benchmark_group("redis");
    for (n, op) in Op::ALL.into_iter().enumerate() {
        let slot = Arc::new(tokio::sync::Mutex::new(rt.block_on(ctx.slot(200 + n))));
        group.bench_function(format!("{op:?}").to_lowercase(), |b| {
            b.to_async(rt).iter(|| {
                let (ctx, slot) = (ctx.clone(), slot.clone());
                async move {
                    let mut slot = slot.lock().await;
                    let mut raw = ctx.raw.clone();
                    ctx.run(op, &mut slot, &mut raw).await;
                }
            });
        });
    }
    group.finish();
    c.final_summary();
}
