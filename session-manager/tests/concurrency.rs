//! Single-flight restore, lost updates, eviction storm.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Counters, TestFactory, TestStore, backends, counter};
use session_core::{MemoryStore, SessionStore, StoreConfig};
use session_manager::{Error, SessionManager, ValidationPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_gets_one_load_one_build() {
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counters = Arc::new(Counters::default());
    let creator = SessionManager::builder(memory.clone(), TestFactory::new(&counters, "a")).build();
    let id = creator
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();

    let store = TestStore::new(memory.clone());
    let calls = store.calls.clone();
    let mut factory = TestFactory::new(&counters, "b");
    factory.build_delay = Duration::from_millis(50);
    let node = SessionManager::builder(Arc::new(store), factory)
        .policy(ValidationPolicy::EveryAccess)
        .build();
    let builds_before = counters.builds();

    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (node, id, barrier) = (node.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                node.get(&id).await.map(|l| l.session().serial)
            })
        })
        .collect();
    let mut serials = std::collections::HashSet::new();
    for t in tasks {
        serials.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(serials.len(), 1, "every waiter got the same live session");
    assert_eq!(calls.load.load(Ordering::SeqCst), 1, "exactly one load");
    assert_eq!(counters.builds() - builds_before, 1, "exactly one build");
    creator.shutdown().await;
    node.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_honour_their_own_deadlines() {
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counters = Arc::new(Counters::default());
    let creator = SessionManager::builder(memory.clone(), TestFactory::new(&counters, "a")).build();
    let id = creator
        .create(backends(&["github"]))
        .await
        .unwrap()
        .id()
        .clone();
    let mut slow = TestFactory::new(&counters, "b");
    slow.build_delay = Duration::from_millis(200);
    let node = SessionManager::builder(memory, slow).build();
    let builds_before = counters.builds();

    let impatient = {
        let (node, id) = (node.clone(), id.clone());
        tokio::spawn(
            async move { tokio::time::timeout(Duration::from_millis(20), node.get(&id)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let patient = {
        let (node, id) = (node.clone(), id.clone());
        tokio::spawn(
            async move { tokio::time::timeout(Duration::from_secs(5), node.get(&id)).await },
        )
    };
    assert!(
        impatient.await.unwrap().is_err(),
        "the 20 ms waiter times out"
    );
    let live = patient
        .await
        .unwrap()
        .expect("the patient waiter is served")
        .unwrap();
    assert_eq!(live.id(), &id);
    assert_eq!(
        counters.builds() - builds_before,
        1,
        "the abandoned wait did not cancel or repeat the restore"
    );
    creator.shutdown().await;
    node.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_updates_three_nodes_sixteen_tasks() {
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counters = Arc::new(Counters::default());
    let nodes: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            SessionManager::builder(memory.clone(), TestFactory::new(&counters, n))
                .cas_retries(8)
                .cas_backoff(Duration::from_micros(200))
                .build()
        })
        .collect();
    let id = nodes[0]
        .create(backends(&["github"]))
        .await
        .unwrap()
        .id()
        .clone();
    let mut tasks = Vec::new();
    for node in &nodes {
        for _ in 0..16 {
            let (node, id) = (node.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut acked = 0u64;
                let mut exhausted = 0u64;
                for _ in 0..20 {
                    let r = node
                        .update(&id, |md| md.with("counter", (counter(md) + 1).to_string()))
                        .await;
                    match r {
                        Ok(_) => acked += 1,
                        Err(Error::ConflictBudgetExhausted { .. }) => exhausted += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                    // Interleave reads so live sessions get adopted/replaced.
                    node.get(&id).await.unwrap();
                }
                (acked, exhausted)
            }));
        }
    }
    let (mut acked, mut exhausted) = (0, 0);
    for t in tasks {
        let (a, e) = t.await.unwrap();
        acked += a;
        exhausted += e;
    }
    let stored = memory.load(&id).await.unwrap().unwrap();
    assert_eq!(
        counter(&stored.metadata),
        acked,
        "final value == acknowledged updates"
    );
    println!(
        "acknowledged {acked}, exhausted budget {exhausted}, final version {}",
        stored.version
    );
    for n in &nodes {
        n.shutdown().await;
    }
    counters.assert_balanced();
}

/// Backends that ignore the session-id hint give each node a new backend
/// session id on every build; with adoption two nodes settle.
async fn storm(policy: ValidationPolicy) {
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let counters_a = Arc::new(Counters::default());
    let counters_b = Arc::new(Counters::default());
    let mut fa = TestFactory::new(&counters_a, "a");
    fa.fresh_backend_ids = true;
    let mut fb = TestFactory::new(&counters_b, "b");
    fb.fresh_backend_ids = true;
    let a = SessionManager::builder(memory.clone(), fa)
        .policy(policy)
        .build();
    let b = SessionManager::builder(memory.clone(), fb)
        .policy(policy)
        .build();
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    for _ in 0..30 {
        b.get(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        a.get(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (ba, bb) = (counters_a.builds(), counters_b.builds());
    println!("{policy:?}: builds on A {ba} (1 = create), on B {bb}");
    assert!(ba <= 2, "A rebuilt {ba} times");
    assert!(bb <= 1 + 1, "B rebuilt {bb} times");
    // Settled: more rounds build nothing.
    for _ in 0..10 {
        b.get(&id).await.unwrap();
        a.get(&id).await.unwrap();
    }
    assert_eq!((counters_a.builds(), counters_b.builds()), (ba, bb));
    a.shutdown().await;
    b.shutdown().await;
    counters_a.assert_balanced();
    counters_b.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_eviction_storm_push() {
    storm(ValidationPolicy::Push).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_eviction_storm_every_access() {
    storm(ValidationPolicy::EveryAccess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_eviction_storm_bounded() {
    storm(ValidationPolicy::BoundedStaleness(Duration::from_millis(1))).await;
}
