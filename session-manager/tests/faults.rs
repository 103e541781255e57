//! The manager over a store whose network fails, through
//! `session_testkit::FaultProxy`: a push node's cache resyncs after its
//! change stream stalled, and sessions created and updated during a window
//! of mixed faults lose no acknowledged write and apply none twice.
#![cfg(any(feature = "redis", feature = "postgres"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Counters, Isolated, TestFactory, backends, counter};
use session_core::{SessionId, SessionStore};
use session_manager::{Error, SessionManager, ValidationPolicy};
use session_testkit::{FaultProxy, url};

/// Catches a hang or a cache that never resyncs, nothing slower.
const BOUND: Duration = Duration::from_secs(20);

fn node(
    store: Arc<dyn SessionStore>,
    counters: &Arc<Counters>,
    name: &str,
) -> SessionManager<TestFactory> {
    SessionManager::builder(store, TestFactory::new(counters, name))
        .policy(ValidationPolicy::Push)
        // Far beyond the test: only the stream's own gap signal can
        // refresh the cache in time.
        .resync_interval(Duration::from_secs(600))
        .op_timeout(Duration::from_millis(500))
        .cas_backoff(Duration::from_millis(1))
        .build()
}

async fn proxied(iso: &Isolated) -> (FaultProxy, Arc<dyn SessionStore>) {
    let proxy = FaultProxy::start(url::upstream_of(iso.url()).unwrap())
        .await
        .unwrap();
    let mut through = url::through(iso.url(), proxy.addr()).unwrap();
    if through.starts_with("postgres") {
        // Lost replies are matched on request bytes: no TLS.
        through = url::plaintext(&through);
    }
    let store = iso.faulty_handle(&through).await;
    (proxy, store)
}

fn assert_transient(what: &str, e: &Error) {
    assert!(
        matches!(e, Error::Unavailable { .. }),
        "{what}: a network fault gave {e:?}"
    );
}

/// Node A's change stream stalls while node B updates a session A has
/// cached: once the stall ends, A serves the new version (its stream
/// reported the gap and A revalidated), within a bound that only catches
/// a cache that would wait for the periodic resync.
async fn cache_resyncs_after_stream_stall(iso: &Isolated, stall: Duration) {
    let counters = Arc::new(Counters::default());
    let (proxy, store) = proxied(iso).await;
    let a = node(store, &counters, "a");
    let b = node(iso.handle().await, &counters, "b");
    let id = b.create(backends(&["github"])).await.unwrap().id().clone();
    let cached = a.get(&id).await.unwrap();
    assert_eq!(counter(cached.metadata()), 0);
    let deadline = Instant::now() + BOUND;
    while !a.stream_live() {
        assert!(
            Instant::now() < deadline,
            "A's change stream never went live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.pause();
    let written = b.update(&id, |md| md.with("counter", "1")).await.unwrap();
    tokio::time::sleep(stall).await;
    // Thrown away with the held bytes: a notification held by the pause and
    // delivered on resume would refresh A without the gap signal.
    proxy.reset_all();
    proxy.resume();
    let resumed = Instant::now();
    loop {
        assert!(
            resumed.elapsed() < BOUND,
            "A still serves the version from before the stall"
        );
        match a.get(&id).await {
            Ok(live) if live.version() == written.version => break,
            Ok(live) => assert!(live.version() < written.version),
            Err(e) => assert_transient("get after the stall", &e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "cache fresh {:?} after a {stall:?} stall of its change stream",
        resumed.elapsed()
    );
    b.terminate(&id).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

/// One writer per session: the count it adds is the number of `update`
/// calls applied. Every acknowledged count must still be there at the
/// end, and no call may apply twice (an acknowledged count is at most the
/// previous one plus one plus the calls that failed since).
async fn writer(
    m: Arc<SessionManager<TestFactory>>,
    id: SessionId,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let (mut acked, mut failed_since, mut errors) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        match m
            .update(&id, |md| md.with("counter", (counter(md) + 1).to_string()))
            .await
        {
            Ok(s) => {
                let now = counter(&s.metadata);
                assert!(now > acked, "update acknowledged without applying");
                assert!(
                    now <= acked + 1 + failed_since,
                    "an update was applied twice: {acked} -> {now} with {failed_since} failures"
                );
                acked = now;
                failed_since = 0;
            }
            Err(e) => {
                assert_transient("update", &e);
                failed_since += 1;
                errors += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    (acked, errors)
}

/// Creates and updates through a faulty network: latency, a blackhole
/// longer than the operation timeout, connection resets, lost replies and
/// refused connections, one after the other. After the faults, every
/// acknowledged create and update is in storage.
async fn no_acknowledged_write_lost(iso: &Isolated) {
    let counters = Arc::new(Counters::default());
    let (proxy, store) = proxied(iso).await;
    let m = Arc::new(node(store, &counters, "a"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..3 {
        let id = m.create(backends(&["github"])).await.unwrap().id().clone();
        ids.push(id.clone());
        writers.push(tokio::spawn(writer(m.clone(), id, stop.clone())));
    }
    let creator = {
        let (m, stop) = (m.clone(), stop.clone());
        tokio::spawn(async move {
            let mut created = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match m.create(backends(&["jira"])).await {
                    Ok(live) => created.push(live.id().clone()),
                    Err(e) => {
                        assert_transient("create", &e);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            created
        })
    };
    let phase = Duration::from_millis(400);
    tokio::time::sleep(phase).await;
    proxy.set_latency(Duration::from_millis(20));
    tokio::time::sleep(phase).await;
    proxy.set_latency(Duration::ZERO);
    proxy.pause();
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.resume();
    for _ in 0..4 {
        proxy.reset_all();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The metadata key appears only in update requests (not in a peek, a
    // create or a notifier payload), so each dropped reply is a write's.
    proxy.drop_replies_to(ids.len() as u64, "counter");
    // Until the writers sent them (bounded: a writer backing off after the
    // resets may take a while).
    let armed = Instant::now();
    while proxy.replies_to_drop() > 0 && armed.elapsed() < Duration::from_secs(3 * ids.len() as u64)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.refuse().await;
    proxy.reset_all();
    tokio::time::sleep(phase).await;
    proxy.heal().unwrap();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::SeqCst);

    let direct = iso.handle().await;
    let mut errors = 0;
    for (id, handle) in ids.iter().zip(writers) {
        let (acked, errs) = tokio::time::timeout(BOUND, handle).await.unwrap().unwrap();
        errors += errs;
        let stored = direct
            .load(id)
            .await
            .unwrap()
            .expect("the session survives");
        assert!(
            counter(&stored.metadata) >= acked,
            "an acknowledged update was lost: {acked} acknowledged, {stored:?} stored"
        );
        assert!(acked > 0, "no update was acknowledged");
    }
    let created = tokio::time::timeout(BOUND, creator).await.unwrap().unwrap();
    assert!(!created.is_empty(), "no session was created");
    for id in &created {
        assert!(
            direct.version(id).await.unwrap().is_some(),
            "an acknowledged create was lost"
        );
    }
    let s = proxy.stats();
    assert!(
        s.resets > 0 && s.replies_dropped > 0,
        "the faults did not fire: {s:?}"
    );
    eprintln!(
        "faulty window: {} sessions created, {errors} update errors, {} replies dropped",
        created.len(),
        s.replies_dropped
    );
    m.shutdown().await;
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    fn url() -> String {
        common::url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cache_resyncs_after_stream_stall() {
        let iso = Isolated::new(&url());
        // Longer than the subscriber's ping and its timeout.
        super::cache_resyncs_after_stream_stall(&iso, Duration::from_secs(2)).await;
        iso.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_acknowledged_write_lost() {
        let iso = Isolated::new(&url());
        super::no_acknowledged_write_lost(&iso).await;
        iso.cleanup().await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    fn url() -> String {
        common::url(
            "SESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cache_resyncs_after_stream_stall() {
        let iso = Isolated::new(&url());
        // Longer than the 3 s silence after which a listener counts a gap.
        super::cache_resyncs_after_stream_stall(&iso, Duration::from_secs(4)).await;
        iso.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_acknowledged_write_lost() {
        let iso = Isolated::new(&url());
        super::no_acknowledged_write_lost(&iso).await;
        iso.cleanup().await;
    }
}
