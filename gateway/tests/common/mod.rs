//! Shared fixtures: demo backends and gateway nodes on loopback ports.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use session_core::{MemoryStore, SessionStore, StoreConfig};
use session_gateway::backend::{self, Conn};
use session_gateway::config::Config;
use session_gateway::demo::DemoBackend;
use session_gateway::node::{self, RunningNode};
use session_manager::ValidationPolicy;

pub const ANY: &str = "127.0.0.1:0";

pub fn any() -> SocketAddr {
    ANY.parse().unwrap()
}

pub struct Cluster {
    pub math: DemoBackend,
    pub text: DemoBackend,
    pub a: RunningNode,
    pub b: RunningNode,
    pub store: Arc<dyn SessionStore>,
}

pub fn config(math: &DemoBackend, text: &DemoBackend, policy: ValidationPolicy) -> Config {
    let mut cfg = Config {
        listen: any(),
        policy: Some(policy),
        ..Config::default()
    };
    cfg.add_backend("math", &math.url()).unwrap();
    cfg.add_backend("text", &text.url()).unwrap();
    cfg
}

impl Cluster {
    pub async fn start(policy: ValidationPolicy) -> Self {
        logs();
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
        Self::start_on(store, policy, |_| {}).await
    }

    pub async fn start_on(
        store: Arc<dyn SessionStore>,
        policy: ValidationPolicy,
        tweak: impl Fn(&mut Config),
    ) -> Self {
        Self::start_on2(store.clone(), store, policy, tweak).await
    }

    /// Two nodes with their own store handles (as separate pods have).
    pub async fn start_on2(
        store: Arc<dyn SessionStore>,
        store_b: Arc<dyn SessionStore>,
        policy: ValidationPolicy,
        tweak: impl Fn(&mut Config),
    ) -> Self {
        logs();
        let math = DemoBackend::start("math", any()).await.unwrap();
        let text = DemoBackend::start("text", any()).await.unwrap();
        let mut cfg = config(&math, &text, policy);
        tweak(&mut cfg);
        let a = node::start(cfg.clone(), store.clone(), None).await.unwrap();
        let b = node::start(cfg, store_b, None).await.unwrap();
        Self {
            math,
            text,
            a,
            b,
            store,
        }
    }

    pub async fn stop(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
        self.math.stop().await;
        self.text.stop().await;
    }
}

/// An rmcp client that initializes on `url` (its session id and the
/// gateway's initialize answer let other clients resume it on another node).
pub async fn client(url: &str) -> Conn {
    backend::connect_fresh(&reqwest::Client::new(), url)
        .await
        .expect("initialize through the gateway")
}

/// An rmcp client on `url` resuming the session `like` opened elsewhere.
pub async fn resume(url: &str, like: &Conn) -> Conn {
    backend::resume(
        &reqwest::Client::new(),
        url,
        &like.session_id,
        &like.init_json,
    )
    .await
    .unwrap()
}

pub async fn call(
    c: &Conn,
    tool: &str,
    args: serde_json::Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    if let serde_json::Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    c.peer().call_tool(p).await
}

pub fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<String>()
}

/// Raw POST of a JSON-RPC body with a session id; returns the status.
pub async fn raw_post(url: &str, sid: &str, body: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(url)
        .header("mcp-session-id", sid)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

pub async fn raw_delete(url: &str, sid: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .delete(url)
        .header("mcp-session-id", sid)
        .send()
        .await
        .unwrap()
        .status()
}

pub const LIST_TOOLS: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;

/// `RUST_LOG=session_gateway=debug cargo test …` shows the gateway's logs.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
