//! Lost replies: a write the store applied but whose reply never came back
//! (a reset connection, a timeout) is retried by the manager with the same
//! write id, so the caller sees exactly one outcome and storage holds the
//! write exactly once. Each test would fail if the manager retried with a
//! new id (or not at all): see the comment on each.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Counters, TestFactory, TestStore, backends, counter, workload};
use session_core::{MemoryStore, SessionStore, StoreConfig, Version};
use session_manager::{BackendExpiry, Error, SessionManager};

fn setup(
    lost: usize,
    interleave: usize,
) -> (
    Arc<MemoryStore>,
    Arc<TestStore>,
    SessionManager<TestFactory>,
    Arc<Counters>,
) {
    let memory = Arc::new(MemoryStore::new(StoreConfig::default()));
    let store = Arc::new(TestStore::new(memory.clone()));
    store.lose_replies.store(lost, Ordering::SeqCst);
    store.interleave.store(interleave, Ordering::SeqCst);
    let counters = Arc::new(Counters::default());
    let m = SessionManager::builder(store.clone(), TestFactory::new(&counters, "a"))
        .write_retries(2, Duration::from_millis(1))
        .build();
    (memory, store, m, counters)
}

/// An increment whose reply is lost is applied once, and `update` returns
/// its outcome. With a new id per try, the retry would conflict with the
/// write itself, re-read and increment again (counter 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_update_reply_is_applied_once() {
    let (memory, store, m, _) = setup(0, 0);
    let id = m.create(backends(&["github"])).await.unwrap().id().clone();
    store.lose_replies.store(1, Ordering::SeqCst);
    let live = m
        .update(&id, |md| md.with("counter", (counter(md) + 1).to_string()))
        .await
        .expect("a lost reply is retried, not reported");
    assert_eq!(
        store.lose_replies.load(Ordering::SeqCst),
        0,
        "no reply was lost"
    );
    assert_eq!(counter(&live.metadata), 1);
    let rec = memory.load(&id).await.unwrap().unwrap();
    assert_eq!(counter(&rec.metadata), 1, "the increment was applied twice");
    assert_eq!(rec.version, live.version);
    assert_eq!(
        store.calls.update.load(Ordering::SeqCst),
        3,
        "activate, the write, its retry"
    );
    m.shutdown().await;
}

/// The same after others wrote 3 times between the lost reply and the
/// retry: the retry still reports the write's own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_update_reply_then_other_writers_is_applied_once() {
    let (memory, store, m, _) = setup(0, 3);
    let id = m.create(backends(&["github"])).await.unwrap().id().clone();
    store.lose_replies.store(1, Ordering::SeqCst);
    let live = m
        .update(&id, |md| md.with("counter", (counter(md) + 1).to_string()))
        .await
        .unwrap();
    // Created at 1, activated at 2, the increment at 3, others at 4..=6.
    assert_eq!(live.version, Version::new(3));
    let rec = memory.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.version, Version::new(6));
    assert_eq!(counter(&rec.metadata), 1, "the increment was applied twice");
    assert_eq!(rec.metadata.get("other"), Some("2"));
    m.shutdown().await;
}

/// A backend removal whose reply is lost reports `Removed`, not
/// `NotPresent` (what a re-read after the self-conflict would say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notify_backend_expired_reply_reports_removed() {
    let (memory, store, m, _) = setup(0, 0);
    let id = m
        .create(backends(&["github", "jira"]))
        .await
        .unwrap()
        .id()
        .clone();
    store.lose_replies.store(1, Ordering::SeqCst);
    let out = m
        .notify_backend_expired(&id, &workload("github"))
        .await
        .unwrap();
    assert!(matches!(out, BackendExpiry::Removed(_)), "{out:?}");
    let rec = memory.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.version, Version::new(3), "written once");
    assert_eq!(rec.metadata.get("vmcp.backend.ids"), Some("jira"));
    m.shutdown().await;
}

/// An activation whose reply is lost succeeds (a retry with a new id would
/// conflict with it and report `AlreadyActive`); a reservation whose reply
/// is lost keeps its id (a new-id retry would be told "taken" and reserve
/// a second, orphaned placeholder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reserve_and_activate_replies_are_applied_once() {
    let (memory, store, m, counters) = setup(1, 0);
    let id = m.reserve().await.expect("reserve");
    assert_eq!(memory.len(), 1, "a second placeholder was reserved");
    assert_eq!(store.lose_replies.load(Ordering::SeqCst), 0);
    assert_eq!(store.calls.create.load(Ordering::SeqCst), 2);
    store.lose_replies.store(1, Ordering::SeqCst);
    let live = m
        .activate(&id, backends(&["github"]))
        .await
        .expect("a lost activation reply is retried, not reported");
    assert_eq!(live.version(), Version::new(2));
    assert_eq!(
        memory.load(&id).await.unwrap().unwrap().version,
        Version::new(2)
    );
    assert_eq!(store.lose_replies.load(Ordering::SeqCst), 0);
    assert_eq!(counters.builds(), 1);
    m.shutdown().await;
    counters.assert_balanced();
}

/// Retries are bounded: an outage is reported after 1 + `write_retries`
/// tries, as the typed transient error it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lasting_outage_is_reported_after_bounded_retries() {
    let (_memory, store, m, _) = setup(0, 0);
    let id = m.create(backends(&["github"])).await.unwrap().id().clone();
    let before = store.calls.update.load(Ordering::SeqCst);
    store.lose_replies.store(usize::MAX, Ordering::SeqCst);
    let err = m
        .update(&id, |md| md.with("counter", "9"))
        .await
        .expect_err("every reply lost");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(store.calls.update.load(Ordering::SeqCst) - before, 3);
    // Applied once all the same (the first try), never three times.
    let rec = store.inner.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.version, Version::new(3));
    m.shutdown().await;
}
