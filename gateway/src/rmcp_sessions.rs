//! rmcp's server-side session manager, backed by our [`SessionManager`](session_manager::SessionManager).
//!
//! rmcp keeps a node-local map of session workers (SSE channels, request
//! routing): that part stays node-local ([`LocalSessionManager`]). What
//! rmcp asks of it — the session id, whether a session exists, whether an
//! unknown one can be restored and with which `initialize` — comes from our
//! manager and storage:
//!
//! - `create_session` reserves the id in storage (`reserve`), so the
//!   `Mcp-Session-Id` *is* our `SessionId`;
//! - `initialize_session` activates it with the caller's binding and the
//!   client's `initialize` parameters (the factory connects the backends);
//! - `has_session` is true only while our manager still has the session
//!   (a session terminated on another node is closed here too);
//! - restore: rmcp's `SessionStore` hook ([`StoredInit`]) reads the client's
//!   `initialize` from the session's metadata and rmcp replays it with the
//!   live request's headers; the request middleware has already restored
//!   the live session for the caller (`get_for`).

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::Stream;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, GetExtensions, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker, SessionConfig,
    create_local_session,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, ServerSseMessage, SessionState, SessionStore, SessionStoreError,
};
use rmcp::transport::streamable_http_server::{
    RestoreOutcome, SessionId as RmcpId, SessionManager, SessionRestoreMarker,
};
use session_core::{Binding, Metadata, SessionId, keys};

use crate::session::{CLIENT_INIT, Manager};

tokio::task_local! {
    /// Set while the middleware watches a request without a session id:
    /// whether our manager failed on storage inside rmcp's handler.
    static STORAGE_FAILED: Cell<bool>;
}

tokio::task_local! {
    /// The session the request middleware has just validated (`get_for`)
    /// for the request rmcp is handling in this task.
    static VALIDATED: SessionId;
}

/// Runs `f` (rmcp handling a request for session `id`) with `id` marked as
/// validated by the middleware, so [`StoreSessions::has_session`] does not
/// ask our manager a second time for the same request (with the
/// every-access policy that second ask was a second storage round trip on
/// every call).
pub async fn validated<F: Future>(id: SessionId, f: F) -> F::Output {
    VALIDATED.scope(id, f).await
}

/// Runs `f` (rmcp handling a request without a session id: `initialize`)
/// and reports whether [`StoreSessions`] failed on storage meanwhile.
/// rmcp answers any `create_session`/`initialize_session` error with 500;
/// the middleware turns that into 503 with `Retry-After` when this is true.
pub async fn watch_storage<F: Future>(f: F) -> (F::Output, bool) {
    STORAGE_FAILED
        .scope(Cell::new(false), async {
            let out = f.await;
            (out, STORAGE_FAILED.with(Cell::get))
        })
        .await
}

fn note_storage_failure(e: &SessionsError) {
    if matches!(
        e,
        SessionsError::Manager(
            session_manager::Error::Unavailable { .. } | session_manager::Error::ShutDown
        )
    ) {
        let _ = STORAGE_FAILED.try_with(|f| f.set(true));
    }
}

/// The caller's identity, put in the request extensions by the middleware.
#[derive(Clone)]
pub struct Caller(pub Binding);

/// Errors rmcp sees from [`StoreSessions`].
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// The node-local worker failed.
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
    /// Our manager refused or failed.
    #[error(transparent)]
    Manager(#[from] session_manager::Error),
    /// Metadata could not be built.
    #[error("session metadata: {0}")]
    Metadata(String),
}

/// rmcp's session manager over ours.
pub struct StoreSessions {
    local: LocalSessionManager,
    mgr: Manager,
    /// Sessions whose restore (the replayed handshake) is in progress on
    /// this node. rmcp inserts the worker before replaying `initialize`, so
    /// a concurrent request (typically the client's GET stream next to its
    /// first POST) would otherwise see the session, push its message ahead
    /// of the handshake and kill the worker; while restoring, `has_session`
    /// says no and rmcp makes that request wait for the restore.
    restoring: Mutex<HashSet<RmcpId>>,
}

impl StoreSessions {
    /// Wraps `mgr`; rmcp's node-local workers use `config`.
    pub fn new(mgr: Manager, config: SessionConfig) -> Self {
        let mut local = LocalSessionManager::default();
        local.session_config = config;
        Self {
            local,
            mgr,
            restoring: Mutex::default(),
        }
    }

    fn restoring(&self) -> std::sync::MutexGuard<'_, HashSet<RmcpId>> {
        self.restoring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes this node's rmcp worker for `id` (no storage effect).
    pub async fn close_local(&self, id: &str) {
        let _ = self.local.close_session(&RmcpId::from(id)).await;
    }

    /// Closes this node's rmcp worker for `id` if our manager no longer
    /// caches the session (called when the manager closed a live session:
    /// idle or capacity eviction, shutdown). Without this rmcp's worker
    /// outlived the eviction until its own keep-alive (5 minutes idle).
    /// Storage and the backend sessions are untouched: the next request
    /// restores the session like on any other node.
    pub async fn close_if_uncached(&self, id: &SessionId) {
        if self.mgr.cached(id).is_none() {
            self.close_local(id.as_str()).await;
        }
    }

    /// rmcp workers on this node.
    pub async fn local_len(&self) -> usize {
        self.local.sessions.read().await.len()
    }

    async fn activate(
        &self,
        id: &RmcpId,
        message: &ClientJsonRpcMessage,
    ) -> Result<(), SessionsError> {
        let ClientJsonRpcMessage::Request(req) = message else {
            return Ok(());
        };
        let ClientRequest::InitializeRequest(init) = &req.request else {
            return Ok(());
        };
        let parts = req.request.extensions().get::<http::request::Parts>();
        let caller = parts
            .and_then(|p| p.extensions.get::<Caller>())
            .map_or(Binding::Unauthenticated, |c| c.0.clone());
        let sid = SessionId::parse(id).map_err(|e| SessionsError::Metadata(e.to_string()))?;
        let params = serde_json::to_string(&init.params)
            .map_err(|e| SessionsError::Metadata(e.to_string()))?;
        let md = keys::with_binding(&Metadata::new(), &caller)
            .and_then(|md| md.with(CLIENT_INIT, params))
            .map_err(|e| SessionsError::Metadata(e.to_string()))?;
        self.mgr.activate(&sid, md).await?;
        Ok(())
    }
}

impl SessionManager for StoreSessions {
    type Error = SessionsError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(RmcpId, Self::Transport), Self::Error> {
        let id = self
            .mgr
            .reserve()
            .await
            .map_err(SessionsError::from)
            .inspect_err(note_storage_failure)?;
        let rid: RmcpId = Arc::from(id.as_str());
        let (handle, worker) = create_local_session(rid.clone(), self.local.session_config.clone());
        self.local
            .sessions
            .write()
            .await
            .insert(rid.clone(), handle);
        Ok((rid, WorkerTransport::spawn(worker)))
    }

    async fn initialize_session(
        &self,
        id: &RmcpId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let restoring = match &message {
            ClientJsonRpcMessage::Request(r) => r
                .request
                .extensions()
                .get::<SessionRestoreMarker>()
                .is_some(),
            _ => false,
        };
        if !restoring && let Err(e) = self.activate(id, &message).await {
            note_storage_failure(&e);
            self.close_local(id).await;
            return Err(e);
        }
        Ok(self.local.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &RmcpId) -> Result<bool, Self::Error> {
        // Local map first, then `restoring`: `restore_session` marks the id
        // restoring before it inserts the worker (under the map's write
        // lock), so a request that finds the worker and no mark finds the
        // handshake already queued. The other order let a request check the
        // mark, lose the race to a restore, then find the worker and push
        // its message ahead of the replayed `initialize` (the worker quit).
        if !self.local.has_session(id).await? || self.restoring().contains(id) {
            return Ok(false);
        }
        if VALIDATED
            .try_with(|v| v.as_str() == id.as_ref())
            .unwrap_or(false)
        {
            return Ok(true); // the middleware's `get_for` just found it
        }
        let Ok(sid) = SessionId::parse(id) else {
            return Ok(false);
        };
        match self.mgr.get(&sid).await {
            Err(session_manager::Error::NotFound { .. }) => {
                // Terminated or expired elsewhere: drop the local worker.
                self.close_local(id).await;
                Ok(false)
            }
            // Transient errors: the middleware already answered for this request.
            Ok(_) | Err(_) => Ok(true),
        }
    }

    async fn close_session(&self, id: &RmcpId) -> Result<(), Self::Error> {
        // Node-local only (rmcp's keep-alive, worker exit). A client's
        // DELETE is handled by the middleware, which terminates in storage.
        self.restoring().remove(id);
        Ok(self.local.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &RmcpId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &RmcpId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        let replayed = match &message {
            ClientJsonRpcMessage::Notification(n) => n
                .notification
                .extensions()
                .get::<SessionRestoreMarker>()
                .is_some(),
            _ => false,
        };
        self.local.accept_message(id, message).await?;
        if replayed {
            // The replayed `initialized` is queued ahead of anything else.
            self.restoring().remove(id);
        }
        Ok(())
    }

    async fn create_standalone_stream(
        &self,
        id: &RmcpId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &RmcpId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.resume(id, last_event_id).await?)
    }

    async fn restore_session(
        &self,
        id: RmcpId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let mut sessions = self.local.sessions.write().await;
        if sessions.contains_key(&id) && !self.restoring().contains(&id) {
            return Ok(RestoreOutcome::AlreadyPresent);
        }
        let (handle, worker) = create_local_session(id.clone(), self.local.session_config.clone());
        self.restoring().insert(id.clone());
        if let Some(stale) = sessions.insert(id, handle) {
            // A restore that never finished its handshake.
            tokio::spawn(async move {
                let _ = stale.close().await;
            });
        }
        Ok(RestoreOutcome::Restored(WorkerTransport::spawn(worker)))
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        None
    }
}

/// rmcp's restore hook: the client's `initialize` parameters, from the
/// session's metadata (through our manager).
pub struct StoredInit {
    mgr: Manager,
}

impl StoredInit {
    /// Over `mgr`.
    pub fn new(mgr: Manager) -> Self {
        Self { mgr }
    }
}

#[async_trait::async_trait]
impl SessionStore for StoredInit {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let Ok(id) = SessionId::parse(session_id) else {
            return Ok(None);
        };
        let live = match self.mgr.get(&id).await {
            Ok(live) => live,
            Err(
                session_manager::Error::NotFound { .. } | session_manager::Error::NotReady { .. },
            ) => {
                return Ok(None);
            }
            Err(e) => return Err(Box::new(e)),
        };
        let Some(json) = live.metadata().get(CLIENT_INIT) else {
            return Ok(None);
        };
        Ok(Some(SessionState::new(serde_json::from_str(json)?)))
    }

    async fn store(
        &self,
        _session_id: &str,
        _state: &SessionState,
    ) -> Result<(), SessionStoreError> {
        // Already recorded by `activate` in the same write as the binding.
        Ok(())
    }

    async fn delete(&self, _session_id: &str) -> Result<(), SessionStoreError> {
        Ok(())
    }
}
