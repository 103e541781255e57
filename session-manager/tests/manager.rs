//! Cross-node behaviour, placeholders, eviction, identity, storage errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Counters, TestFactory, TestStore, backends, eventually, workload};
use session_core::{Binding, ManualClock, MemoryStore, SessionId, SessionStore, StoreConfig, keys};
use session_manager::{BackendExpiry, Error, SessionManager, ValidationPolicy};

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new(StoreConfig::default()))
}

/// A manager whose factory checks at every close that no cache lock is held.
fn node(
    store: &Arc<dyn SessionStore>,
    counters: &Arc<Counters>,
    name: &str,
    policy: ValidationPolicy,
) -> SessionManager<TestFactory> {
    node_with(store, counters, name, |b| b.policy(policy))
}

fn node_with(
    store: &Arc<dyn SessionStore>,
    counters: &Arc<Counters>,
    name: &str,
    f: impl FnOnce(
        session_manager::SessionManagerBuilder<TestFactory>,
    ) -> session_manager::SessionManagerBuilder<TestFactory>,
) -> SessionManager<TestFactory> {
    let factory = TestFactory::new(counters, name);
    let probe = factory.lock_probe.clone();
    let m = f(SessionManager::builder(store.clone(), factory)).build();
    let weak = m.clone();
    let _ = probe.set(Box::new(move || weak.cache_unlocked()));
    m
}

#[tokio::test(flavor = "current_thread")]
async fn cross_node_restore_expiry_and_terminate_every_access() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, &counters, "a", ValidationPolicy::EveryAccess);
    let b = node(&store, &counters, "b", ValidationPolicy::EveryAccess);
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();

    let on_b = b.get(&id).await.unwrap();
    assert_eq!(on_b.session().node, "b", "restored on B");
    assert_eq!(keys::backend_ids(on_b.metadata()).unwrap().len(), 2);

    let r = a
        .notify_backend_expired(&id, &workload("jira"))
        .await
        .unwrap();
    assert!(matches!(r, BackendExpiry::Removed(_)));
    let again = a
        .notify_backend_expired(&id, &workload("jira"))
        .await
        .unwrap();
    assert_eq!(again, BackendExpiry::NotPresent, "idempotent");
    // B's very next access sees it.
    let on_b2 = b.get(&id).await.unwrap();
    assert_eq!(
        keys::backend_ids(on_b2.metadata()).unwrap(),
        vec![workload("github")]
    );
    assert!(!Arc::ptr_eq(&on_b, &on_b2));

    assert!(b.terminate(&id).await.unwrap());
    assert!(matches!(a.get(&id).await, Err(Error::NotFound { .. })));
    assert!(matches!(b.get(&id).await, Err(Error::NotFound { .. })));
    assert_eq!(
        a.notify_backend_expired(&id, &workload("github"))
            .await
            .unwrap(),
        BackendExpiry::SessionGone
    );
    assert!(matches!(
        a.update(&id, |md| md.with("x", "y")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.version(&id).await.unwrap().is_none());
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_drops_stale_entry_without_any_call() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, &counters, "a", ValidationPolicy::Push);
    let b = node(&store, &counters, "b", ValidationPolicy::Push);
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    let v = b.get(&id).await.unwrap().version();
    // B wrote back its backend session ids on restore: let A settle.
    eventually("A adopts B's write-back", || {
        a.cached(&id).is_some_and(|c| !c.stale)
    })
    .await;

    a.notify_backend_expired(&id, &workload("jira"))
        .await
        .unwrap();
    let delay = eventually("B drops the stale entry", || b.cached(&id).is_none()).await;
    println!("push propagation: B dropped the entry {delay:?} after the notify returned");
    let fresh = b.get(&id).await.unwrap();
    assert!(fresh.version() > v);
    assert_eq!(
        keys::backend_ids(fresh.metadata()).unwrap(),
        vec![workload("github")]
    );

    // Terminate on A: B drops it by itself too.
    a.terminate(&id).await.unwrap();
    eventually("B drops the terminated session", || b.cached(&id).is_none()).await;
    assert!(matches!(b.get(&id).await, Err(Error::NotFound { .. })));
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn placeholders_are_not_restorable_and_expire() {
    let clock = ManualClock::new();
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::with_clock(
        StoreConfig::new(Duration::from_secs(600)).unwrap(),
        clock.clone(),
    ));
    let counters = Arc::new(Counters::default());
    let a = node_with(&store, &counters, "a", |b| {
        b.reservation_ttl(Duration::from_secs(5))
    });
    let id = a.reserve().await.unwrap();
    assert!(matches!(a.get(&id).await, Err(Error::NotReady { .. })));
    assert!(matches!(
        a.update(&id, |md| md.with("x", "y")).await,
        Err(Error::NotReady { .. })
    ));
    clock.advance(Duration::from_secs(6));
    assert!(matches!(a.get(&id).await, Err(Error::NotFound { .. })));
    assert!(
        store.version(&id).await.unwrap().is_none(),
        "abandoned placeholder vanished"
    );
    assert!(matches!(
        a.activate(&id, backends(&["github"])).await,
        Err(Error::NotFound { .. })
    ));

    // Terminate between reserve and activate wins; the build is closed.
    let id = a.reserve().await.unwrap();
    a.terminate(&id).await.unwrap();
    assert!(matches!(
        a.activate(&id, backends(&["github"])).await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.version(&id).await.unwrap().is_none());

    // Activated: store TTL from now on; a second activate is refused.
    let id = a.reserve().await.unwrap();
    let live = a.activate(&id, backends(&["github"])).await.unwrap();
    assert_eq!(live.version().get(), 2);
    assert!(matches!(
        a.activate(&id, backends(&["jira"])).await,
        Err(Error::AlreadyActive { .. })
    ));
    clock.advance(Duration::from_secs(60));
    assert!(
        store.version(&id).await.unwrap().is_some(),
        "active session lives by the store TTL"
    );

    // A placeholder bound to its caller from the start.
    let alice = Binding::identity("https://idp.example", "alice").unwrap();
    let bob = Binding::identity("https://idp.example", "bob").unwrap();
    let id = a.reserve_for(&alice).await.unwrap();
    assert!(matches!(
        a.terminate_for(&id, &bob).await,
        Err(Error::Forbidden { .. })
    ));
    let for_bob = keys::with_binding(&backends(&["github"]), &bob).unwrap();
    assert!(matches!(
        a.activate(&id, for_bob).await,
        Err(Error::Forbidden { .. })
    ));
    let for_alice = keys::with_binding(&backends(&["github"]), &alice).unwrap();
    a.activate(&id, for_alice).await.unwrap();
    assert!(a.terminate_for(&id, &alice).await.unwrap());
    a.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn capacity_idle_shutdown_close_outside_locks() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node_with(&store, &counters, "a", |b| {
        b.capacity(2)
            .idle_timeout(Duration::from_millis(40))
            .policy(ValidationPolicy::Push)
    });
    let s1 = a.create(backends(&["github"])).await.unwrap().id().clone();
    let s2 = a.create(backends(&["github"])).await.unwrap().id().clone();
    a.get(&s1).await.unwrap(); // s2 is now least recently used
    let s3 = a.create(backends(&["github"])).await.unwrap().id().clone();
    assert_eq!(a.cached_len(), 2);
    assert!(a.cached(&s2).is_none(), "LRU entry evicted");
    // Closes run on the closer task, not in the caller.
    eventually("capacity close", || counters.closes() == 1).await;
    assert!(
        store.version(&s2).await.unwrap().is_some(),
        "eviction is local only"
    );

    // Idle eviction closes; the next access restores.
    eventually("idle eviction", || a.cached_len() == 0).await;
    eventually("idle closes", || counters.closes() == 3).await;
    a.get(&s3).await.unwrap();
    assert_eq!(counters.builds(), 4);

    // Terminate closes; shutdown closes the rest and refuses later calls.
    a.get(&s1).await.unwrap();
    a.terminate(&s1).await.unwrap();
    a.shutdown().await;
    assert!(matches!(a.get(&s2).await, Err(Error::ShutDown)));
    assert_eq!(a.cached_len(), 0);
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_mismatch_refused_before_build_owner_unaffected() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let alice = Binding::identity("https://idp.example", "alice").unwrap();
    let bob = Binding::identity("https://idp.example", "bob").unwrap();
    let a = node(&store, &counters, "a", ValidationPolicy::EveryAccess);
    let md = keys::with_binding(&backends(&["github"]), &alice).unwrap();
    let id = a.create(md).await.unwrap().id().clone();

    let b = node(&store, &counters, "b", ValidationPolicy::EveryAccess);
    let before = counters.builds();
    assert!(matches!(
        b.get_for(&id, &bob).await,
        Err(Error::Forbidden { .. })
    ));
    assert_eq!(
        counters.builds(),
        before,
        "a wrong caller never makes a node build"
    );
    assert!(matches!(
        b.terminate_for(&id, &bob).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        a.get_for(&id, &Binding::Unauthenticated).await,
        Err(Error::Forbidden { .. })
    ));
    assert_eq!(b.get_for(&id, &alice).await.unwrap().id(), &id);
    assert!(
        matches!(b.get_for(&id, &bob).await, Err(Error::Forbidden { .. })),
        "cached hit checked too"
    );

    // Concurrent callers of different identities on a cold node.
    let c = node(&store, &counters, "c", ValidationPolicy::EveryAccess);
    let before = counters.builds();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (c, id) = (c.clone(), id.clone());
        let who = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        tasks.push(tokio::spawn(async move {
            (i % 2 == 0, c.get_for(&id, &who).await)
        }));
    }
    for t in tasks {
        match t.await.unwrap() {
            (true, r) => assert_eq!(r.unwrap().id(), &id),
            (false, r) => assert!(matches!(r, Err(Error::Forbidden { .. }))),
        }
    }
    assert_eq!(counters.builds() - before, 1);
    assert!(
        store.version(&id).await.unwrap().is_some(),
        "owner's session untouched"
    );
    assert!(c.terminate_for(&id, &alice).await.unwrap());
    for m in [a, b, c] {
        m.shutdown().await;
    }
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn transient_storage_errors_keep_the_cache() {
    let memory = memory();
    let test_store = TestStore::new(memory.clone());
    let fail = test_store.fail.clone();
    let store: Arc<dyn SessionStore> = Arc::new(test_store);
    let counters = Arc::new(Counters::default());
    let a = node(&store, &counters, "a", ValidationPolicy::EveryAccess);
    let live = a.create(backends(&["github"])).await.unwrap();
    let id = live.id().clone();

    fail.store(true, Ordering::SeqCst);
    let e = a.get(&id).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }));
    assert_eq!(e.http_status(), 503);
    assert!(matches!(
        a.update(&id, |md| md.with("x", "y")).await,
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        a.terminate(&id).await,
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        a.notify_backend_expired(&id, &workload("github")).await,
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(a.cached_len(), 1, "not evicted");
    assert_eq!(counters.closes(), 0, "not closed");
    fail.store(false, Ordering::SeqCst);

    let again = a.get(&id).await.unwrap();
    assert!(
        Arc::ptr_eq(&live, &again),
        "same live session after the outage"
    );
    assert!(
        memory.version(&id).await.unwrap().is_some(),
        "not terminated"
    );

    // A build failure is reported and leaves nothing behind.
    let b = node(&store, &counters, "b", ValidationPolicy::EveryAccess);
    b.factory().fail_builds.store(true, Ordering::SeqCst);
    let e = b.get(&id).await.unwrap_err();
    assert!(matches!(e, Error::Build { .. }));
    assert_eq!(e.http_status(), 502);
    b.factory().fail_builds.store(false, Ordering::SeqCst);
    b.get(&id).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn evict_backend_bulk() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, &counters, "a", ValidationPolicy::EveryAccess);
    let with_jira: Vec<SessionId> = {
        let mut v = Vec::new();
        for _ in 0..300 {
            v.push(
                a.create(backends(&["github", "jira"]))
                    .await
                    .unwrap()
                    .id()
                    .clone(),
            );
        }
        v
    };
    let without = a.create(backends(&["github"])).await.unwrap().id().clone();
    let report = a.evict_backend(&workload("jira")).await.unwrap();
    assert_eq!(
        (report.scanned, report.removed, report.failed),
        (301, 300, 0)
    );
    for id in with_jira.iter().take(5).chain([&without]) {
        let live = a.get(id).await.unwrap();
        assert_eq!(
            keys::backend_ids(live.metadata()).unwrap(),
            vec![workload("github")]
        );
    }
    a.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_sessions_slide_ttl_at_most_once_per_quarter() {
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(
        StoreConfig::new(Duration::from_millis(400)).unwrap(),
    ));
    let test_store = TestStore::new(memory.clone());
    let calls = test_store.calls.clone();
    let store: Arc<dyn SessionStore> = Arc::new(test_store);
    let counters = Arc::new(Counters::default());
    let a = node(&store, &counters, "a", ValidationPolicy::Push);
    let id = a.create(backends(&["github"])).await.unwrap().id().clone();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        a.get(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let touches = calls.touch.load(Ordering::SeqCst);
    println!("touches over 1.5 s with a 400 ms TTL: {touches}");
    assert!(
        memory.version(&id).await.unwrap().is_some(),
        "a used session never expires"
    );
    assert!(
        (4..=16).contains(&touches),
        "{touches} slides: expected about one per 100 ms"
    );
    a.shutdown().await;
    counters.assert_balanced();
}

#[tokio::test(flavor = "current_thread")]
async fn push_resyncs_after_a_gap_and_probes_when_the_stream_ends() {
    let store = memory();
    let counters = Arc::new(Counters::default());
    let a = node(&store, &counters, "a", ValidationPolicy::EveryAccess);
    let b = node(&store, &counters, "b", ValidationPolicy::Push);
    let id = a
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    b.get(&id).await.unwrap();
    tokio::task::yield_now().await;

    // Without yielding, change the session and flood the change stream past
    // its buffer: B's listener lags, loses the event and gets a resync.
    a.notify_backend_expired(&id, &workload("jira"))
        .await
        .unwrap();
    let other = a.create(backends(&["github"])).await.unwrap().id().clone();
    for i in 0..1100 {
        a.update(&other, |md| md.with("n", i.to_string()))
            .await
            .unwrap();
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // The resync makes B probe once: it sees the newer version.
    let fresh = b.get(&id).await.unwrap();
    assert_eq!(
        keys::backend_ids(fresh.metadata()).unwrap(),
        vec![workload("github")]
    );

    // A push node whose stream ends validates by probe from then on.
    let hub = Arc::new(std::sync::Mutex::new(Some(session_core::ChangeHub::new(
        16,
    ))));
    let mut silent = TestStore::new(store.clone());
    silent.hub = Some(hub.clone());
    let c = node(
        &(Arc::new(silent) as Arc<dyn SessionStore>),
        &counters,
        "c",
        ValidationPolicy::Push,
    );
    c.get(&id).await.unwrap();
    hub.lock().unwrap().take();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    a.notify_backend_expired(&id, &workload("github"))
        .await
        .unwrap();
    let seen = c.get(&id).await.unwrap();
    assert!(
        keys::backend_ids(seen.metadata()).unwrap().is_empty(),
        "probe saw the change"
    );
    a.terminate(&id).await.unwrap();
    assert!(matches!(c.get(&id).await, Err(Error::NotFound { .. })));
    for m in [a, b, c] {
        m.shutdown().await;
    }
    counters.assert_balanced();
}
