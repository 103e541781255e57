//! One gateway node: the HTTP server (`/mcp`, `/healthz`, `/readyz`,
//! `/metrics`), the request middleware that checks every session request
//! against our manager, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use rmcp::transport::streamable_http_server::session::local::SessionConfig;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use session_core::{Binding, SessionId, SessionStore};
use session_manager::{Error, SessionManager};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::direct_call::{self, Taken};
use crate::handler::GatewayHandler;
use crate::reaper;
use crate::rmcp_sessions::{Caller, StoreSessions, StoredInit, validated, watch_storage};
use crate::session::{GatewayFactory, Manager};

/// Shared state of one node.
pub struct NodeState {
    /// Our session manager.
    pub mgr: Manager,
    /// The node's configuration.
    pub cfg: Config,
    /// rmcp's session manager over ours.
    pub sessions: Arc<StoreSessions>,
    /// Renders `/metrics` (None: no recorder installed).
    pub metrics: Option<crate::metrics::Render>,
}

/// A running node.
pub struct RunningNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub state: Arc<NodeState>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningNode {
    /// The `/mcp` endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Stops accepting requests, ends open streams, then closes every live
    /// session of this node (backend sessions stay: storage keeps them).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
        self.state.mgr.shutdown().await;
    }

    /// A token that stops this node when cancelled (use [`shutdown`](Self::shutdown) to wait).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Builds the manager for `cfg` over `store`.
pub fn manager(cfg: &Config, store: Arc<dyn SessionStore>) -> Manager {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a reqwest client without TLS builds");
    let mut b = SessionManager::builder(store, GatewayFactory::new(cfg.backends.clone(), http));
    if let Some(p) = cfg.policy {
        b = b.policy(p);
    }
    if let Some(idle) = cfg.idle_timeout {
        b = b.idle_timeout(idle);
    }
    b.build()
}

/// Starts a node on `cfg.listen` over `store`.
pub async fn start(
    cfg: Config,
    store: Arc<dyn SessionStore>,
    metrics: Option<crate::metrics::Render>,
) -> std::io::Result<RunningNode> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let mgr = manager(&cfg, store);
    let sessions = Arc::new(StoreSessions::new(mgr.clone(), SessionConfig::default()));
    mgr.factory().attach_workers(&sessions);
    let state = Arc::new(NodeState {
        mgr,
        cfg,
        sessions,
        metrics,
    });
    let cancel = CancellationToken::new();
    spawn_reaper(&state, cancel.child_token());
    let app = router(state.clone(), cancel.child_token());
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        // TCP_NODELAY: SSE answers are several small writes; with Nagle
        // each call waited for the client's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "gateway server failed");
        }
    });
    tracing::info!(%addr, "gateway node listening");
    Ok(RunningNode {
        addr,
        state,
        cancel,
        task,
    })
}

/// Deletes the backend sessions of client sessions that vanished from
/// storage (expired, or terminated elsewhere) once across nodes, and drops
/// this node's rmcp worker and cached live session for them.
fn spawn_reaper(state: &Arc<NodeState>, stop: CancellationToken) {
    let f = state.mgr.factory();
    let st = state.clone();
    tokio::spawn(reaper::run(
        f.reaper().clone(),
        state.mgr.store().clone(),
        f.http().clone(),
        f.backends().to_vec(),
        state.cfg.reap_interval,
        stop,
        async move |gone: Vec<SessionId>| {
            for id in gone {
                st.sessions.close_local(id.as_str()).await;
                st.mgr.evict_local(&id);
            }
        },
    ));
}

/// The node's HTTP routes.
pub fn router(state: Arc<NodeState>, cancel: CancellationToken) -> Router {
    let mut rcfg = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(state.cfg.max_body_bytes)
        .with_cancellation_token(cancel);
    rcfg.allowed_hosts.clone_from(&state.cfg.allowed_hosts);
    rcfg.session_store = Some(Arc::new(StoredInit::new(state.mgr.clone())));
    let mgr = state.mgr.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(GatewayHandler::new(mgr.clone())),
        state.sessions.clone(),
        rcfg,
    );
    let mcp = Router::new()
        .fallback_service(mcp)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest_service("/mcp", mcp)
        .with_state(state)
}

async fn readyz(State(st): State<Arc<NodeState>>) -> Response {
    let probe = SessionId::generate();
    match tokio::time::timeout(Duration::from_secs(2), st.mgr.store().version(&probe)).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store: timeout\n").into_response(),
    }
}

async fn metrics(State(st): State<Arc<NodeState>>) -> Response {
    match &st.metrics {
        Some(r) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            r.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn caller_of(st: &NodeState, req: &Request) -> Result<Binding, Box<Response>> {
    let Some(auth) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(Binding::Unauthenticated);
    };
    let token = auth
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim);
    match token.and_then(|t| st.cfg.tokens.get(t)) {
        Some(b) => Ok(b.clone()),
        None => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                "Unauthorized: unknown bearer token\n",
            )
                .into_response(),
        )),
    }
}

/// 503 with `Retry-After: 1`: session storage is unavailable.
fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "Service Unavailable: session storage unavailable\n",
    )
        .into_response()
}

/// Maps a manager error to the HTTP answer.
async fn refuse(st: &NodeState, id: &SessionId, e: &Error) -> Response {
    match e {
        Error::NotFound { .. } => {
            st.sessions.close_local(id.as_str()).await;
            plain(StatusCode::NOT_FOUND, "Not Found: Session not found\n")
        }
        Error::Forbidden { .. } if st.cfg.forbidden_status == 404 => {
            plain(StatusCode::NOT_FOUND, "Not Found: Session not found\n")
        }
        Error::Forbidden { .. } => plain(
            StatusCode::FORBIDDEN,
            "Forbidden: session bound to another identity\n",
        ),
        Error::Unavailable { .. } | Error::ShutDown => unavailable(),
        other => {
            let status = StatusCode::from_u16(other.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("{other}\n")).into_response()
        }
    }
}

/// Every `/mcp` request: identify the caller; for a request naming a
/// session, check it against our manager (`get_for`: exists, bound to this
/// caller, validated per policy; restored on a miss) before rmcp sees it;
/// a plain `tools/call` is then answered here ([`direct_call`]);
/// `DELETE` terminates in storage and deletes the backend sessions once.
async fn guard(State(st): State<Arc<NodeState>>, mut req: Request, next: Next) -> Response {
    let caller = match caller_of(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    req.extensions_mut().insert(Caller(caller.clone()));
    if let Some(raw) = req.headers().get("mcp-session-id") {
        let Some(id) = raw.to_str().ok().and_then(|s| SessionId::parse(s).ok()) else {
            return plain(StatusCode::NOT_FOUND, "Not Found: Session not found\n");
        };
        if req.method() == Method::DELETE {
            return terminate(&st, &id, &caller).await;
        }
        let live = match st.mgr.get_for(&id, &caller).await {
            Ok(live) => live,
            Err(e) => return refuse(&st, &id, &e).await,
        };
        // A plain `tools/call` is answered here (see `direct_call`).
        let mut req = match direct_call::take(&st.mgr, &live, req, &st.cfg).await {
            Taken::Answered(res) => return res,
            Taken::Pass(req) => req,
        };
        req.extensions_mut().insert(live);
        return validated(id, next.run(req)).await;
    }
    // No session id: rmcp creates one (`initialize`) through our manager and
    // answers 500 to any failure; a storage failure is 503 like above.
    let (res, storage_failed) = watch_storage(next.run(req)).await;
    if storage_failed && res.status() == StatusCode::INTERNAL_SERVER_ERROR {
        return unavailable();
    }
    res
}

async fn terminate(st: &NodeState, id: &SessionId, caller: &Binding) -> Response {
    // The freshest record names the backend sessions to delete.
    let rec = match st.mgr.store().peek(id).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return refuse(st, id, &Error::NotFound { id: id.clone() }).await,
        Err(e) if e.is_transient() => {
            return refuse(
                st,
                id,
                &Error::Unavailable {
                    source: Arc::new(e),
                },
            )
            .await;
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    match st.mgr.terminate_for(id, caller).await {
        Ok(true) => {
            st.sessions.close_local(id.as_str()).await;
            let f = st.mgr.factory();
            f.reaper().forget(id);
            let pairs = reaper::recorded(&rec.metadata);
            let r =
                reaper::delete_once(&**st.mgr.store(), f.http(), f.backends(), id, &pairs).await;
            if r.failed > 0 {
                tracing::warn!(session_id = %id, failed = r.failed, "some backend sessions could not be deleted");
            }
            plain(StatusCode::OK, "")
        }
        Ok(false) => refuse(st, id, &Error::NotFound { id: id.clone() }).await,
        Err(e) => refuse(st, id, &e).await,
    }
}
