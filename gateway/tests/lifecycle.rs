//! How a client session ends on the gateway: expiry in storage deletes its
//! backend sessions once across nodes; a client's `DELETE` is not repeated
//! by the other nodes' sweeps; a node's idle eviction stops rmcp's worker
//! for the session there and deletes nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use session_core::{ManualClock, MemoryStore, SessionId, SessionStore, StoreConfig};
use session_manager::ValidationPolicy;

const TTL: Duration = Duration::from_secs(60);
const REAP: Duration = Duration::from_millis(50);

/// Waits until `f` holds (at most 10 s).
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !f().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn manual_store() -> (Arc<dyn SessionStore>, ManualClock) {
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(StoreConfig::new(TTL).unwrap(), clock.clone());
    (Arc::new(store), clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_session_deletes_its_backend_sessions_once_across_nodes() {
    let (store, clock) = manual_store();
    let c = Cluster::start_on(store, ValidationPolicy::EveryAccess, |cfg| {
        cfg.reap_interval = REAP;
    })
    .await;
    let on_a = client(&c.a.url()).await;
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "1"
    );
    // Node B uses the same backend sessions, so it remembers them too.
    let on_b = resume(&c.b.url(), &on_a).await;
    assert_eq!(
        text_of(&call(&on_b, "math__counter", json!({})).await.unwrap()),
        "2"
    );
    assert_eq!(c.a.state.mgr.factory().reaper().len(), 1);
    assert_eq!(c.b.state.mgr.factory().reaper().len(), 1);
    assert_eq!(
        (c.math.open_sessions().await, c.text.open_sessions().await),
        (1, 1)
    );
    // Several sweeps while the session lives delete nothing.
    tokio::time::sleep(REAP * 4).await;
    assert_eq!((c.math.deletes(), c.text.deletes()), (0, 0));

    // Nobody uses the session for longer than its TTL: storage drops it.
    clock.advance(TTL + Duration::from_secs(1));
    let sid = SessionId::parse(&on_a.session_id).unwrap();
    assert!(c.store.peek(&sid).await.unwrap().is_none(), "expired");

    until("both backends closed their sessions", async || {
        c.math.open_sessions().await == 0 && c.text.open_sessions().await == 0
    })
    .await;
    // Both nodes noticed; each backend session got exactly one DELETE.
    until("both nodes forgot the session", async || {
        c.a.state.mgr.factory().reaper().is_empty() && c.b.state.mgr.factory().reaper().is_empty()
    })
    .await;
    tokio::time::sleep(REAP * 4).await;
    assert_eq!((c.math.deletes(), c.text.deletes()), (1, 1));
    // Node-local state for it is gone too, and the id is refused.
    assert_eq!(c.a.state.sessions.local_len().await, 0);
    assert_eq!(c.b.state.sessions.local_len().await, 0);
    assert_eq!(
        raw_post(&c.b.url(), &on_a.session_id, LIST_TOOLS).await,
        404
    );
    drop((on_a, on_b));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_delete_is_not_repeated_by_the_other_nodes_sweeps() {
    let c = Cluster::start_on(
        Arc::new(MemoryStore::new(StoreConfig::default())),
        ValidationPolicy::Push,
        |cfg| cfg.reap_interval = REAP,
    )
    .await;
    let on_a = client(&c.a.url()).await;
    let on_b = resume(&c.b.url(), &on_a).await;
    call(&on_b, "math__add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    call(&on_b, "text__echo", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(c.b.state.mgr.factory().reaper().len(), 1);

    assert_eq!(raw_delete(&c.a.url(), &on_a.session_id).await, 200);
    assert_eq!(
        (c.math.open_sessions().await, c.text.open_sessions().await),
        (0, 0)
    );
    // Node B's sweep finds the session gone; A's claims stop it from
    // deleting the same backend sessions again.
    until("node B forgot the session", async || {
        c.b.state.mgr.factory().reaper().is_empty()
    })
    .await;
    tokio::time::sleep(REAP * 4).await;
    assert_eq!((c.math.deletes(), c.text.deletes()), (1, 1));
    drop((on_a, on_b));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_eviction_stops_rmcps_worker_and_deletes_nothing() {
    let c = Cluster::start_on(
        Arc::new(MemoryStore::new(StoreConfig::default())),
        ValidationPolicy::Push,
        |cfg| cfg.idle_timeout = Some(Duration::from_millis(300)),
    )
    .await;
    let on_a = client(&c.a.url()).await;
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "1"
    );
    assert_eq!(c.a.state.sessions.local_len().await, 1);
    assert_eq!(c.a.state.mgr.cached_len(), 1);

    until(
        "the idle session and its rmcp worker are gone",
        async || c.a.state.mgr.cached_len() == 0 && c.a.state.sessions.local_len().await == 0,
    )
    .await;
    // Only node-local: storage keeps the session, the backend its session.
    let sid = SessionId::parse(&on_a.session_id).unwrap();
    assert!(c.store.peek(&sid).await.unwrap().is_some());
    assert_eq!(c.math.open_sessions().await, 1);
    assert_eq!((c.math.deletes(), c.text.deletes()), (0, 0));

    // The next call restores it on this node, on the same backend session;
    // a call is answered without rmcp (the node's direct path), so rmcp's
    // worker comes back only with the next message rmcp handles.
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "2"
    );
    assert_eq!(c.a.state.mgr.cached_len(), 1);
    assert_eq!(c.a.state.sessions.local_len().await, 0);
    assert!(on_a.peer().list_all_tools().await.unwrap().len() >= 3);
    assert_eq!(c.a.state.sessions.local_len().await, 1);
    assert_eq!(c.math.open_sessions().await, 1);
    drop(on_a);
    c.stop().await;
}
