//! Hit-path and fan-in benchmarks for the session manager.
//!
//! `cargo bench -p session-manager --bench manager`
//!
//! Criterion measures each case; afterwards a summary prints medians (of
//! 31 samples) and the ratios the README quotes, plus the number of store
//! calls on the push hit path and the push propagation delay between nodes.
#![allow(missing_docs, clippy::missing_panics_doc)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{Counters, TestFactory, TestStore, backends, workload};
use criterion::Criterion;
use session_core::{MemoryStore, SessionId, SessionStore, StoreConfig};
use session_manager::{SessionManager, ValidationPolicy};
use tokio::runtime::Runtime;

/// Simulated cost of opening a session's backend connections.
const BUILD: Duration = Duration::from_millis(5);
const WAITERS: usize = 1000;

struct Fixture {
    rt: Runtime,
    memory: Arc<dyn SessionStore>,
    calls: Arc<common::Calls>,
    push: SessionManager<TestFactory>,
    every: SessionManager<TestFactory>,
    id: SessionId,
    baseline: RwLock<HashMap<SessionId, Arc<String>>>,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counting = TestStore::new(memory.clone());
    let calls = counting.calls.clone();
    let counted: Arc<dyn SessionStore> = Arc::new(counting);
    let counters = Arc::new(Counters::default());
    let (push, every, id) = rt.block_on(async {
        let push = SessionManager::builder(counted.clone(), TestFactory::new(&counters, "push"))
            .policy(ValidationPolicy::Push)
            .build();
        let every = SessionManager::builder(memory.clone(), TestFactory::new(&counters, "every"))
            .policy(ValidationPolicy::EveryAccess)
            .build();
        let id = push
            .create(backends(&["github", "jira"]))
            .await
            .unwrap()
            .id()
            .clone();
        every.get(&id).await.unwrap();
        // Fill both caches and the baseline map with other sessions too.
        for _ in 0..1000 {
            let other = push
                .create(backends(&["github"]))
                .await
                .unwrap()
                .id()
                .clone();
            every.get(&other).await.unwrap();
        }
        (push, every, id)
    });
    let mut map = HashMap::new();
    for i in 0..1000 {
        map.insert(SessionId::generate(), Arc::new(format!("s{i}")));
    }
    map.insert(id.clone(), Arc::new("live".to_owned()));
    Fixture {
        rt,
        memory,
        calls,
        push,
        every,
        id,
        baseline: RwLock::new(map),
    }
}

/// Per-iteration time of `iters` sequential awaits of `f` inside one task.
async fn run_loop<Fut: Future>(iters: u64, mut f: impl FnMut() -> Fut) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f().await);
    }
    start.elapsed()
}

/// One cold restore with `waiters` concurrent callers on a fresh node.
async fn cold_restore(memory: &Arc<dyn SessionStore>, id: &SessionId, waiters: usize) -> Duration {
    let counters = Arc::new(Counters::default());
    let mut factory = TestFactory::new(&counters, "cold");
    factory.build_delay = BUILD;
    let node = SessionManager::builder(memory.clone(), factory)
        .policy(ValidationPolicy::EveryAccess)
        .build();
    let start = Instant::now();
    let tasks: Vec<_> = (0..waiters)
        .map(|_| {
            let (node, id) = (node.clone(), id.clone());
            tokio::spawn(async move { node.get(&id).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let elapsed = start.elapsed();
    node.shutdown().await;
    assert_eq!(counters.builds(), 1);
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median per-iteration time over 31 samples of `iters` iterations.
fn sample<Fut: Future>(rt: &Runtime, iters: u64, mut f: impl FnMut() -> Fut) -> Duration {
    let per: Vec<Duration> = (0..31)
        .map(|_| rt.block_on(run_loop(iters, &mut f)) / u32::try_from(iters).unwrap())
        .collect();
    median(per)
}

fn main() {
    let fx = &fixture();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();

    c.bench_function("baseline_rwlock_hashmap_lookup", |b| {
        b.iter(|| black_box(fx.baseline.read().unwrap().get(&fx.id).cloned()));
    });
    c.bench_function("hit_push", |b| {
        b.to_async(&fx.rt)
            .iter_custom(|iters| run_loop(iters, || fx.push.get(&fx.id)));
    });
    c.bench_function("raw_store_version", |b| {
        b.to_async(&fx.rt)
            .iter_custom(|iters| run_loop(iters, || fx.memory.version(&fx.id)));
    });
    c.bench_function("hit_every_access", |b| {
        b.to_async(&fx.rt)
            .iter_custom(|iters| run_loop(iters, || fx.every.get(&fx.id)));
    });
    let mut cold = c.benchmark_group("cold_restore");
    cold.sample_size(10)
        .measurement_time(Duration::from_secs(3));
    cold.bench_function("single", |b| {
        b.to_async(&fx.rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += cold_restore(&fx.memory, &fx.id, 1).await;
            }
            total
        });
    });
    cold.bench_function("fan_in_1000", |b| {
        b.to_async(&fx.rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += cold_restore(&fx.memory, &fx.id, WAITERS).await;
            }
            total
        });
    });
    cold.finish();

    // Summary: medians and ratios.
    let baseline = median(
        (0..31)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..100_000 {
                    black_box(fx.baseline.read().unwrap().get(&fx.id).cloned());
                }
                start.elapsed() / 100_000
            })
            .collect(),
    );
    let calls_before = fx.calls.total();
    let push = sample(&fx.rt, 100_000, || fx.push.get(&fx.id));
    let push_calls = fx.calls.total() - calls_before;
    let raw = sample(&fx.rt, 100_000, || fx.memory.version(&fx.id));
    let every = sample(&fx.rt, 100_000, || fx.every.get(&fx.id));
    let single = median(
        (0..15)
            .map(|_| fx.rt.block_on(cold_restore(&fx.memory, &fx.id, 1)))
            .collect(),
    );
    let fan_in = median(
        (0..15)
            .map(|_| fx.rt.block_on(cold_restore(&fx.memory, &fx.id, WAITERS)))
            .collect(),
    );
    let propagation = fx.rt.block_on(propagation(&fx.memory, &fx.memory));
    let misses = fx.rt.block_on(miss_at_capacity());

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("\n== session-manager summary (medians) ==");
    println!("baseline RwLock<HashMap> lookup      {baseline:>10.1?}");
    println!(
        "hit, push policy                     {push:>10.1?}  = {:.2}x baseline (target <= 5x); store calls during {} hits: {push_calls}",
        ratio(push, baseline),
        31 * 100_000
    );
    println!("raw store version()                  {raw:>10.1?}");
    println!(
        "hit, every-access policy             {every:>10.1?}  = {:.2}x raw version (target <= 1.2x)",
        ratio(every, raw)
    );
    println!(
        "cold restore, 1 caller               {single:>10.2?}  (build simulates {BUILD:?} of backend setup)"
    );
    println!(
        "cold restore, {WAITERS} waiters         {fan_in:>10.2?}  = {:.2}x single (target <= 2x)",
        ratio(fan_in, single)
    );
    println!(
        "push propagation A->B (notify to B's entry dropped): median {propagation:?} over 101 runs"
    );
    for (n, miss, map) in &misses {
        println!(
            "miss at capacity, {n:>6} cached      {miss:>10.1?}  (restore + insert + evict one); HashMap insert+remove at {n}: {map:.1?}"
        );
    }
    if let [(_, small, small_map), (_, large, large_map)] = misses[..] {
        println!(
            "miss cost 100k / 1k cached           {:.2}x; each over its HashMap baseline: {:.0}x at 1k, {:.0}x at 100k (eviction does not grow with the cache)",
            ratio(large, small),
            ratio(small, small_map),
            ratio(large, large_map)
        );
    }
    for (feature_on, var) in [
        (cfg!(feature = "redis"), "SESSION_TEST_REDIS_URL"),
        (cfg!(feature = "postgres"), "SESSION_TEST_POSTGRES_URL"),
    ] {
        if let (true, Ok(url)) = (feature_on, std::env::var(var)) {
            let (raw, every, prop) = fx.rt.block_on(networked(&url));
            println!(
                "on {url}: raw version() {raw:.1?}, every-access hit {every:.1?} = {:.3}x; push propagation median {prop:.1?} over 101 runs",
                ratio(every, raw)
            );
        }
    }
    assert_eq!(push_calls, 0, "the push hit path made storage round trips");
    c.final_summary();
}

/// A node whose cache is full at `n` entries, and sessions stored but not
/// cached there (each `get` of one is a miss).
struct Full {
    n: usize,
    node: SessionManager<TestFactory>,
    fresh: Vec<SessionId>,
    map: HashMap<SessionId, Arc<String>>,
}

async fn full(n: usize, misses: usize) -> Full {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counters = Arc::new(Counters::default());
    let node = SessionManager::builder(store.clone(), TestFactory::new(&counters, "cap"))
        .policy(ValidationPolicy::Push)
        .capacity(n)
        .build();
    let md = backends(&["github"]);
    for _ in 0..n {
        node.create(md.clone()).await.unwrap();
    }
    assert_eq!(node.cached_len(), n);
    let mut fresh = Vec::new();
    for _ in 0..misses {
        let id = SessionId::generate();
        store
            .create(&id, &md, session_core::Ttl::Default)
            .await
            .unwrap();
        fresh.push(id);
    }
    let map = (0..n)
        .map(|i| (SessionId::generate(), Arc::new(format!("s{i}"))))
        .collect();
    Full {
        n,
        node,
        fresh,
        map,
    }
}

/// Median cost of a miss on a node whose cache is full (the restore, the
/// insert and the eviction of one entry) at 1k and at 100k cached entries,
/// and of an insert plus a remove in a plain `HashMap` of the same size (the
/// baseline at that size). Samples of the two sizes alternate, so machine
/// noise hits both alike.
async fn miss_at_capacity() -> Vec<(usize, Duration, Duration)> {
    const PER_SAMPLE: usize = 500;
    const SAMPLES: usize = 15;
    let mut nodes = vec![
        full(1_000, PER_SAMPLE * SAMPLES).await,
        full(100_000, PER_SAMPLE * SAMPLES).await,
    ];
    let mut misses = vec![Vec::new(); nodes.len()];
    let mut maps = vec![Vec::new(); nodes.len()];
    for sample in 0..SAMPLES {
        for (i, f) in nodes.iter_mut().enumerate() {
            let chunk = &f.fresh[sample * PER_SAMPLE..(sample + 1) * PER_SAMPLE];
            let start = Instant::now();
            for id in chunk {
                black_box(f.node.get(id).await.unwrap());
            }
            misses[i].push(start.elapsed() / u32::try_from(PER_SAMPLE).unwrap());
            let olds: Vec<SessionId> = f.map.keys().take(PER_SAMPLE).cloned().collect();
            let start = Instant::now();
            for (id, old) in chunk.iter().zip(&olds) {
                let v = f.map.remove(old).unwrap();
                black_box(f.map.insert(id.clone(), v));
            }
            maps[i].push(start.elapsed() / u32::try_from(PER_SAMPLE).unwrap());
        }
    }
    let mut out = Vec::new();
    for ((f, miss), map) in nodes.into_iter().zip(misses).zip(maps) {
        assert_eq!(f.node.cached_len(), f.n);
        f.node.shutdown().await;
        out.push((f.n, median(miss), median(map)));
    }
    out
}

/// Median time from a backend-expiry notify starting on node A to node B
/// (push policy) no longer serving its entry (marked stale or dropped) by
/// itself.
async fn propagation(store_a: &Arc<dyn SessionStore>, store_b: &Arc<dyn SessionStore>) -> Duration {
    let counters = Arc::new(Counters::default());
    let a = SessionManager::builder(store_a.clone(), TestFactory::new(&counters, "a"))
        .policy(ValidationPolicy::Push)
        .build();
    let b = SessionManager::builder(store_b.clone(), TestFactory::new(&counters, "b"))
        .policy(ValidationPolicy::Push)
        .build();
    let mut delays = Vec::new();
    for _ in 0..101 {
        let id = a
            .create(backends(&["github", "jira"]))
            .await
            .unwrap()
            .id()
            .clone();
        b.get(&id).await.unwrap();
        // From before the write: the delay includes the write's own round trip.
        let start = Instant::now();
        a.notify_backend_expired(&id, &workload("jira"))
            .await
            .unwrap();
        while b.cached(&id).is_some_and(|c| !c.stale) {
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::task::yield_now().await;
        }
        delays.push(start.elapsed());
        a.terminate(&id).await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
    median(delays)
}

/// Medians of a raw `version` call and an every-access hit on a networked
/// store, where a round trip dominates, and of push propagation between two
/// connections.
async fn networked(url: &str) -> (Duration, Duration, Duration) {
    let store = session_manager::connect(url).await.unwrap();
    let counters = Arc::new(Counters::default());
    let node = SessionManager::builder(store.clone(), TestFactory::new(&counters, "net"))
        .policy(ValidationPolicy::EveryAccess)
        .build();
    let id = node
        .create(backends(&["github"]))
        .await
        .unwrap()
        .id()
        .clone();
    let mut raw = Vec::new();
    let mut every = Vec::new();
    for _ in 0..31 {
        raw.push(run_loop(100, || store.version(&id)).await / 100);
        every.push(run_loop(100, || node.get(&id)).await / 100);
    }
    node.terminate(&id).await.unwrap();
    node.shutdown().await;
    let other = session_manager::connect(url).await.unwrap();
    let prop = propagation(&store, &other).await;
    (median(raw), median(every), prop)
}
