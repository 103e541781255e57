//! Cross-node tests on real stores (features `redis`, `postgres`). The
//! servers come from `SESSION_TEST_REDIS_URL` / `SESSION_TEST_POSTGRES_URL`
//! (`cargo xtask test` finds local ones); unset, the tests fail and say so.
#![cfg(any(feature = "redis", feature = "postgres"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    Counters, Isolated, TestFactory, TestStore, backends, counter, eventually, url, workload,
};
use session_core::{SessionStore, keys};
use session_manager::{BackendExpiry, Error, SessionManager, ValidationPolicy};

fn node(
    store: Arc<dyn SessionStore>,
    counters: &Arc<Counters>,
    name: &str,
    policy: ValidationPolicy,
) -> SessionManager<TestFactory> {
    SessionManager::builder(store, TestFactory::new(counters, name))
        .policy(policy)
        .cas_backoff(Duration::from_millis(1))
        .cas_retries(32)
        .build()
}

async fn cross_node_every_access(iso: &Isolated) {
    let counters = Arc::new(Counters::default());
    let a = node(
        iso.handle().await,
        &counters,
        "a",
        ValidationPolicy::EveryAccess,
    );
    let b = node(
        iso.handle().await,
        &counters,
        "b",
        ValidationPolicy::EveryAccess,
    );
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    assert_eq!(b.get(&id).await.unwrap().session().node, "b");
    assert!(matches!(
        a.notify_backend_expired(&id, &workload("jira"))
            .await
            .unwrap(),
        BackendExpiry::Removed(_)
    ));
    let on_b = b.get(&id).await.unwrap();
    assert_eq!(
        keys::backend_ids(on_b.metadata()).unwrap(),
        vec![workload("github")]
    );
    assert!(b.terminate(&id).await.unwrap());
    assert!(matches!(a.get(&id).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        a.update(&id, |md| md.with("x", "y")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(a.store().version(&id).await.unwrap().is_none());
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

async fn push_propagation(iso: &Isolated) {
    let counters = Arc::new(Counters::default());
    let a = node(iso.handle().await, &counters, "a", ValidationPolicy::Push);
    let b = node(iso.handle().await, &counters, "b", ValidationPolicy::Push);
    let mut delays = Vec::new();
    for _ in 0..5 {
        let id = a
            .create(backends(&["github", "jira"]))
            .await
            .unwrap()
            .id()
            .clone();
        b.get(&id).await.unwrap();
        eventually("A settles", || a.cached(&id).is_some_and(|c| !c.stale)).await;
        a.notify_backend_expired(&id, &workload("jira"))
            .await
            .unwrap();
        delays.push(
            eventually("B drops the stale entry by itself", || {
                b.cached(&id).is_none()
            })
            .await,
        );
        let fresh = b.get(&id).await.unwrap();
        assert_eq!(
            keys::backend_ids(fresh.metadata()).unwrap(),
            vec![workload("github")]
        );
        a.terminate(&id).await.unwrap();
        eventually("B drops the terminated session", || b.cached(&id).is_none()).await;
        assert!(matches!(b.get(&id).await, Err(Error::NotFound { .. })));
    }
    println!("push propagation delays: {delays:?}");
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

async fn single_flight(iso: &Isolated) {
    let counters = Arc::new(Counters::default());
    let a = node(
        iso.handle().await,
        &counters,
        "a",
        ValidationPolicy::EveryAccess,
    );
    let id = a.create(backends(&["github"])).await.unwrap().id().clone();
    let store = TestStore::new(iso.handle().await);
    let calls = store.calls.clone();
    let mut factory = TestFactory::new(&counters, "b");
    factory.build_delay = Duration::from_millis(50);
    let b = SessionManager::builder(Arc::new(store), factory).build();
    let before = counters.builds();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (b, id) = (b.clone(), id.clone());
            tokio::spawn(async move { b.get(&id).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(calls.load.load(Ordering::SeqCst), 1);
    assert_eq!(counters.builds() - before, 1);
    a.terminate(&id).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

async fn lost_updates(iso: &Isolated) {
    let counters = Arc::new(Counters::default());
    let mut nodes = Vec::new();
    for n in ["a", "b", "c"] {
        nodes.push(node(
            iso.handle().await,
            &counters,
            n,
            ValidationPolicy::EveryAccess,
        ));
    }
    let id = nodes[0]
        .create(backends(&["github"]))
        .await
        .unwrap()
        .id()
        .clone();
    let mut tasks = Vec::new();
    for n in &nodes {
        for _ in 0..16 {
            let (n, id) = (n.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut acked = 0u64;
                for _ in 0..5 {
                    match n
                        .update(&id, |md| md.with("counter", (counter(md) + 1).to_string()))
                        .await
                    {
                        Ok(_) => acked += 1,
                        Err(Error::ConflictBudgetExhausted { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                acked
            }));
        }
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    let stored = nodes[0].store().load(&id).await.unwrap().unwrap();
    assert_eq!(counter(&stored.metadata), acked);
    nodes[0].terminate(&id).await.unwrap();
    for n in &nodes {
        n.shutdown().await;
    }
    counters.assert_balanced();
}

async fn no_storm(iso: &Isolated) {
    let (ca, cb) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let mut fa = TestFactory::new(&ca, "a");
    fa.fresh_backend_ids = true;
    let mut fb = TestFactory::new(&cb, "b");
    fb.fresh_backend_ids = true;
    let a = SessionManager::builder(iso.handle().await, fa)
        .policy(ValidationPolicy::Push)
        .build();
    let b = SessionManager::builder(iso.handle().await, fb)
        .policy(ValidationPolicy::Push)
        .build();
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    for _ in 0..20 {
        b.get(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.get(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        ca.builds() <= 2 && cb.builds() <= 2,
        "A {} B {}",
        ca.builds(),
        cb.builds()
    );
    a.terminate(&id).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    ca.assert_balanced();
    cb.assert_balanced();
}

macro_rules! store_tests {
    ($module:ident, $feature:literal, $var:literal, $example:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            fn url() -> String {
                super::url($var, $example)
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cross_node_every_access() {
                let iso = super::Isolated::new(&url());
                super::cross_node_every_access(&iso).await;
                iso.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn push_propagation() {
                let iso = super::Isolated::new(&url());
                super::push_propagation(&iso).await;
                iso.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn single_flight() {
                let iso = super::Isolated::new(&url());
                super::single_flight(&iso).await;
                iso.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn lost_updates() {
                let iso = super::Isolated::new(&url());
                super::lost_updates(&iso).await;
                iso.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn no_storm() {
                let iso = super::Isolated::new(&url());
                super::no_storm(&iso).await;
                iso.cleanup().await;
            }
        }
    };
}

store_tests!(
    redis,
    "redis",
    "SESSION_TEST_REDIS_URL",
    "redis://127.0.0.1:6379"
);
store_tests!(
    postgres,
    "postgres",
    "SESSION_TEST_POSTGRES_URL",
    "postgres://postgres@127.0.0.1:5432/test"
);

/// Between the loss of a Redis node's change subscription and its
/// resubscription, a push node probes every hit: a terminate made on
/// another node during the gap is seen at once.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_probes_during_a_redis_subscription_gap() {
    use session_manager::{RedisConfig, RedisStore, redis::Backoff};
    let url = url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let iso = Isolated::new(&url);
    let counters = Arc::new(Counters::default());
    let a = node(
        iso.handle().await,
        &counters,
        "a",
        ValidationPolicy::EveryAccess,
    );
    // A long re-dial wait keeps the gap open while the test looks at it.
    let config = RedisConfig::new(url.clone())
        .prefix(iso.prefix())
        .subscriber_backoff(Backoff {
            initial: Duration::from_secs(3),
            max: Duration::from_secs(3),
        });
    let store = Arc::new(RedisStore::connect(config).await.unwrap());
    let b = node(store.clone(), &counters, "b", ValidationPolicy::Push);
    let x = a.create(backends(&["github"])).await.unwrap().id().clone();
    let y = a.create(backends(&["jira"])).await.unwrap().id().clone();
    b.get(&x).await.unwrap();
    b.get(&y).await.unwrap();
    eventually("subscription live", || {
        store.change_subscriber_addr().is_some()
    })
    .await;
    let addr = store.change_subscriber_addr().unwrap();
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ADDR")
        .arg(addr.to_string())
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    eventually("B saw the stream go down", || !b.stream_live()).await;
    a.terminate(&x).await.unwrap();
    assert!(
        matches!(b.get(&x).await, Err(Error::NotFound { .. })),
        "push node served a session terminated during the gap"
    );
    // Resubscribed: push again, after one probe per entry.
    eventually("B resynchronised", || b.stream_live()).await;
    b.get(&y).await.unwrap();
    a.terminate(&y).await.unwrap();
    eventually("delete event delivered after the resync", || {
        b.cached(&y).is_none()
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
    iso.cleanup().await;
}
