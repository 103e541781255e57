//! Seeded, repeatable resurrection race: terminate against get / restore /
//! update / notify on three nodes over one store, thousands of schedules.
//!
//! Each schedule runs on a single-threaded runtime; a seeded generator
//! decides how often every store call, build and operation start yields, so
//! a seed is one interleaving and a failure names the seed that replays it
//! (`RACE_SEED=<n>`). `RACE_SCHEDULES` sets how many seeds run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Counters, Rng, TestFactory, TestStore, Yielder, backends, counter, workload};
use session_core::{MemoryStore, SessionStore, StoreConfig};
use session_manager::{BackendExpiry, Error, SessionManager, ValidationPolicy};

const BOUND: Duration = Duration::from_millis(3);

#[derive(Clone, Copy, Debug)]
enum Op {
    Get(usize),
    Update(usize),
    Notify(usize),
    Terminate(usize),
}

#[derive(Debug)]
struct Done {
    op: Op,
    start: u64,
    /// The operation returned the session / acknowledged a write.
    succeeded: bool,
}

fn policy(rng: &mut Rng) -> ValidationPolicy {
    match rng.below(3) {
        0 => ValidationPolicy::EveryAccess,
        1 => ValidationPolicy::Push,
        _ => ValidationPolicy::BoundedStaleness(BOUND),
    }
}

async fn schedule(seed: u64, url: Option<&str>) {
    let isolated = url.map(common::Isolated::new);
    schedule_on(seed, isolated.as_ref()).await;
    if let Some(iso) = isolated {
        iso.cleanup().await;
    }
}

async fn schedule_on(seed: u64, iso: Option<&common::Isolated>) {
    let real_server = iso.is_some();
    let mut rng = Rng::new(seed);
    let yielder = Yielder::seeded(seed.wrapping_mul(31).wrapping_add(7));
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counters = Arc::new(Counters::default());
    let nodes_n = 2 + usize::from(rng.below(2) == 1);
    let policies: Vec<ValidationPolicy> = (0..nodes_n).map(|_| policy(&mut rng)).collect();
    let slow_closes = rng.below(4) == 0;
    // Capacity pressure in some schedules: each node caches a filler
    // session, so restoring the raced one evicts.
    let pressure = rng.below(3) == 0;
    let capacity = if pressure { 1 } else { 10_000 };
    let mut nodes = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        // One handle per node: separate connections on a real server.
        let handle = match iso {
            None => memory.clone(),
            Some(iso) => iso.handle().await,
        };
        let mut store = TestStore::new(handle);
        store.yielder = yielder.clone();
        let mut factory = TestFactory::new(&counters, &format!("n{i}"));
        factory.yielder = yielder.clone();
        factory.fresh_backend_ids = rng.below(2) == 0;
        // Slow closes (random, up to 10 ms) in some schedules: a close must
        // never hold a restore's slot open.
        if slow_closes {
            factory.close_jitter = Duration::from_millis(10);
        }
        nodes.push(
            SessionManager::builder(Arc::new(store), factory)
                .policy(*p)
                .capacity(capacity)
                .cas_backoff(Duration::ZERO)
                .cas_retries(64)
                .build(),
        );
    }
    let id = nodes[0]
        .create(backends(&["github", "jira", "slack"]))
        .await
        .unwrap()
        .id()
        .clone();
    for n in &nodes {
        if pressure {
            let filler = nodes[0].create(backends(&["github"])).await.unwrap();
            n.get(filler.id()).await.unwrap();
        }
        if rng.below(2) == 0 {
            n.get(&id).await.unwrap();
        }
    }
    let terminator = usize::try_from(rng.below(nodes_n as u64)).unwrap();

    let mut ops: Vec<Op> = (0..4 + rng.below(6))
        .map(|_| {
            let n = usize::try_from(rng.below(nodes_n as u64)).unwrap();
            match rng.below(4) {
                0 | 1 => Op::Get(n),
                2 => Op::Update(n),
                _ => Op::Notify(n),
            }
        })
        .collect();
    let at = usize::try_from(rng.below(ops.len() as u64 + 1)).unwrap();
    ops.insert(at, Op::Terminate(terminator));

    let clock = Arc::new(AtomicU64::new(0));
    let acked_at = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = Vec::new();
    for op in ops {
        let delay = rng.below(8);
        let (node, id, clock, acked_at, yielder) = (
            nodes[match op {
                Op::Get(n) | Op::Update(n) | Op::Notify(n) | Op::Terminate(n) => n,
            }]
            .clone(),
            id.clone(),
            clock.clone(),
            acked_at.clone(),
            yielder.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..delay {
                tokio::task::yield_now().await;
            }
            yielder.pause(2).await;
            let start = clock.fetch_add(1, Ordering::SeqCst);
            let succeeded = match op {
                Op::Get(_) => match node.get(&id).await {
                    Ok(_) => true,
                    Err(Error::NotFound { .. }) => false,
                    Err(e) => panic!("get: {e}"),
                },
                Op::Update(_) => match node
                    .update(&id, |md| md.with("counter", (counter(md) + 1).to_string()))
                    .await
                {
                    Ok(_) => true,
                    Err(Error::NotFound { .. }) => false,
                    Err(e) => panic!("update: {e}"),
                },
                Op::Notify(_) => {
                    let w =
                        workload(["github", "jira", "slack"][usize::try_from(start % 3).unwrap()]);
                    matches!(
                        node.notify_backend_expired(&id, &w).await.unwrap(),
                        BackendExpiry::Removed(_)
                    )
                }
                Op::Terminate(_) => {
                    node.terminate(&id).await.unwrap();
                    acked_at.store(clock.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                    true
                }
            };
            Done {
                op,
                start,
                succeeded,
            }
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    let acked = acked_at.load(Ordering::SeqCst);
    let ctx = format!("seed {seed}, policies {policies:?}");
    for d in &done {
        if d.start <= acked || !d.succeeded {
            continue;
        }
        match d.op {
            // With every-access validation, no get that starts after the
            // terminate was acknowledged returns the session.
            Op::Get(n) if policies[n] == ValidationPolicy::EveryAccess => {
                panic!("{ctx}: get on node {n} after terminate returned the session ({d:?})")
            }
            // Under every policy, the node that terminated never serves it
            // again.
            Op::Get(n) if n == terminator => {
                panic!("{ctx}: node {n} served the session it terminated ({d:?})")
            }
            Op::Get(_) | Op::Terminate(_) => {}
            // Under every policy no later write succeeds.
            Op::Update(_) | Op::Notify(_) => {
                panic!("{ctx}: write after terminate succeeded ({d:?})")
            }
        }
    }
    assert!(
        nodes[0].store().version(&id).await.unwrap().is_none(),
        "{ctx}: storage holds the session again"
    );

    // Within the documented bound every node stops returning it: push once
    // the change events are delivered, bounded staleness after BOUND.
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    if policies
        .iter()
        .any(|p| matches!(p, ValidationPolicy::BoundedStaleness(_)))
    {
        tokio::time::sleep(BOUND + Duration::from_millis(1)).await;
    }
    for (n, node) in nodes.iter().enumerate() {
        // On a real server change events take a network hop: wait for them
        // (generously; the guarantee is "once the event arrives").
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match node.get(&id).await {
                Err(Error::NotFound { .. }) => break,
                other if !real_server || std::time::Instant::now() > deadline => panic!(
                    "{ctx}: node {n} ({:?}) still serves the terminated session: {other:?}",
                    policies[n]
                ),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }
    for node in &nodes {
        node.shutdown().await;
    }
    counters.assert_balanced();
}

fn run_seeds(url: Option<&str>, default_schedules: u64) {
    let seeds: Vec<u64> = if let Ok(s) = std::env::var("RACE_SEED") {
        vec![s.parse().unwrap()]
    } else {
        let n = std::env::var("RACE_SCHEDULES").map_or(default_schedules, |s| s.parse().unwrap());
        (0..n).collect()
    };
    for seed in seeds {
        // A fresh runtime per seed: on MemoryStore the schedule depends on
        // the seed only.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(schedule(seed, url));
    }
}

#[test]
fn terminate_never_resurrects() {
    run_seeds(None, 3000);
}

/// Fewer schedules on a real server (each connects 2-3 handles); set
/// `RACE_SCHEDULES` for more.
#[cfg(feature = "redis")]
#[test]
fn terminate_never_resurrects_redis() {
    run_seeds(
        Some(&common::url(
            "SESSION_TEST_REDIS_URL",
            "redis://127.0.0.1:6379",
        )),
        200,
    );
}

#[cfg(feature = "postgres")]
#[test]
fn terminate_never_resurrects_postgres() {
    run_seeds(
        Some(&common::url(
            "SESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )),
        100,
    );
}
