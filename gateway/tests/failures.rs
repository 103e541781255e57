//! Bad input and failures: each answered the way the protocol or HTTP says,
//! never a panic, and the session survives where it should.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::*;
use serde_json::json;
use session_core::{
    ChangeStream, Cursor, MemoryStore, Metadata, Page, Record, Result, SessionId, SessionStore,
    StoreConfig, Ttl, Update, Version,
};
use session_manager::ValidationPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_malformed_session_ids_are_404() {
    let c = Cluster::start(ValidationPolicy::EveryAccess).await;
    let too_long = "x".repeat(200);
    assert_eq!(raw_post(&c.a.url(), &too_long, LIST_TOOLS).await, 404);
    let unknown = SessionId::generate();
    assert_eq!(
        raw_post(&c.a.url(), unknown.as_str(), LIST_TOOLS).await,
        404
    );
    assert_eq!(raw_delete(&c.b.url(), unknown.as_str()).await, 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_and_oversized_bodies_are_refused_and_the_session_survives() {
    let c = Cluster::start_on(
        Arc::new(MemoryStore::new(StoreConfig::default())),
        ValidationPolicy::EveryAccess,
        |cfg| cfg.max_body_bytes = 2048,
    )
    .await;
    let on_a = client(&c.a.url()).await;
    let bad = raw_post(&c.a.url(), &on_a.session_id, "{not json").await;
    // rmcp answers unparsable JSON with 415 (its choice; no JSON-RPC id to answer).
    assert_eq!(bad, 415, "malformed JSON");
    let not_rpc = raw_post(&c.a.url(), &on_a.session_id, r#"{"hello":"world"}"#).await;
    assert!(not_rpc.is_client_error(), "not JSON-RPC: {not_rpc}");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"text__echo","arguments":{{"text":"{}"}}}}}}"#,
        "y".repeat(4096)
    );
    assert_eq!(raw_post(&c.b.url(), &on_a.session_id, &big).await, 413);
    let r = call(&on_a, "math__add", json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "2");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_with_no_backend_is_a_json_rpc_error_naming_it() {
    let c = Cluster::start(ValidationPolicy::Push).await;
    let on_a = client(&c.a.url()).await;
    for name in ["nope__add", "no_separator"] {
        let e = call(&on_a, name, json!({})).await.unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
    }
    assert_eq!(
        text_of(
            &call(&on_a, "math__add", json!({"a": 2, "b": 2}))
                .await
                .unwrap()
        ),
        "4"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_fails_only_its_tools_and_the_session_survives() {
    let c = Cluster::start(ValidationPolicy::EveryAccess).await;
    let on_a = client(&c.a.url()).await;
    let Cluster {
        math, text, a, b, ..
    } = c;
    text.stop().await;
    for node in [&on_a, &resume(&b.url(), &on_a).await] {
        let r = call(node, "text__echo", json!({"text": "hi"}))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert!(text_of(&r).contains("text"), "{}", text_of(&r));
        assert_eq!(
            text_of(
                &call(node, "math__add", json!({"a": 1, "b": 2}))
                    .await
                    .unwrap()
            ),
            "3"
        );
        let tools = node.peer().list_all_tools().await.unwrap();
        assert!(
            tools.iter().all(|t| t.name.starts_with("math__")),
            "only math's tools are listed"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    math.stop().await;
}

/// A store that can be switched off (every call: unavailable).
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(session_core::Error::unavailable(
                "store switched off by the test",
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for Flaky {
    async fn create_once(
        &self,
        id: &SessionId,
        md: &Metadata,
        ttl: Ttl,
        write: &session_core::WriteId,
    ) -> Result<Option<Version>> {
        self.check()?;
        self.inner.create_once(id, md, ttl, write).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.check()?;
        self.inner.load(id).await
    }
    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        self.check()?;
        self.inner.peek(id).await
    }
    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        self.check()?;
        self.inner.version(id).await
    }
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        md: &Metadata,
        write: &session_core::WriteId,
    ) -> Result<Update> {
        self.check()?;
        self.inner.update_once(id, expected, md, write).await
    }
    async fn touch(&self, id: &SessionId) -> Result<bool> {
        self.check()?;
        self.inner.touch(id).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.check()?;
        self.inner.delete(id).await
    }
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        self.check()?;
        self.inner.scan(cursor, limit).await
    }
    fn changes(&self) -> Option<ChangeStream> {
        self.inner.changes()
    }
    fn config(&self) -> &StoreConfig {
        self.inner.config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_is_503_with_retry_after_and_cached_sessions_keep_serving() {
    let flaky = Arc::new(Flaky {
        inner: MemoryStore::new(StoreConfig::default()),
        down: AtomicBool::new(false),
    });
    // Push: a cached session is served without a storage round trip.
    let c = Cluster::start_on(flaky.clone(), ValidationPolicy::Push, |_| {}).await;
    let on_a = client(&c.a.url()).await;
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "1"
    );
    flaky.down.store(true, Ordering::SeqCst);

    // Node B has not seen the session: it must ask storage, which is down.
    let res = reqwest::Client::new()
        .post(c.b.url())
        .header("mcp-session-id", &on_a.session_id)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(LIST_TOOLS)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    let ready = reqwest::get(format!("http://{}/readyz", c.b.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let healthy = reqwest::get(format!("http://{}/healthz", c.b.addr))
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);

    // Node A keeps serving its cached session.
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "2"
    );

    flaky.down.store(false, Ordering::SeqCst);
    let on_b = resume(&c.b.url(), &on_a).await;
    assert_eq!(
        text_of(&call(&on_b, "math__counter", json!({})).await.unwrap()),
        "3"
    );
    assert_eq!(
        reqwest::get(format!("http://{}/readyz", c.b.addr))
            .await
            .unwrap()
            .status(),
        200
    );
    c.stop().await;
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"failures","version":"0"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_during_initialize_is_503_with_retry_after_not_rmcps_500() {
    let flaky = Arc::new(Flaky {
        inner: MemoryStore::new(StoreConfig::default()),
        down: AtomicBool::new(false),
    });
    let c = Cluster::start_on(flaky.clone(), ValidationPolicy::Push, |_| {}).await;
    flaky.down.store(true, Ordering::SeqCst);

    // A new client's `initialize` (no session id): reserving the id in
    // storage fails inside rmcp's handler, which would answer 500.
    let res = reqwest::Client::new()
        .post(c.a.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    assert_eq!(
        c.a.state.sessions.local_len().await,
        0,
        "no rmcp worker left behind"
    );

    // After recovery a client gets a session as usual.
    flaky.down.store(false, Ordering::SeqCst);
    let on_a = client(&c.a.url()).await;
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "1"
    );
    assert_eq!(c.a.state.sessions.local_len().await, 1);
    c.stop().await;
}
