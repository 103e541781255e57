//! The gateway's `tracing` output, every level and every span field of
//! every crate (axum, reqwest, rmcp included), never holds a stored
//! metadata value: not a backend session id (before and after a backend
//! forgets its sessions and the gateway heals), not what a backend
//! answered to `initialize`. One test in its own binary: it installs the
//! process-wide subscriber, so the nodes' worker threads are captured.
//!
//! One exception, checked to stay one: rmcp itself logs session ids at
//! `INFO` (its HTTP client's "delete session success", and the demo
//! backends' own server, which runs in this process). The binary's default
//! filter is `rmcp=warn`, so they show only if `RUST_LOG` enables rmcp's
//! info logs.

mod common;

use common::*;
use serde_json::json;
use session_core::testing::logs::CapturedLogs;
use session_core::{SessionId, WorkloadId, keys};
use session_manager::ValidationPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_session_logs_no_stored_value() {
    let logs = CapturedLogs::new();
    tracing::subscriber::set_global_default(logs.clone()).expect("the first subscriber");
    let c = Cluster::start(ValidationPolicy::EveryAccess).await;
    let on_a = client(&c.a.url()).await;
    let sid = SessionId::parse(&on_a.session_id).unwrap();
    let mut values = Vec::new();
    let mut collect = async || {
        let rec = c.store.peek(&sid).await.unwrap().expect("stored");
        let math = WorkloadId::parse("math").unwrap();
        assert!(keys::backend_session(&rec.metadata, &math).is_some());
        // Every value long enough not to occur by chance (the backend list
        // `math,text` is configuration, not a secret).
        for (key, value) in rec.metadata.iter() {
            if key != keys::BACKEND_IDS && value.len() >= 8 {
                values.push((key.to_owned(), value.to_owned()));
            }
        }
    };
    collect().await;
    call(&on_a, "math__counter", json!({})).await.unwrap();
    let on_b = resume(&c.b.url(), &on_a).await;
    call(&on_b, "math__add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    // The backend forgets its sessions: node B heals with a new one.
    assert_eq!(c.math.forget_sessions().await, 1);
    call(&on_b, "math__counter", json!({})).await.unwrap();
    call(&on_a, "math__counter", json!({})).await.unwrap();
    collect().await;
    assert_eq!(raw_delete(&c.a.url(), &on_a.session_id).await, 200);
    assert_eq!(
        raw_post(&c.b.url(), &on_a.session_id, LIST_TOOLS).await,
        404
    );
    drop((on_a, on_b));
    c.stop().await;

    let logged = logs.text();
    assert!(
        logged.contains("session_manager.get") && logged.contains(sid.as_str()),
        "the capture missed the gateway's spans"
    );
    let backend_sessions = values
        .iter()
        .filter(|(k, _)| k.starts_with(keys::BACKEND_SESSION_PREFIX))
        .count();
    assert!(
        backend_sessions >= 3,
        "two math sessions and a text one: {values:?}"
    );
    // rmcp below WARN: hidden by the binary's default `rmcp=warn`.
    let rmcp_info = |line: &str| {
        let mut words = line.split(' ');
        let (kind, level, target) = (words.next(), words.next(), words.next());
        matches!(kind, Some("span" | "event"))
            && matches!(level, Some("INFO" | "DEBUG" | "TRACE"))
            && target.is_some_and(|t| t == "rmcp" || t.starts_with("rmcp::"))
    };
    for (key, value) in &values {
        let lines: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains(value.as_str()) && !rmcp_info(l))
            .collect();
        assert!(
            lines.is_empty(),
            "the value of {key:?} was logged:\n{}",
            lines.join("\n")
        );
    }
}
