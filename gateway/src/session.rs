//! Live gateway sessions: one slot per backend, each holding at most one
//! [`Upstream`] (a backend session called directly) on the backend session
//! the stored metadata names.
//!
//! A slot is reconciled with the metadata on use: the manager hands every
//! request the live session with the snapshot it currently serves (adopted
//! without a rebuild when only backend session ids changed), and a slot
//! whose client is on another backend session than the snapshot names
//! resumes the named one. So a backend session healed on one node reaches
//! the others through the manager, with no rebuild and no eviction storm.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use async_trait::async_trait;
use futures_util::future::join_all;
use session_core::{Metadata, SessionId, Snapshot, Version, WorkloadId, keys};
use session_manager::{BuildCause, Built, Live, SessionFactory, SessionManager};

use crate::backend::{self, Conn, ConnectError};
use crate::config::BackendSpec;
use crate::reaper::{self, Reaper};
use crate::rmcp_sessions::StoreSessions;
use crate::upstream::{CallError, Upstream};

/// Metadata key holding the client's `initialize` parameters (JSON), used
/// to replay the handshake when another node restores the session.
pub const CLIENT_INIT: &str = "gateway.client.init";
/// Prefix of the keys holding what each backend answered to `initialize`.
pub const BACKEND_INIT_PREFIX: &str = "gateway.backend.init.";

/// The metadata key holding `workload`'s `initialize` answer.
pub fn backend_init_key(workload: &WorkloadId) -> String {
    format!("{BACKEND_INIT_PREFIX}{workload}")
}

/// A live session as the manager caches it.
pub type LiveSession = Arc<Live<Arc<GatewaySession>>>;
/// The manager the gateway runs.
pub type Manager = SessionManager<GatewayFactory>;

/// The node-local part of a client session: one slot per backend.
#[derive(Debug)]
pub struct GatewaySession {
    id: SessionId,
    slots: BTreeMap<WorkloadId, Arc<Slot>>,
}

impl GatewaySession {
    /// The client session it serves.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The slot of backend `name`.
    pub fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
    }

    /// Every slot, by backend name.
    pub fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }
}

/// A connection and the stored version it corresponds to.
#[derive(Debug)]
struct Held {
    conn: Arc<Upstream>,
    version: Version,
}

/// Opens `conn`'s backend session for direct calls; rmcp's client (and
/// its worker task) is dropped: it was needed for the handshake only, and
/// its drop never deletes the backend session.
///
/// A fresh backend session whose handle cannot be built (its `initialize`
/// answer is not one `Upstream` accepts) is recorded nowhere yet, so it is
/// deleted here, in the background, instead of being left open.
fn direct(http: &reqwest::Client, url: &str, conn: Conn) -> Result<Upstream, ConnectError> {
    let up = Upstream::new(http, url, &conn.session_id, &conn.init_json);
    if up.is_err() {
        let (http, url, sid) = (http.clone(), url.to_owned(), conn.session_id.clone());
        tokio::spawn(async move {
            if let Err(e) = backend::delete_backend_session(&http, &url, &sid).await {
                tracing::warn!(error = %e, "deleting an unusable fresh backend session failed");
            }
        });
    }
    drop(conn);
    up
}

/// One backend of one live session.
#[derive(Debug)]
pub struct Slot {
    /// The backend.
    pub spec: BackendSpec,
    /// The metadata key naming this backend's session (computed once: the
    /// hit path reads it on every call).
    session_key: String,
    held: tokio::sync::Mutex<Option<Held>>,
    metrics: Arc<BackendMetrics>,
}

/// One backend's call metrics, registered once per node (not per call:
/// label strings and a registry lookup per call cost on the hit path).
#[derive(Debug)]
pub struct BackendMetrics {
    ok: metrics::Counter,
    healed: metrics::Counter,
    error: metrics::Counter,
    seconds: metrics::Histogram,
}

impl BackendMetrics {
    fn new(w: &WorkloadId) -> Self {
        let c = |outcome: &'static str| metrics::counter!("gateway_backend_calls_total", "backend" => w.to_string(), "outcome" => outcome);
        Self {
            ok: c("ok"),
            healed: c("healed"),
            error: c("error"),
            seconds: metrics::histogram!("gateway_backend_call_seconds", "backend" => w.to_string()),
        }
    }
}

/// Why a backend could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum BackendFailure {
    /// Connecting failed.
    #[error("backend {backend} unavailable: {source}")]
    Connect {
        /// The backend.
        backend: WorkloadId,
        /// Why.
        source: ConnectError,
    },
    /// The request failed.
    #[error("backend {backend} failed: {message}")]
    Call {
        /// The backend.
        backend: WorkloadId,
        /// Why.
        message: String,
    },
    /// Recording the new backend session failed (session gone, storage down).
    #[error("session update failed: {0}")]
    Manager(#[from] session_manager::Error),
}

/// Builds live sessions: connects every backend on create, resumes lazily on restore.
pub struct GatewayFactory {
    backends: Vec<BackendSpec>,
    /// Per backend, in the order of `backends`.
    metrics: Vec<Arc<BackendMetrics>>,
    http: reqwest::Client,
    reaper: Arc<Reaper>,
    /// rmcp's node-local workers, to stop a session's worker when the
    /// manager closes its live session (set once the node is built: the
    /// workers' manager holds this factory, hence `Weak`).
    workers: OnceLock<Weak<StoreSessions>>,
}

impl GatewayFactory {
    /// A factory over `backends`, sharing `http`.
    pub fn new(backends: Vec<BackendSpec>, http: reqwest::Client) -> Self {
        Self {
            metrics: backends
                .iter()
                .map(|b| Arc::new(BackendMetrics::new(&b.name)))
                .collect(),
            backends,
            http,
            reaper: Arc::default(),
            workers: OnceLock::new(),
        }
    }

    /// What this node remembers of backend sessions (for deleting them
    /// once their client session is gone).
    pub fn reaper(&self) -> &Arc<Reaper> {
        &self.reaper
    }

    /// Lets [`close`](SessionFactory::close) stop rmcp's worker of a
    /// session the manager closed (idle or capacity eviction, shutdown).
    pub fn attach_workers(&self, workers: &Arc<StoreSessions>) {
        let _ = self.workers.set(Arc::downgrade(workers));
    }

    /// The configured backends.
    pub fn backends(&self) -> &[BackendSpec] {
        &self.backends
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Error from [`GatewayFactory::build`] (metadata limits).
#[derive(Debug, thiserror::Error)]
#[error("building session metadata failed: {0}")]
pub struct BuildError(String);

#[async_trait]
impl SessionFactory for GatewayFactory {
    type Session = Arc<GatewaySession>;
    type Error = BuildError;

    async fn build(
        &self,
        snapshot: &Snapshot,
        cause: BuildCause,
    ) -> Result<Built<Arc<GatewaySession>>, BuildError> {
        let mut md = snapshot.metadata.clone();
        let mut slots = BTreeMap::new();
        let fresh = if cause == BuildCause::Create {
            join_all(
                self.backends
                    .iter()
                    .map(|b| backend::connect_fresh(&self.http, &b.url)),
            )
            .await
        } else {
            Vec::new()
        };
        let mut fresh = fresh.into_iter();
        for (spec, metrics) in self.backends.iter().zip(&self.metrics) {
            let mut held = None;
            if let Some(res) = fresh.next() {
                match res.and_then(|conn| direct(&self.http, &spec.url, conn)) {
                    Ok(conn) => {
                        self.reaper.note(&snapshot.id, &spec.name, &conn.session_id);
                        md = keys::with_backend(&md, &spec.name, &conn.session_id)
                            .map_err(|e| BuildError(e.to_string()))?
                            .with(backend_init_key(&spec.name), conn.init_json.clone())
                            .map_err(|e| BuildError(e.to_string()))?;
                        held = Some(Held {
                            conn: Arc::new(conn),
                            version: snapshot.version,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(backend = %spec.name, error = %e, "backend unavailable at session create");
                        md = keys::with_backend(&md, &spec.name, "")
                            .map_err(|e| BuildError(e.to_string()))?;
                    }
                }
            } else if let Some(sid) = keys::backend_session(&md, &spec.name) {
                // Restored here: this node now shares the session's backend
                // sessions (and must help delete them once it is gone).
                self.reaper.note(&snapshot.id, &spec.name, sid);
            }
            slots.insert(
                spec.name.clone(),
                Arc::new(Slot {
                    spec: spec.clone(),
                    session_key: keys::backend_session_key(&spec.name),
                    held: tokio::sync::Mutex::new(held),
                    metrics: metrics.clone(),
                }),
            );
        }
        Ok(Built::new(
            Arc::new(GatewaySession {
                id: snapshot.id.clone(),
                slots,
            }),
            md,
        ))
    }

    async fn close(&self, session: Arc<GatewaySession>) {
        // Dropping the clients closes them; `BackendHttp` never deletes a
        // backend session on drop (other nodes may still use it). rmcp's
        // worker for the session on this node stops too, unless the
        // session is cached again (a replacement, a restore that raced).
        if let Some(workers) = self.workers.get().and_then(Weak::upgrade) {
            workers.close_if_uncached(&session.id).await;
        }
    }

    fn matches(&self, live: &Snapshot, stored: &Snapshot) -> bool {
        // Slots follow the stored backend session ids on use, so only the
        // identity binding decides.
        live.metadata.get(keys::IDENTITY_BINDING) == stored.metadata.get(keys::IDENTITY_BINDING)
    }
}

fn stored_backend(md: &Metadata, w: &WorkloadId) -> (Option<String>, Option<String>) {
    (
        keys::backend_session(md, w).map(str::to_owned),
        md.get(&backend_init_key(w)).map(str::to_owned),
    )
}

/// Deletes a backend session of session `id` that nobody uses any more,
/// in the background, once across nodes (claimed like every delete).
fn delete_later(mgr: &Manager, id: &SessionId, spec: &BackendSpec, sid: &str) {
    let (store, http) = (mgr.store().clone(), mgr.factory().http().clone());
    let (id, spec, pairs) = (
        id.clone(),
        spec.clone(),
        [(spec.name.clone(), sid.to_owned())],
    );
    tokio::spawn(async move {
        reaper::delete_once(&*store, &http, std::slice::from_ref(&spec), &id, &pairs).await;
    });
}

impl Slot {
    /// The client for the backend session `live`'s snapshot names,
    /// resuming or (when none is recorded) opening and recording one.
    pub async fn conn(
        &self,
        mgr: &Manager,
        live: &LiveSession,
    ) -> Result<Arc<Upstream>, BackendFailure> {
        let held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && (h.version > live.version()
                || live.metadata().get(&self.session_key) == Some(h.conn.session_id.as_str()))
        {
            return Ok(h.conn.clone());
        }
        // Boxed: this rare path (a handshake, a CAS) is most of the size
        // of every tool call's future, which rmcp spawns (and so copies)
        // per request.
        Box::pin(self.follow(mgr, live, held)).await
    }

    /// The slot's client is not on the backend session `live` names (or
    /// there is none): resume the named one, or open and record one.
    async fn follow(
        &self,
        mgr: &Manager,
        live: &LiveSession,
        mut held: tokio::sync::MutexGuard<'_, Option<Held>>,
    ) -> Result<Arc<Upstream>, BackendFailure> {
        let w = &self.spec.name;
        let http = mgr.factory().http();
        let (want, init) = stored_backend(live.metadata(), w);
        let replaced = held.take();
        let out = match (want, init) {
            (Some(sid), Some(init)) => {
                self.resume_into(http, &mut held, &sid, &init, live.version())
            }
            (old, _) => {
                self.install_fresh(mgr, live.id(), old.as_deref(), &mut held)
                    .await
            }
        };
        if let (Some(r), Some(now)) = (replaced, held.as_ref())
            && r.conn.session_id != now.conn.session_id
        {
            // The store no longer names it: nobody uses it any more.
            delete_later(mgr, live.id(), &self.spec, &r.conn.session_id);
        }
        if let Ok(conn) = &out {
            mgr.factory().reaper.note(live.id(), w, &conn.session_id);
        }
        out
    }

    /// Heals after the backend answered 404 for `expired`: tells the
    /// manager, opens a new backend session and records it by CAS (one
    /// winner across nodes; losers delete theirs and adopt the winner's).
    pub async fn heal(
        &self,
        mgr: &Manager,
        id: &SessionId,
        expired: &str,
    ) -> Result<Arc<Upstream>, BackendFailure> {
        let w = &self.spec.name;
        let http = mgr.factory().http();
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && h.conn.session_id != expired
        {
            return Ok(h.conn.clone()); // healed meanwhile on this node
        }
        *held = None;
        metrics::counter!("gateway_backend_expired_total", "backend" => w.to_string()).increment(1);
        // Expire the backend in the session *if it still names the expired
        // backend session*: one CAS. (The manager's `notify_backend_expired`
        // removes the backend whatever session id is recorded, so a node
        // that saw the 404 late would remove a backend session another node
        // just healed; see `expire_if`.)
        let snap = expire_if(mgr, id, w, expired).await?;
        let out = match stored_backend(&snap.metadata, w) {
            (Some(s), Some(init)) if s != expired => {
                tracing::info!(backend = %w, session_id = %id, "adopting a backend session healed by another node");
                self.resume_into(http, &mut held, &s, &init, snap.version)
            }
            _ => {
                tracing::info!(backend = %w, session_id = %id, "backend session expired; re-initializing");
                self.install_fresh(mgr, id, Some(expired), &mut held).await
            }
        };
        if let Ok(conn) = &out {
            mgr.factory().reaper.note(id, w, &conn.session_id);
        }
        out
    }

    /// Opens a new backend session and records it unless another node
    /// recorded one first (then deletes ours and adopts theirs).
    async fn install_fresh(
        &self,
        mgr: &Manager,
        id: &SessionId,
        old: Option<&str>,
        held: &mut Option<Held>,
    ) -> Result<Arc<Upstream>, BackendFailure> {
        let w = &self.spec.name;
        let http = mgr.factory().http();
        let conn = backend::connect_fresh(http, &self.spec.url)
            .await
            .and_then(|conn| direct(http, &self.spec.url, conn))
            .map_err(|source| BackendFailure::Connect {
                backend: w.clone(),
                source,
            })?;
        let (sid, init) = (conn.session_id.clone(), conn.init_json.clone());
        let snap = mgr
            .update(id, |md| {
                let current = keys::backend_session(md, w);
                if current.is_none() || current == old {
                    keys::with_backend(md, w, &sid)
                        .map_err(session_core::BoxError::from)?
                        .with(backend_init_key(w), init.clone())
                        .map_err(session_core::BoxError::from)
                } else {
                    Ok(md.clone())
                }
            })
            .await;
        let snap = match snap {
            Ok(s) => s,
            Err(e) => {
                delete_later(mgr, id, &self.spec, &sid);
                return Err(e.into());
            }
        };
        let (winner, winner_init) = stored_backend(&snap.metadata, w);
        if winner.as_deref() == Some(sid.as_str()) {
            let conn = Arc::new(conn);
            *held = Some(Held {
                conn: conn.clone(),
                version: snap.version,
            });
            return Ok(conn);
        }
        // Another node won: ours is a duplicate.
        metrics::counter!("gateway_backend_heal_lost_total", "backend" => w.to_string())
            .increment(1);
        drop(conn);
        delete_later(mgr, id, &self.spec, &sid);
        let (Some(winner), Some(winner_init)) = (winner, winner_init) else {
            return Err(BackendFailure::Call {
                backend: w.clone(),
                message: "no backend session recorded".into(),
            });
        };
        self.resume_into(http, held, &winner, &winner_init, snap.version)
    }

    /// Resumes the recorded backend session `sid` (answered `init` to
    /// `initialize`) and holds it as serving `version`.
    fn resume_into(
        &self,
        http: &reqwest::Client,
        held: &mut Option<Held>,
        sid: &str,
        init: &str,
        version: session_core::Version,
    ) -> Result<Arc<Upstream>, BackendFailure> {
        let conn = Arc::new(
            Upstream::new(http, &self.spec.url, sid, init).map_err(|source| {
                BackendFailure::Connect {
                    backend: self.spec.name.clone(),
                    source,
                }
            })?,
        );
        *held = Some(Held {
            conn: conn.clone(),
            version,
        });
        Ok(conn)
    }
}

/// Removes `workload` from session `id` if its recorded backend session is
/// still `expired` (a conditional `notify_backend_expired`); returns the
/// stored snapshot afterwards, which names the healed backend session if
/// another node already recorded one.
pub async fn expire_if(
    mgr: &Manager,
    id: &SessionId,
    workload: &WorkloadId,
    expired: &str,
) -> Result<Snapshot, session_manager::Error> {
    mgr.update(id, |md| {
        if keys::backend_session(md, workload) == Some(expired) {
            keys::without_backend(md, workload).map_err(session_core::BoxError::from)
        } else {
            Ok(md.clone())
        }
    })
    .await
}

/// How a backend call went (for the metrics).
enum Outcome {
    Ok,
    Healed,
}

/// Runs `f` on `slot`'s backend session, healing an expired one once
/// (the backend answered 404: see [`Slot::heal`]).
pub async fn with_backend<T, F, Fut>(
    mgr: &Manager,
    live: &LiveSession,
    slot: &Slot,
    f: F,
) -> Result<T, BackendFailure>
where
    F: Fn(Arc<Upstream>) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let started = Instant::now();
    let failed = |e: CallError| BackendFailure::Call {
        backend: slot.spec.name.clone(),
        message: e.to_string(),
    };
    let out = async {
        let conn = slot.conn(mgr, live).await?;
        match f(conn.clone()).await {
            Ok(v) => Ok((v, Outcome::Ok)),
            Err(CallError::SessionExpired) => {
                // Boxed like `Slot::follow`: rare, and large.
                let conn = Box::pin(slot.heal(mgr, live.id(), &conn.session_id)).await?;
                match f(conn).await {
                    Ok(v) => Ok((v, Outcome::Healed)),
                    Err(e) => Err(failed(e)),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }
    .await;
    let m = &slot.metrics;
    match &out {
        Ok((_, Outcome::Ok)) => m.ok.increment(1),
        Ok((_, Outcome::Healed)) => m.healed.increment(1),
        Err(_) => m.error.increment(1),
    }
    m.seconds.record(started.elapsed().as_secs_f64());
    out.map(|(v, _)| v)
}
