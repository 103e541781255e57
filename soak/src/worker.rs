//! One soak node: a `SessionManager` over a store, a factory that counts
//! builds and closes, and the loop that serves the driver's requests when
//! the node is its own process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_core::{Metadata, SessionId, SessionStore, Snapshot, Ttl, WorkloadId, keys};
use session_manager::{
    BackendExpiry, BuildCause, Built, Error, SessionFactory, SessionManager, ValidationPolicy,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::protocol::{
    COUNTER_PREFIX, EXPIRING_KEY, Envelope, FinishReport, Outcome, Reply, Request,
};
use crate::rss;

/// Per-node manager settings: each node validates differently, so the
/// soak covers every policy at once.
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// The staleness bound of node 1.
pub const BOUNDED: Duration = Duration::from_millis(500);
/// The resync interval of node 2 (push).
pub const RESYNC: Duration = Duration::from_secs(1);
/// TTL of reserved sessions. Longer than the slowest create under faults:
/// `reserve` and `activate` each retry a write up to twice after an op
/// timeout (1 s), so with a 3 s pause a reservation made at once could
/// expire before its activation and `create` would report `NotFound`
/// (seen with 2 s).
pub const RESERVATION_TTL: Duration = Duration::from_secs(10);
/// Idle eviction (short, so live sessions are closed and rebuilt during the run).
pub const IDLE: Duration = Duration::from_secs(10);

/// The validation policy of node `index` (0: every access, 1: bounded, 2: push).
pub fn policy(index: usize) -> ValidationPolicy {
    match index % 3 {
        0 => ValidationPolicy::EveryAccess,
        1 => ValidationPolicy::BoundedStaleness(BOUNDED),
        _ => ValidationPolicy::Push,
    }
}

/// Builds and closes counted; every eighth restore mints a new backend
/// session id (a write-back by compare-and-set, as a real gateway does).
pub struct Factory {
    builds: AtomicU64,
    closes: AtomicU64,
    /// Sabotage `leak`: skip every 50th close.
    leak: bool,
}

/// The live session: only a token.
#[derive(Clone, Debug)]
pub struct Token(u64);

#[async_trait]
impl SessionFactory for Factory {
    type Session = Token;
    type Error = std::convert::Infallible;

    async fn build(&self, s: &Snapshot, cause: BuildCause) -> Result<Built<Token>, Self::Error> {
        let n = self.builds.fetch_add(1, Ordering::SeqCst);
        let mut md = s.metadata.clone();
        if cause == BuildCause::Restore
            && n.is_multiple_of(8)
            && !md.contains_key(EXPIRING_KEY)
            && let Some(w) = keys::backend_ids(&md)
                .ok()
                .and_then(|ids| ids.into_iter().next())
            && let Ok(next) = keys::with_backend(&md, &w, &format!("b{n}"))
        {
            md = next;
        }
        Ok(Built::new(Token(n), md))
    }

    async fn close(&self, session: Token) {
        if self.leak && session.0 % 50 == 49 {
            return;
        }
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// A deliberately broken guard, to prove the checker notices (the soak's
/// own tests run each one and expect the named violation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// `update` writes at the version it finds just before writing, not the
    /// one it read: a blind write that loses concurrent increments.
    LostUpdate,
    /// `update` is sent again after it succeeded, as a naive retry after a
    /// lost reply would: the increment applies twice.
    DoubleApply,
    /// `terminate` writes the session back after deleting it.
    Resurrect,
    /// The factory skips every 50th close.
    Leak,
}

impl Sabotage {
    /// Parses `lost-update`, `double-apply`, `resurrect`, `leak`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lost-update" => Self::LostUpdate,
            "double-apply" => Self::DoubleApply,
            "resurrect" => Self::Resurrect,
            "leak" => Self::Leak,
            _ => return None,
        })
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LostUpdate => "lost-update",
            Self::DoubleApply => "double-apply",
            Self::Resurrect => "resurrect",
            Self::Leak => "leak",
        }
    }
}

/// A node: its manager and what it measured.
pub struct Node {
    sabotage: Option<Sabotage>,
    manager: SessionManager<Factory>,
    store: Arc<dyn SessionStore>,
    rss: Arc<Mutex<Vec<(f64, u64)>>>,
}

impl Node {
    /// Starts node `index` over `store` (inside a Tokio runtime).
    pub fn start(
        index: usize,
        store: Arc<dyn SessionStore>,
        started: Instant,
        sabotage: Option<Sabotage>,
    ) -> Self {
        let factory = Factory {
            builds: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            leak: sabotage == Some(Sabotage::Leak),
        };
        let manager = SessionManager::builder(store.clone(), factory)
            .policy(policy(index))
            .op_timeout(OP_TIMEOUT)
            .resync_interval(RESYNC)
            .reservation_ttl(RESERVATION_TTL)
            .idle_timeout(IDLE)
            .build();
        Self {
            sabotage,
            manager,
            store,
            rss: rss::sampler(started),
        }
    }

    /// Runs one request and times the manager call.
    pub async fn run(&self, seq: u64, request: Request) -> Reply {
        let started = Instant::now();
        let outcome = self.execute(request).await;
        Reply {
            seq,
            us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            outcome,
        }
    }

    async fn execute(&self, request: Request) -> Outcome {
        match self.call(request).await {
            Ok(o) => o,
            Err(e) => failed(&e),
        }
    }

    async fn call(&self, request: Request) -> Result<Outcome, Error> {
        let m = &self.manager;
        Ok(match request {
            Request::Create { backends } => {
                let live = m.create(metadata(&backends, false)?).await?;
                Outcome::Created {
                    id: live.id().to_string(),
                }
            }
            Request::CreateExpiring { backends, ttl_ms } => {
                // The manager creates with the store TTL; a short-lived
                // session is written as the manager writes a placeholder,
                // with a custom TTL, but already active.
                let id = SessionId::generate();
                let md = metadata(&backends, true)?;
                let ttl = Ttl::Custom(Duration::from_millis(ttl_ms));
                match tokio::time::timeout(OP_TIMEOUT, self.store.create(&id, &md, ttl)).await {
                    Ok(Ok(Some(_))) => Outcome::Created { id: id.to_string() },
                    Ok(Ok(None)) => Outcome::Failed {
                        kind: "IdTaken".into(),
                        detail: "a fresh id was taken".into(),
                    },
                    Ok(Err(e)) if e.is_transient() => Outcome::Failed {
                        kind: "Unavailable".into(),
                        detail: session_core::display_chain(&e).clone(),
                    },
                    Ok(Err(e)) => Outcome::Failed {
                        kind: "Storage".into(),
                        detail: session_core::display_chain(&e).clone(),
                    },
                    Err(_) => Outcome::Failed {
                        kind: "Unavailable".into(),
                        detail: "create timed out".into(),
                    },
                }
            }
            Request::Reserve => Outcome::Created {
                id: m.reserve().await?.to_string(),
            },
            Request::Get { id } => {
                let live = m.get(&parse_id(&id)?).await?;
                Outcome::Got {
                    counters: counters(live.metadata()),
                }
            }
            Request::Update { id, writer, .. } if self.sabotage == Some(Sabotage::LostUpdate) => {
                self.blind_increment(&parse_id(&id)?, writer).await?
            }
            Request::Update {
                id,
                writer,
                add_backend,
            } => {
                let key = format!("{COUNTER_PREFIX}{writer}");
                let add = match add_backend {
                    Some(w) => Some(WorkloadId::parse(&w).map_err(edit)?),
                    None => None,
                };
                let id = parse_id(&id)?;
                let increment = |md: &Metadata| {
                    let n: u64 = md.get(&key).map_or(Ok(0), str::parse)?;
                    let mut next = md.with(key.as_str(), (n + 1).to_string())?;
                    if let Some(w) = &add
                        && keys::backend_session(&next, w).is_none()
                    {
                        next = keys::with_backend(&next, w, "fresh")?;
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(next)
                };
                let mut snapshot = m.update(&id, increment).await?;
                if self.sabotage == Some(Sabotage::DoubleApply) {
                    snapshot = m.update(&id, increment).await?;
                }
                let value = snapshot
                    .metadata
                    .get(&key)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Outcome::Updated { value }
            }
            Request::Notify { id, workload } => {
                let w = WorkloadId::parse(&workload).map_err(edit)?;
                let result = match m.notify_backend_expired(&parse_id(&id)?, &w).await? {
                    BackendExpiry::Removed(_) => "removed",
                    BackendExpiry::NotPresent => "not_present",
                    BackendExpiry::SessionGone => "gone",
                    _ => "other",
                };
                Outcome::Notified {
                    result: result.into(),
                }
            }
            Request::EvictBackend { workload } => {
                let w = WorkloadId::parse(&workload).map_err(edit)?;
                let r = m.evict_backend(&w).await?;
                Outcome::Evicted {
                    scanned: r.scanned,
                    removed: r.removed,
                    failed: r.failed,
                }
            }
            Request::Terminate { id } if self.sabotage == Some(Sabotage::Resurrect) => {
                let id = parse_id(&id)?;
                let old = self.store.peek(&id).await.map_err(store_error)?;
                let deleted = m.terminate(&id).await?;
                if let Some(old) = old {
                    let _ = self.store.create(&id, &old.metadata, Ttl::Default).await;
                }
                Outcome::Terminated { deleted }
            }
            Request::Terminate { id } => Outcome::Terminated {
                deleted: m.terminate(&parse_id(&id)?).await?,
            },
            Request::Finish => Outcome::Finished(self.finish().await),
        })
    }

    /// Sabotage `lost-update`: read, then write at whatever version is
    /// current just before the write (a blind write with extra steps).
    async fn blind_increment(&self, id: &SessionId, writer: usize) -> Result<Outcome, Error> {
        let key = format!("{COUNTER_PREFIX}{writer}");
        let Some(rec) = self.store.peek(id).await.map_err(store_error)? else {
            return Err(Error::NotFound { id: id.clone() });
        };
        let n: u64 = rec
            .metadata
            .get(&key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let md = rec
            .metadata
            .with(key.as_str(), (n + 1).to_string())
            .map_err(edit)?;
        tokio::task::yield_now().await;
        let Some(version) = self.store.version(id).await.map_err(store_error)? else {
            return Err(Error::NotFound { id: id.clone() });
        };
        match self
            .store
            .update(id, version, &md)
            .await
            .map_err(store_error)?
        {
            session_core::Update::Applied(_) => Ok(Outcome::Updated { value: n + 1 }),
            _ => Err(Error::ConflictBudgetExhausted {
                id: id.clone(),
                attempts: 1,
            }),
        }
    }

    /// Shuts the manager down and reports builds, closes and RSS.
    pub async fn finish(&self) -> FinishReport {
        let report = self.manager.shutdown().await;
        let f = self.manager.factory();
        FinishReport {
            builds: f.builds.load(Ordering::SeqCst),
            closes: f.closes.load(Ordering::SeqCst),
            shutdown_complete: report.is_complete(),
            rss: self.rss.lock().map(|v| v.clone()).unwrap_or_default(),
        }
    }
}

fn edit(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Edit {
        source: Arc::new(e),
    }
}

fn store_error(e: session_core::Error) -> Error {
    Error::Unavailable {
        source: Arc::new(e),
    }
}

fn parse_id(id: &str) -> Result<SessionId, Error> {
    SessionId::parse(id).map_err(edit)
}

fn metadata(backends: &[String], expiring: bool) -> Result<Metadata, Error> {
    let mut md = Metadata::new();
    if expiring {
        md = md.with(EXPIRING_KEY, "1").map_err(edit)?;
    }
    for (i, b) in backends.iter().enumerate() {
        let w = WorkloadId::parse(b).map_err(edit)?;
        md = keys::with_backend(&md, &w, &format!("s{i}")).map_err(edit)?;
    }
    Ok(md)
}

fn counters(md: &Metadata) -> Vec<(usize, u64)> {
    md.keys_with_prefix(COUNTER_PREFIX)
        .filter_map(|k| {
            let writer = k[COUNTER_PREFIX.len()..].parse().ok()?;
            let value = md.get(k)?.parse().ok()?;
            Some((writer, value))
        })
        .collect()
}

/// The variant name of a manager error (the soak's error kinds).
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::NotReady { .. } => "NotReady",
        Error::Forbidden { .. } => "Forbidden",
        Error::Unavailable { .. } => "Unavailable",
        Error::Storage { .. } => "Storage",
        Error::ConflictBudgetExhausted { .. } => "ConflictBudgetExhausted",
        Error::AlreadyActive { .. } => "AlreadyActive",
        Error::Build { .. } => "Build",
        Error::Edit { .. } => "Edit",
        Error::ShutDown => "ShutDown",
        _ => "Other",
    }
}

fn failed(e: &Error) -> Outcome {
    Outcome::Failed {
        kind: kind(e).into(),
        detail: session_core::display_chain(e).clone(),
    }
}

/// Serves requests from stdin until `Finish` (or stdin closes), answering
/// on stdout. Requests run concurrently; `Finish` waits for those in flight.
pub async fn serve(index: usize, url: &str, sabotage: Option<Sabotage>) -> Result<(), String> {
    let started = Instant::now();
    let store = session_manager::connect(url)
        .await
        .map_err(|e| format!("node {index}: {}", session_core::display_chain(&e)))?;
    let node = Arc::new(Node::start(index, store, started, sabotage));
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(reply) = rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&reply) else {
                continue;
            };
            line.push(b'\n');
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let _ = tx.send(Reply {
        seq: 0,
        us: 0,
        outcome: Outcome::Ready,
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut running = tokio::task::JoinSet::new();
    let mut finish = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let env: Envelope = serde_json::from_str(&line)
            .map_err(|e| format!("node {index}: bad request {line:?}: {e}"))?;
        if matches!(env.request, Request::Finish) {
            finish = Some(env.seq);
            break;
        }
        let node = node.clone();
        let tx = tx.clone();
        running.spawn(async move {
            let _ = tx.send(node.run(env.seq, env.request).await);
        });
        // Reap finished tasks so the set does not grow with the run.
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
    let report = node.finish().await;
    if let Some(seq) = finish {
        let _ = tx.send(Reply {
            seq,
            us: 0,
            outcome: Outcome::Finished(report),
        });
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}
