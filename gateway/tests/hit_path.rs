//! Storage round trips on the hit path: with the every-access policy a tool
//! call on a session this node serves reads storage once (the middleware's
//! validation), not once more when rmcp asks whether the session exists.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::json;
use session_core::{
    ChangeStream, Cursor, MemoryStore, Metadata, Page, Record, Result, SessionId, SessionStore,
    StoreConfig, Ttl, Update, Version,
};
use session_gateway::node;
use session_manager::ValidationPolicy;

/// A memory store that counts reads (`load`, `peek`, `version`).
struct Counting {
    inner: MemoryStore,
    reads: AtomicUsize,
}

impl Counting {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SessionStore for Counting {
    async fn create_once(
        &self,
        id: &SessionId,
        md: &Metadata,
        ttl: Ttl,
        write: &session_core::WriteId,
    ) -> Result<Option<Version>> {
        self.inner.create_once(id, md, ttl, write).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.read();
        self.inner.load(id).await
    }
    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        self.read();
        self.inner.peek(id).await
    }
    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        self.read();
        self.inner.version(id).await
    }
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        md: &Metadata,
        write: &session_core::WriteId,
    ) -> Result<Update> {
        self.inner.update_once(id, expected, md, write).await
    }
    async fn touch(&self, id: &SessionId) -> Result<bool> {
        self.inner.touch(id).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.inner.delete(id).await
    }
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
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
async fn an_every_access_tool_call_reads_storage_once() {
    logs();
    let store = Arc::new(Counting {
        inner: MemoryStore::new(StoreConfig::default()),
        reads: AtomicUsize::new(0),
    });
    let math = session_gateway::demo::DemoBackend::start("math", any())
        .await
        .unwrap();
    let text = session_gateway::demo::DemoBackend::start("text", any())
        .await
        .unwrap();
    let mut cfg = config(&math, &text, ValidationPolicy::EveryAccess);
    cfg.reap_interval = Duration::from_secs(3600); // no sweep reads meanwhile
    let n = node::start(cfg, store.clone(), None).await.unwrap();
    let c = client(&n.url()).await;
    call(&c, "math__add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();

    store.reads.store(0, Ordering::SeqCst);
    for _ in 0..10 {
        call(&c, "math__add", json!({"a": 1, "b": 2}))
            .await
            .unwrap();
    }
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        10,
        "one storage read per call"
    );
    drop(c);
    n.shutdown().await;
    math.stop().await;
    text.stop().await;
}
