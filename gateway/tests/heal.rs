//! A backend's 404 for its session: notify, re-initialize, CAS, retry once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use session_core::{SessionId, SessionStore, WorkloadId, keys};
use session_manager::ValidationPolicy;

async fn math_sid(store: &dyn SessionStore, id: &SessionId) -> Option<String> {
    let rec = store.peek(id).await.unwrap()?;
    keys::backend_session(&rec.metadata, &WorkloadId::parse("math").unwrap()).map(str::to_owned)
}

async fn settle(backend: &session_gateway::demo::DemoBackend, want: usize) -> usize {
    // Losers delete their duplicate backend session in the background.
    for _ in 0..100 {
        if backend.open_sessions().await == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.open_sessions().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_backend_session_heals_and_both_nodes_use_the_new_one() {
    for policy in [ValidationPolicy::EveryAccess, ValidationPolicy::Push] {
        let c = Cluster::start(policy).await;
        let on_a = client(&c.a.url()).await;
        let on_b = resume(&c.b.url(), &on_a).await;
        let id = SessionId::parse(&on_a.session_id).unwrap();
        assert_eq!(
            text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
            "1"
        );
        assert_eq!(
            text_of(&call(&on_b, "math__counter", json!({})).await.unwrap()),
            "2"
        );
        let before = math_sid(&*c.store, &id).await.unwrap();

        assert_eq!(c.math.forget_sessions().await, 1);
        // The next call through B gets a 404 from the backend, heals and
        // retries once: the client sees a normal result (a fresh counter).
        let r = call(&on_b, "math__counter", json!({})).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
        assert_eq!(text_of(&r), "1");
        let after = math_sid(&*c.store, &id)
            .await
            .expect("new backend session recorded");
        assert_ne!(before, after);
        // Node A picks the new backend session up through the manager.
        assert_eq!(
            text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
            "2"
        );
        assert_eq!(math_sid(&*c.store, &id).await.unwrap(), after);
        assert_eq!(c.math.session_ids().await, vec![after]);
        // The other backend was not touched.
        assert_eq!(
            text_of(&call(&on_a, "text__counter", json!({})).await.unwrap()),
            "1"
        );
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_expiry_on_two_nodes_keeps_one_backend_session() {
    let c = Cluster::start(ValidationPolicy::EveryAccess).await;
    let on_a = client(&c.a.url()).await;
    let on_b = resume(&c.b.url(), &on_a).await;
    let id = SessionId::parse(&on_a.session_id).unwrap();
    for round in 0..5 {
        c.math.forget_sessions().await;
        tracing::info!(round, "forgot; calling on both nodes");
        let (ra, rb) = tokio::join!(
            call(&on_a, "math__add", json!({"a": round, "b": 1})),
            call(&on_b, "math__add", json!({"a": round, "b": 2})),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(text_of(&ra), (round + 1).to_string(), "round {round}");
        assert_eq!(text_of(&rb), (round + 2).to_string(), "round {round}");
        let winner = math_sid(&*c.store, &id).await.expect("one recorded");
        // One winner; a losing node deleted its duplicate and adopted the winner.
        assert_eq!(settle(&c.math, 1).await, 1, "round {round}");
        assert_eq!(c.math.session_ids().await, vec![winner.clone()]);
        tracing::info!(round, "settled; counters");
        // Both nodes now use the winner: the counter is shared.
        let x = text_of(&call(&on_a, "math__counter", json!({})).await.unwrap());
        let y = text_of(&call(&on_b, "math__counter", json!({})).await.unwrap());
        assert_eq!((x.as_str(), y.as_str()), ("1", "2"), "round {round}");
        assert_eq!(c.math.session_ids().await, vec![winner]);
    }
    c.stop().await;
}
