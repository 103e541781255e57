//! Demo backends: small rmcp servers on loopback with `add`, `echo` and a
//! `counter` whose value lives in the backend session (so continuity
//! across gateway nodes is visible), plus a test-only way to make a
//! backend forget its sessions (`POST /admin/forget`) and to count them
//! (`GET /admin/sessions` lists the open session ids).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use session_core::{SessionId, SessionStore, WorkloadId, keys};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::node::{self, RunningNode};

/// One demo backend session's server.
#[derive(Clone)]
pub struct DemoServer {
    name: &'static str,
    count: Arc<AtomicU64>,
    #[allow(dead_code, reason = "the tool_handler macro reads it")]
    tool_router: ToolRouter<Self>,
}

/// `add`'s arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// First addend.
    pub a: i64,
    /// Second addend.
    pub b: i64,
}

/// `echo`'s arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to echo.
    pub text: String,
}

#[tool_router]
impl DemoServer {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            count: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    /// Adds two integers.
    #[tool(description = "Add two integers")]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    /// Increments and returns this backend session's counter.
    #[tool(description = "Increment this backend session's counter and return it")]
    async fn counter(&self) -> String {
        (self.count.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    /// Echoes its input, prefixed with the backend's name.
    #[tool(description = "Echo the text back")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        format!("{}: {text}", self.name)
    }
}

#[tool_handler]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A running demo backend.
pub struct DemoBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    sessions: Arc<LocalSessionManager>,
    deletes: Arc<AtomicU64>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl DemoBackend {
    /// Starts a demo backend named `name` on `addr` (port 0: any free port).
    pub async fn start(name: &'static str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sessions = Arc::new(LocalSessionManager::default());
        let cancel = CancellationToken::new();
        let svc = StreamableHttpService::new(
            move || Ok(DemoServer::new(name)),
            sessions.clone(),
            StreamableHttpServerConfig::default().with_cancellation_token(cancel.child_token()),
        );
        let deletes = Arc::new(AtomicU64::new(0));
        let counted = deletes.clone();
        let for_delete = svc.clone();
        // Counts `DELETE /mcp` (tests check each backend session gets one)
        // on the DELETE route only: POSTs reach rmcp with no extra layer.
        let mcp = axum::routing::delete(move |req: axum::extract::Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            let svc = for_delete.clone();
            async move { svc.handle(req).await }
        })
        .fallback_service(svc);
        let app = Router::new()
            .route("/admin/forget", post(forget))
            .route("/admin/sessions", get(count))
            .with_state(sessions.clone())
            .route("/mcp", mcp);
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            sessions,
            deletes,
            cancel,
            task,
        })
    }

    /// Its `/mcp` URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Open backend sessions.
    pub async fn open_sessions(&self) -> usize {
        self.sessions.sessions.read().await.len()
    }

    /// The ids of the open backend sessions.
    pub async fn session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sessions
            .sessions
            .read()
            .await
            .keys()
            .map(ToString::to_string)
            .collect();
        ids.sort();
        ids
    }

    /// `DELETE` requests received on `/mcp` so far.
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::SeqCst)
    }

    /// Forgets every session (the next request for one gets 404). Returns how many.
    pub async fn forget_sessions(&self) -> usize {
        forget_all(&self.sessions).await
    }

    /// Stops it.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn forget_all(sessions: &LocalSessionManager) -> usize {
    let drained: Vec<_> = sessions.sessions.write().await.drain().collect();
    let n = drained.len();
    for (_, handle) in drained {
        let _ = handle.close().await;
    }
    n
}

async fn forget(State(s): State<Arc<LocalSessionManager>>) -> String {
    format!("{}\n", forget_all(&s).await)
}

/// The open session ids, one per line.
async fn count(State(s): State<Arc<LocalSessionManager>>) -> String {
    let mut ids: Vec<String> = s
        .sessions
        .read()
        .await
        .keys()
        .map(|k| format!("{k}\n"))
        .collect();
    ids.sort();
    ids.concat()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

async fn start_node(
    mut cfg: Config,
    port: u16,
    store: Arc<dyn SessionStore>,
    recorder: Option<crate::metrics::Render>,
) -> Result<RunningNode, BoxError> {
    cfg.listen.set_port(port);
    match node::start(cfg.clone(), store.clone(), recorder.clone()).await {
        Ok(n) => Ok(n),
        Err(e) if port != 0 => {
            tracing::warn!(port, error = %e, "port busy, using any free port");
            cfg.listen.set_port(0);
            Ok(node::start(cfg, store, recorder).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `--demo`: two demo backends and two gateway nodes over one store
/// (`cfg.store`, memory by default); with `tour`, a scripted session
/// through both nodes that exits 0 when everything held.
pub async fn run(
    cfg: Config,
    tour: bool,
    recorder: Option<crate::metrics::Render>,
) -> Result<(), BoxError> {
    let store = crate::config::connect_store(&cfg.store, cfg.store_prefix.as_deref()).await?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let math = DemoBackend::start("math", loopback).await?;
    let text = DemoBackend::start("text", loopback).await?;
    let mut base = cfg.clone();
    base.backends.clear();
    base.add_backend("math", &math.url())?;
    base.add_backend("text", &text.url())?;
    let (pa, pb) = if tour {
        (0, 0)
    } else {
        (cfg.listen.port(), cfg.listen.port().saturating_add(1))
    };
    let a = start_node(base.clone(), pa, store.clone(), recorder.clone()).await?;
    let b = start_node(base, pb, store.clone(), recorder).await?;
    let result = if tour {
        run_tour(&a, &b, &math, &store).await
    } else {
        print_banner(&a, &b, &math, &text, &cfg.store);
        shutdown_signal().await;
        println!("\nshutting down: closing every live session on both nodes");
        Ok(())
    };
    a.shutdown().await;
    b.shutdown().await;
    math.stop().await;
    text.stop().await;
    result
}

fn print_banner(
    a: &RunningNode,
    b: &RunningNode,
    math: &DemoBackend,
    text: &DemoBackend,
    store: &str,
) {
    let (ua, ub) = (a.url(), b.url());
    println!(
        "\
session-gateway demo: two gateway nodes over one session store ({store})

  node A   {ua}
  node B   {ub}
  backends math  {}   (tools: add, counter, echo)
           text  {}   (tools: add, counter, echo)
  ops      http://{}/metrics  /healthz  /readyz

Tools are exposed as BACKEND__TOOL. Try it: initialize on node A, call through node B
(the counter lives in the backend session, so it continues across nodes):

H='-H content-type:application/json -H accept:application/json,text/event-stream'
SID=$(curl -s -D - -o /dev/null $H {ua} -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"curl\",\"version\":\"0\"}}}}}}' | tr -d '\\r' | awk 'tolower($1)==\"mcp-session-id:\"{{print $2}}')
curl -s $H -H \"mcp-session-id: $SID\" {ua} -d '{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}'
curl -s $H -H \"mcp-session-id: $SID\" {ub} -d '{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"math__counter\",\"arguments\":{{}}}}}}'
curl -s $H -H \"mcp-session-id: $SID\" {ua} -d '{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{{\"name\":\"math__counter\",\"arguments\":{{}}}}}}'
curl -s -X POST http://{}/admin/forget      # the math backend forgets its sessions; the next call heals
curl -s -X DELETE -H \"mcp-session-id: $SID\" {ub} -w '%{{http_code}}\\n'; curl -s -o /dev/null -w '%{{http_code}}\\n' $H -H \"mcp-session-id: $SID\" {ua} -d '{{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\"}}'

Or let a script do all of that: cargo run -p session-gateway -- --demo --tour
Ctrl-C stops both nodes (every live session is closed).",
        math.url(),
        text.url(),
        a.addr,
        math.addr,
    );
}

fn short(s: &str) -> &str {
    s.get(..8).unwrap_or(s)
}

async fn describe(store: &Arc<dyn SessionStore>, id: &SessionId) -> String {
    match store.peek(id).await {
        Ok(Some(rec)) => {
            let mut parts = vec![format!("version {}", rec.version.get())];
            for w in keys::backend_ids(&rec.metadata).unwrap_or_default() {
                let s = keys::backend_session(&rec.metadata, &w).unwrap_or("-");
                parts.push(format!("{w}={}…", short(s)));
            }
            format!("storage: {}", parts.join(", "))
        }
        Ok(None) => "storage: no record".to_owned(),
        Err(e) => format!("storage: error {e}"),
    }
}

async fn tool(
    c: &crate::backend::Conn,
    name: &str,
    args: serde_json::Value,
) -> Result<String, BoxError> {
    let mut p = rmcp::model::CallToolRequestParams::new(name.to_owned());
    if let serde_json::Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    let r = c.peer().call_tool(p).await?;
    let text: String = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    if r.is_error == Some(true) {
        return Err(format!("{name} failed: {text}").into());
    }
    Ok(text)
}

fn check(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("tour check failed: {what}").into())
    }
}

async fn run_tour(
    a: &RunningNode,
    b: &RunningNode,
    math: &DemoBackend,
    store: &Arc<dyn SessionStore>,
) -> Result<(), BoxError> {
    use crate::backend;
    let http = reqwest::Client::new();
    let w = WorkloadId::parse("math")?;
    println!("tour: one MCP session (rmcp client) through two gateway nodes over one store\n");

    let on_a = backend::connect_fresh(&http, &a.url()).await?;
    let id = SessionId::parse(&on_a.session_id)?;
    println!(
        "1. initialize on node A -> Mcp-Session-Id {}…",
        short(id.as_str())
    );
    println!("   {}", describe(store, &id).await);
    let first_math =
        keys::backend_session(&store.peek(&id).await?.ok_or("no record")?.metadata, &w)
            .map(str::to_owned);

    let on_b = backend::resume(&http, &b.url(), &on_a.session_id, &on_a.init_json).await?;
    let tools = on_b.peer().list_all_tools().await?;
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    println!(
        "2. tools/list on node B (same session id) -> {}",
        names.join(", ")
    );
    let sum = tool(&on_b, "math__add", serde_json::json!({"a": 2, "b": 40})).await?;
    println!("   math__add(2, 40) on node B -> {sum}");
    check(sum == "42", "2 + 40")?;
    let c1 = tool(&on_a, "math__counter", serde_json::json!({})).await?;
    let c2 = tool(&on_b, "math__counter", serde_json::json!({})).await?;
    println!("3. math__counter on A -> {c1}, on B -> {c2} (one backend session behind both nodes)");
    check(c1 == "1" && c2 == "2", "counter continues across nodes")?;

    let forgot = math.forget_sessions().await;
    println!("4. the math backend forgets its sessions ({forgot} dropped); its next answer is 404");
    let c3 = tool(&on_b, "math__counter", serde_json::json!({})).await?;
    let healed = keys::backend_session(&store.peek(&id).await?.ok_or("no record")?.metadata, &w)
        .map(str::to_owned);
    println!(
        "   math__counter on B -> {c3}: node B expired the backend session, re-initialized math and recorded the new backend session by CAS"
    );
    println!("   {}", describe(store, &id).await);
    check(
        c3 == "1" && healed.is_some() && healed != first_math,
        "healed with a new backend session",
    )?;
    let c4 = tool(&on_a, "math__counter", serde_json::json!({})).await?;
    println!(
        "   math__counter on A -> {c4}: node A picked the new backend session up through the manager"
    );
    check(c4 == "2", "node A uses the healed backend session")?;
    check(
        math.open_sessions().await == 1,
        "exactly one math backend session",
    )?;

    let status = http
        .delete(b.url())
        .header("mcp-session-id", id.as_str())
        .send()
        .await?
        .status();
    println!("5. DELETE on node B -> {status}");
    println!("   {}", describe(store, &id).await);
    let after = tool(&on_a, "math__counter", serde_json::json!({})).await;
    let raw = http
        .post(a.url())
        .header("mcp-session-id", id.as_str())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#)
        .send()
        .await?
        .status();
    println!(
        "   node A answers {raw} for the session (the rmcp client sees {})",
        if after.is_err() {
            "an expired session"
        } else {
            "a result!"
        }
    );
    check(
        raw == reqwest::StatusCode::NOT_FOUND,
        "A answers 404 after DELETE on B",
    )?;
    let open = math.open_sessions().await;
    println!("6. backend sessions left open on math: {open}");
    check(open == 0, "no backend session left open")?;
    println!("\ntour complete: every step held");
    Ok(())
}
