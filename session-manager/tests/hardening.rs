//! The manager's promises outside the happy path: a terminate that is final,
//! closes that survive cancellation, panics and stalls, stream gaps, refused
//! callers that extend nothing, staleness stamped at send time, storage
//! that goes backwards, and slots that never leak.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{Counters, TestFactory, TestStore, Yielder, backends, eventually, workload};
use session_core::{
    Binding, Change, ChangeHub, ChangeStream, Cursor, ManualClock, MemoryStore, Metadata, Page,
    Record, SessionId, SessionStore, StoreConfig, Ttl, Update, Version, keys,
};
use session_manager::{Error, SessionManager, SessionManagerBuilder, ValidationPolicy};

type Builder = SessionManagerBuilder<TestFactory>;

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new(StoreConfig::default()))
}

fn node(
    store: &Arc<dyn SessionStore>,
    factory: TestFactory,
    f: impl FnOnce(Builder) -> Builder,
) -> SessionManager<TestFactory> {
    f(SessionManager::builder(store.clone(), factory)).build()
}

fn bound(md: &Metadata, who: &str) -> Metadata {
    keys::with_binding(md, &identity(who)).unwrap()
}

fn identity(who: &str) -> Binding {
    Binding::identity("https://idp.example", who).unwrap()
}

/// Polls `fut` `polls` times, letting other tasks run in between, then drops
/// it (a client that disconnects mid-operation).
async fn cancel_after<F: Future>(fut: F, polls: usize) -> bool {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        let ready = std::future::poll_fn(|cx: &mut Context<'_>| {
            Poll::Ready(fut.as_mut().poll(cx).is_ready())
        })
        .await;
        if ready {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

async fn terminated_session_is_never_served_again(policy: ValidationPolicy) {
    // Item 1: capacity 1; Y's close is slow; get(X) caches X and evicts Y;
    // terminate(X) is acknowledged; a get(X) after the ack must not return X.
    let store = memory();
    let counters = Arc::new(Counters::default());
    let mut factory = TestFactory::new(&counters, "a");
    factory.slow_close_delay = Duration::from_millis(600);
    let slow = factory.slow_close.clone();
    let a = node(&store, factory, |b| b.policy(policy).capacity(1));
    let other = node(&store, TestFactory::new(&counters, "o"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let y = a.create(backends(&["github"])).await.unwrap().id().clone();
    slow.lock().unwrap().insert(y.to_string());
    let x = other
        .create(backends(&["jira"]))
        .await
        .unwrap()
        .id()
        .clone();

    let restoring = tokio::spawn({
        let a = a.clone();
        let x = x.clone();
        async move { a.get(&x).await.map(|l| l.version()) }
    });
    eventually("X cached", || a.cached(&x).is_some()).await;
    assert!(a.terminate(&x).await.unwrap());
    match a.get(&x).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{policy:?}: get after the acknowledged terminate: {other:?}"),
    }
    let _ = restoring.await.unwrap();

    // A push node that processed another node's delete event never hands
    // the session out either.
    if policy == ValidationPolicy::Push {
        let z = other
            .create(backends(&["jira"]))
            .await
            .unwrap()
            .id()
            .clone();
        let w = a.create(backends(&["github"])).await.unwrap().id().clone();
        slow.lock().unwrap().insert(w.to_string());
        let restoring = tokio::spawn({
            let a = a.clone();
            let z = z.clone();
            async move { a.get(&z).await.map(|l| l.version()) }
        });
        eventually("Z cached", || a.cached(&z).is_some()).await;
        assert!(other.terminate(&z).await.unwrap());
        eventually("delete event applied", || a.cached(&z).is_none()).await;
        match a.get(&z).await {
            Err(Error::NotFound { .. }) => {}
            other => panic!("push node served a session deleted elsewhere: {other:?}"),
        }
        let _ = restoring.await.unwrap();
    }
    a.shutdown().await;
    other.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_is_final_bounded_staleness() {
    terminated_session_is_never_served_again(ValidationPolicy::BoundedStaleness(
        Duration::from_secs(60),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_is_final_push() {
    terminated_session_is_never_served_again(ValidationPolicy::Push).await;
}

#[tokio::test(flavor = "current_thread")]
async fn cancellation_at_every_await_point_closes_every_built_session() {
    // Item 2: activate, create, terminate and a capacity-evicting get are
    // dropped after 0, 1, 2, ... polls; afterwards builds == closes.
    let counters = Arc::new(Counters::default());
    let mut store = TestStore::new(memory());
    store.yielder = Yielder::seeded(11);
    let store: Arc<dyn SessionStore> = Arc::new(store);
    let mut factory = TestFactory::new(&counters, "a");
    factory.yielder = Yielder::seeded(12);
    let m = node(&store, factory, |b| {
        b.policy(ValidationPolicy::Push).capacity(2)
    });
    let other = node(&store, TestFactory::new(&counters, "o"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let mut completed = 0;
    for polls in 0..48 {
        let id = m.reserve().await.unwrap();
        completed += usize::from(cancel_after(m.activate(&id, backends(&["github"])), polls).await);
        completed += usize::from(cancel_after(m.create(backends(&["jira"])), polls).await);
        let live = m.create(backends(&["slack"])).await.unwrap();
        completed += usize::from(cancel_after(m.terminate(live.id()), polls).await);
        drop(live);
        let elsewhere = other
            .create(backends(&["github"]))
            .await
            .unwrap()
            .id()
            .clone();
        completed += usize::from(cancel_after(m.get(&elsewhere), polls).await);
    }
    assert!(
        completed > 0 && completed < 4 * 48,
        "every await point was reached ({completed})"
    );
    m.shutdown().await;
    other.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_last_handle_closes_cached_sessions() {
    let counters = Arc::new(Counters::default());
    let store = memory();
    let m = node(&store, TestFactory::new(&counters, "a"), |b| b);
    for _ in 0..5 {
        m.create(backends(&["github"])).await.unwrap();
    }
    assert_eq!(counters.builds(), 5);
    drop(m);
    eventually("closes after the last handle dropped", || {
        counters.closes() == 5
    })
    .await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_never_returns_does_not_block_shutdown() {
    let counters = Arc::new(Counters::default());
    let store = memory();
    let creator = node(&store, TestFactory::new(&counters, "c"), |b| b);
    let id = creator
        .create(backends(&["github"]))
        .await
        .unwrap()
        .id()
        .clone();
    let mut factory = TestFactory::new(&counters, "hung");
    factory.build_delay = Duration::from_secs(3600);
    let m = node(&store, factory, |b| {
        b.shutdown_timeout(Duration::from_millis(200))
    });
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { m.get(&id).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(10), m.shutdown())
        .await
        .expect("shutdown returns by its deadline");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.unfinished_restores, 1, "{report:?}");
    waiter.abort();
    creator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_close_does_not_stop_the_listener_or_the_sweeper() {
    // Item 3.
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, TestFactory::new(&counters, "a"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let factory = TestFactory::new(&counters, "b");
    let panics = factory.close_panics.clone();
    let panicked = factory.close_panicked.clone();
    panics.store(true, Ordering::SeqCst);
    let b = node(&store, factory, |b| {
        b.policy(ValidationPolicy::Push)
            .idle_timeout(Duration::from_millis(100))
    });
    // A delete event makes the listener evict (and close) a session.
    let doomed = a.create(backends(&["github"])).await.unwrap().id().clone();
    b.get(&doomed).await.unwrap();
    a.terminate(&doomed).await.unwrap();
    eventually("the close ran and panicked", || {
        panicked.load(Ordering::SeqCst) >= 1
    })
    .await;
    // The listener still delivers: B sees another node's change without
    // probing (a push hit does not probe).
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    let v = b.get(&id).await.unwrap().version();
    a.notify_backend_expired(&id, &workload("jira"))
        .await
        .unwrap();
    eventually("push event applied after a panicking close", || {
        b.cached(&id).is_none_or(|c| c.stale || c.version > v)
    })
    .await;
    // The sweeper survives panicking closes too: idle entries keep going.
    let before = panicked.load(Ordering::SeqCst);
    for _ in 0..3 {
        let s = a.create(backends(&["slack"])).await.unwrap().id().clone();
        b.get(&s).await.unwrap();
        eventually("idle entry evicted", || b.cached(&s).is_none()).await;
    }
    // Closes run on the closer, after the entry left the cache.
    eventually("three more panicking closes", || {
        panicked.load(Ordering::SeqCst) >= before + 3
    })
    .await;
    panics.store(false, Ordering::SeqCst);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_does_not_stall_change_events() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, TestFactory::new(&counters, "a"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let mut factory = TestFactory::new(&counters, "b");
    factory.close_delay = Duration::from_secs(5);
    let b = node(&store, factory, |b| b.policy(ValidationPolicy::Push));
    let doomed = a.create(backends(&["github"])).await.unwrap().id().clone();
    b.get(&doomed).await.unwrap();
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    let v = b.get(&id).await.unwrap().version();
    a.terminate(&doomed).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.notify_backend_expired(&id, &workload("jira"))
        .await
        .unwrap();
    let took = eventually("push event applied behind a slow close", || {
        b.cached(&id).is_none_or(|c| c.stale || c.version > v)
    })
    .await;
    assert!(
        took < Duration::from_secs(3),
        "the listener waited for a close ({took:?})"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn push_probes_every_hit_between_down_and_resync() {
    // Item 4: the stream says it is down; a terminate elsewhere during the
    // gap is seen by probing.
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, TestFactory::new(&counters, "a"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let hub = Arc::new(Mutex::new(Some(ChangeHub::new(16))));
    let mut gapped = TestStore::new(store.clone());
    gapped.hub = Some(hub.clone());
    let calls = gapped.calls.clone();
    let gapped: Arc<dyn SessionStore> = Arc::new(gapped);
    let b = node(&gapped, TestFactory::new(&counters, "b"), |b| {
        b.policy(ValidationPolicy::Push)
    });
    let x = a.create(backends(&["github"])).await.unwrap().id().clone();
    let y = a.create(backends(&["github"])).await.unwrap().id().clone();
    b.get(&x).await.unwrap();
    b.get(&y).await.unwrap();
    let publish = |c: Change| hub.lock().unwrap().as_ref().unwrap().publish(c);
    publish(Change::Down);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    a.terminate(&x).await.unwrap();
    assert!(
        matches!(b.get(&x).await, Err(Error::NotFound { .. })),
        "hit during the gap was not probed"
    );
    // Back to push once resynchronised: one probe per entry, then none.
    publish(Change::Resync);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    b.get(&y).await.unwrap();
    let probes = calls.version.load(Ordering::SeqCst);
    for _ in 0..5 {
        b.get(&y).await.unwrap();
    }
    assert_eq!(
        calls.version.load(Ordering::SeqCst),
        probes,
        "push hits probe after the resync"
    );
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn refused_callers_and_bulk_scans_do_not_extend_a_session() {
    // Item 5, on the store's own clock.
    let clock = ManualClock::new();
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::with_clock(
        StoreConfig::new(Duration::from_secs(60)).unwrap(),
        clock.clone(),
    ));
    let counters = Arc::new(Counters::default());
    let a = node(&store, TestFactory::new(&counters, "a"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let b = node(&store, TestFactory::new(&counters, "b"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let owned = a
        .create(bound(&backends(&["github"]), "alice"))
        .await
        .unwrap()
        .id()
        .clone();
    let idle = a.create(backends(&["jira"])).await.unwrap().id().clone();
    let mallory = identity("mallory");
    for _ in 0..4 {
        clock.advance(Duration::from_secs(10));
        assert!(matches!(
            b.get_for(&owned, &mallory).await,
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            b.terminate_for(&owned, &mallory).await,
            Err(Error::Forbidden { .. })
        ));
        // Bulk path: the session does not hold the backend, nothing changes.
        b.evict_backend(&workload("slack")).await.unwrap();
    }
    clock.advance(Duration::from_secs(21));
    assert_eq!(
        store.version(&owned).await.unwrap(),
        None,
        "a refused caller kept the session alive"
    );
    assert_eq!(
        store.version(&idle).await.unwrap(),
        None,
        "evict_backend slid an untouched session"
    );
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_staleness_is_stamped_when_the_probe_is_sent() {
    // Item 6: replies take 400 ms; the bound is 100 ms.
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, TestFactory::new(&counters, "a"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let mut slow = TestStore::new(store.clone());
    slow.reply_delay = Duration::from_millis(400);
    let slow: Arc<dyn SessionStore> = Arc::new(slow);
    let bound_ms = Duration::from_millis(100);
    let b = node(&slow, TestFactory::new(&counters, "b"), |b| {
        b.policy(ValidationPolicy::BoundedStaleness(bound_ms))
    });
    let id = a.create(backends(&["github"])).await.unwrap().id().clone();
    b.get(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // This probe reads storage at once; its reply arrives 400 ms later.
    let probing = tokio::spawn({
        let b = b.clone();
        let id = id.clone();
        async move { b.get(&id).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.terminate(&id).await.unwrap();
    let acked = Instant::now();
    probing.await.unwrap().unwrap();
    // More than the bound after the terminate was acknowledged.
    tokio::time::sleep((bound_ms + Duration::from_millis(50)).saturating_sub(acked.elapsed()))
        .await;
    let asked = acked.elapsed();
    assert!(
        matches!(b.get(&id).await, Err(Error::NotFound { .. })),
        "served {asked:?} after the terminate with a {bound_ms:?} bound"
    );
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

/// A store whose backing storage can be replaced: a failover to a replica
/// that lost acknowledged writes.
struct Failover(RwLock<Arc<dyn SessionStore>>);

impl Failover {
    fn current(&self) -> Arc<dyn SessionStore> {
        self.0.read().unwrap().clone()
    }
}

#[async_trait]
impl SessionStore for Failover {
    async fn create_once(
        &self,
        id: &SessionId,
        md: &Metadata,
        ttl: Ttl,
        write: &session_core::WriteId,
    ) -> session_core::Result<Option<Version>> {
        self.current().create_once(id, md, ttl, write).await
    }
    async fn load(&self, id: &SessionId) -> session_core::Result<Option<Record>> {
        self.current().load(id).await
    }
    async fn peek(&self, id: &SessionId) -> session_core::Result<Option<Record>> {
        self.current().peek(id).await
    }
    async fn version(&self, id: &SessionId) -> session_core::Result<Option<Version>> {
        self.current().version(id).await
    }
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        md: &Metadata,
        write: &session_core::WriteId,
    ) -> session_core::Result<Update> {
        self.current().update_once(id, expected, md, write).await
    }
    async fn touch(&self, id: &SessionId) -> session_core::Result<bool> {
        self.current().touch(id).await
    }
    async fn delete(&self, id: &SessionId) -> session_core::Result<bool> {
        self.current().delete(id).await
    }
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> session_core::Result<Page> {
        self.current().scan(cursor, limit).await
    }
    fn changes(&self) -> Option<ChangeStream> {
        None
    }
    fn config(&self) -> &StoreConfig {
        static CONFIG: std::sync::OnceLock<StoreConfig> = std::sync::OnceLock::new();
        CONFIG.get_or_init(StoreConfig::default)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn storage_that_goes_backwards_is_accepted_once_confirmed() {
    // Item 7.
    let primary = memory();
    let failover = Arc::new(Failover(RwLock::new(primary.clone())));
    let store: Arc<dyn SessionStore> = failover.clone();
    let counters = Arc::new(Counters::default());
    let m = node(&store, TestFactory::new(&counters, "m"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let live = m.create(backends(&["github"])).await.unwrap();
    let id = live.id().clone();
    for i in 0..3 {
        m.update(&id, |md| md.with("n", i.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(m.get(&id).await.unwrap().version(), Version::new(5));
    // The replica has the session at version 2 only.
    let replica = memory();
    replica
        .create(&id, &backends(&["github"]), Ttl::Default)
        .await
        .unwrap();
    let rewound = replica
        .update(
            &id,
            Version::INITIAL,
            &backends(&["github"]).with("n", "x").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rewound, Update::Applied(Version::new(2)));
    *failover.0.write().unwrap() = replica;
    assert_eq!(m.get(&id).await.unwrap().version(), Version::new(2));
    let state = m.cached(&id).expect("cached");
    assert!(
        !state.stale,
        "the rewound version was not accepted: {state:?}"
    );
    let builds = counters.builds();
    for _ in 0..5 {
        assert_eq!(m.get(&id).await.unwrap().version(), Version::new(2));
    }
    assert_eq!(
        counters.builds(),
        builds,
        "every get rebuilt after the rewind"
    );
    m.update(&id, |md| md.with("n", "after")).await.unwrap();
    assert_eq!(m.get(&id).await.unwrap().version(), Version::new(3));
    drop(live);
    m.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_cancelled_activations_leave_no_slots() {
    // Item 8.
    let counters = Arc::new(Counters::default());
    let mut store = TestStore::new(memory());
    store.yielder = Yielder::seeded(5);
    let store: Arc<dyn SessionStore> = Arc::new(store);
    let mut factory = TestFactory::new(&counters, "a");
    factory.yielder = Yielder::seeded(6);
    let m = node(&store, factory, |b| b.policy(ValidationPolicy::EveryAccess));
    for i in 0..10_000 {
        let id = m.reserve().await.unwrap();
        if cancel_after(m.activate(&id, backends(&["github"])), 1 + i % 7).await {
            // Finished before it could be cancelled: cached, evict it.
            assert!(m.evict_local(&id));
        }
    }
    // Closes are asynchronous: let the closer finish.
    eventually("closes", || counters.closes() == counters.builds()).await;
    assert_eq!(m.cached_len(), 0);
    assert_eq!(
        m.slot_count(),
        0,
        "cancelled activations leaked cache slots"
    );
    m.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_identity_flood_does_not_starve_the_owner() {
    // Item 9: attackers keep starting restores of an uncached session.
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, TestFactory::new(&counters, "a"), |b| b);
    let mut slow = TestStore::new(store.clone());
    slow.delay = Duration::from_millis(2);
    let slow: Arc<dyn SessionStore> = Arc::new(slow);
    let b = node(&slow, TestFactory::new(&counters, "b"), |b| {
        b.policy(ValidationPolicy::EveryAccess)
    });
    let id = a
        .create(bound(&backends(&["github"]), "alice"))
        .await
        .unwrap()
        .id()
        .clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..64 {
        let (b, id, stop) = (b.clone(), id.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mallory = identity("mallory");
            while !stop.load(Ordering::Relaxed) {
                assert!(matches!(
                    b.get_for(&id, &mallory).await,
                    Err(Error::Forbidden { .. })
                ));
                // A refused hit completes without awaiting: let others run
                // (a refused miss awaited a restore already).
                if b.cached(&id).is_some() {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let alice = identity("alice");
    for _ in 0..20 {
        b.get_for(&id, &alice)
            .await
            .expect("the owner is served during the flood");
        // Evict it here again so the next get is a miss.
        b.evict_local(&id);
    }
    stop.store(true, Ordering::Relaxed);
    for t in attackers {
        t.await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}
