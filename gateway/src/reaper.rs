//! Deleting backend sessions once when their client session ends, whether
//! a client terminated it (`DELETE`) or it expired in storage.
//!
//! Storage deletes an expired session without telling anyone (stores do
//! not report expiry), and afterwards its record, which named the backend
//! sessions, is gone. So every node remembers, outside the live-session
//! cache (whose idle eviction comes long before a session's TTL), which
//! backend session ids it has used for which client session
//! ([`Reaper::note`]). A periodic sweep ([`run`]) asks storage, one
//! `version` read per remembered session, whether each still exists; for
//! one that does not, it deletes the backend sessions it remembers.
//!
//! Several nodes may remember the same backend session, and a client's
//! `DELETE` on one node races the others' sweeps. Every backend-session
//! `DELETE` the gateway sends is therefore preceded by a claim
//! ([`delete_once`]): a `create` in the store under an id derived from
//! (client session, backend, backend session id). `create` never
//! overwrites, so exactly one node wins and sends the `DELETE`; the others
//! skip it. Claims are small records with the store's TTL (they expire on
//! their own); `sessions list` hides them ([`is_claim`]).
//!
//! Limits: a node that crashes forgets what it remembered (a session it
//! alone served then leaks its backend sessions to the backend's own idle
//! timeout); a node cut off from storage for longer than the store TTL
//! could claim again after the first claim expired.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use session_core::{Metadata, SessionId, SessionStore, Ttl, WorkloadId, keys};
use tokio_util::sync::CancellationToken;

use crate::backend;
use crate::config::BackendSpec;

/// Id prefix of claim records.
pub const CLAIM_PREFIX: &str = "gateway.claim.";
/// Metadata key of a claim record: `SESSION BACKEND` it was taken for.
pub const CLAIM_KEY: &str = "gateway.claim";

/// Whether a stored id is a claim record, not a client session.
pub fn is_claim(id: &SessionId) -> bool {
    id.as_str().starts_with(CLAIM_PREFIX)
}

/// The claim id for deleting backend session `sid` of `backend` for client
/// session `session`: the same on every node and every build (FNV-1a,
/// 128 bits, over the three parts separated by NUL).
pub fn claim_id(session: &SessionId, backend: &WorkloadId, sid: &str) -> SessionId {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut h = OFFSET;
    for part in [session.as_str(), backend.as_str(), sid] {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    SessionId::parse(&format!("{CLAIM_PREFIX}{h:032x}")).expect("printable ASCII, 46 bytes")
}

/// What [`delete_once`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteReport {
    /// Claims won and `DELETE`s that succeeded (or found the session gone).
    pub deleted: usize,
    /// Claims another node (or an earlier call) already held: not sent.
    pub skipped: usize,
    /// Claims or `DELETE`s that failed (storage or backend errors).
    pub failed: usize,
}

/// Deletes each `(backend, backend session id)` of client session
/// `session`, each only if this call wins its claim in `store`.
pub async fn delete_once(
    store: &dyn SessionStore,
    http: &reqwest::Client,
    backends: &[BackendSpec],
    session: &SessionId,
    pairs: &[(WorkloadId, String)],
) -> DeleteReport {
    let each = pairs.iter().map(|(w, sid)| async move {
        let Some(spec) = backends.iter().find(|b| &b.name == w) else {
            return Outcome::Skipped; // not a backend of this node's config
        };
        let claim = claim_id(session, w, sid);
        let md = Metadata::new()
            .with(CLAIM_KEY, format!("{session} {w}"))
            .expect("a small value");
        match store.create(&claim, &md, Ttl::Default).await {
            Ok(Some(_)) => {}
            Ok(None) => return Outcome::Skipped,
            Err(e) => {
                tracing::warn!(backend = %w, error = %e, "claiming a backend session for deletion failed");
                return Outcome::Failed;
            }
        }
        match backend::delete_backend_session(http, &spec.url, sid).await {
            Ok(()) => Outcome::Deleted,
            Err(e) => {
                tracing::warn!(backend = %w, error = %e, "deleting a backend session failed");
                Outcome::Failed
            }
        }
    });
    let mut report = DeleteReport::default();
    for o in join_all(each).await {
        match o {
            Outcome::Deleted => report.deleted += 1,
            Outcome::Skipped => report.skipped += 1,
            Outcome::Failed => report.failed += 1,
        }
    }
    report
}

enum Outcome {
    Deleted,
    Skipped,
    Failed,
}

/// The backend sessions `md` records, as `(backend, id)` pairs.
pub fn recorded(md: &Metadata) -> Vec<(WorkloadId, String)> {
    keys::backend_ids(md)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|w| {
            let sid = keys::backend_session(md, &w)?.to_owned();
            (!sid.is_empty()).then_some((w, sid))
        })
        .collect()
}

/// What one node remembers: client session → backend → backend session id.
#[derive(Debug, Default)]
pub struct Reaper {
    known: Mutex<HashMap<SessionId, BTreeMap<WorkloadId, String>>>,
}

impl Reaper {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, BTreeMap<WorkloadId, String>>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that session `id` uses backend session `sid` of `backend`
    /// (replacing what was remembered for that backend: a replaced backend
    /// session is deleted when it is replaced).
    pub fn note(&self, id: &SessionId, backend: &WorkloadId, sid: &str) {
        if sid.is_empty() {
            return;
        }
        let mut known = self.known();
        let entry = known.entry(id.clone()).or_default();
        if entry.get(backend).map(String::as_str) != Some(sid) {
            entry.insert(backend.clone(), sid.to_owned());
        }
    }

    /// Forgets session `id` (its backend sessions were handled), returning
    /// what was remembered.
    pub fn forget(&self, id: &SessionId) -> Vec<(WorkloadId, String)> {
        self.known()
            .remove(id)
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// Sessions remembered on this node.
    pub fn len(&self) -> usize {
        self.known().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sessions remembered now.
    fn ids(&self) -> Vec<SessionId> {
        self.known().keys().cloned().collect()
    }
}

/// One sweep: every remembered session that storage no longer has is
/// forgotten, and its backend sessions deleted once across nodes. Returns
/// the ids found gone (the caller drops its node-local state for them).
/// A storage error leaves a session remembered for the next sweep.
pub async fn sweep(
    reaper: &Reaper,
    store: &dyn SessionStore,
    http: &reqwest::Client,
    backends: &[BackendSpec],
) -> Vec<SessionId> {
    let mut gone = Vec::new();
    for id in reaper.ids() {
        match store.version(&id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let pairs = reaper.forget(&id);
                let r = delete_once(store, http, backends, &id, &pairs).await;
                if r.deleted > 0 || r.failed > 0 {
                    tracing::info!(session_id = %id, deleted = r.deleted, failed = r.failed,
                        "client session gone from storage: deleted its backend sessions");
                }
                gone.push(id);
            }
            Err(e) => {
                tracing::debug!(session_id = %id, error = %e, "reaper: storage error, retrying next sweep");
            }
        }
    }
    gone
}

/// Runs [`sweep`] every `period` until `stop`; `on_gone` gets the sessions
/// found gone (to close this node's rmcp workers and cached sessions).
pub async fn run(
    reaper: Arc<Reaper>,
    store: Arc<dyn SessionStore>,
    http: reqwest::Client,
    backends: Vec<BackendSpec>,
    period: Duration,
    stop: CancellationToken,
    on_gone: impl AsyncFn(Vec<SessionId>),
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let gone = sweep(&reaper, &*store, &http, &backends).await;
        if !gone.is_empty() {
            on_gone(gone).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_stable_distinct_and_valid() {
        let s = SessionId::parse("s-1").unwrap();
        let w = WorkloadId::parse("math").unwrap();
        let a = claim_id(&s, &w, "b-1");
        assert_eq!(a, claim_id(&s, &w, "b-1"));
        assert_ne!(a, claim_id(&s, &w, "b-2"));
        // The separator keeps ("s-1", "math", …) apart from ("s-1m", "ath", …).
        let s2 = SessionId::parse("s-1m").unwrap();
        let w2 = WorkloadId::parse("ath").unwrap();
        assert_ne!(a, claim_id(&s2, &w2, "b-1"));
        assert!(is_claim(&a));
        assert!(!is_claim(&s));
        // Pinned: every node and every build must derive the same id.
        assert_eq!(a.as_str(), "gateway.claim.c45bf4242c00ac687cb415ad730beb6a");
    }

    #[test]
    fn note_keeps_the_latest_backend_session_per_backend() {
        let r = Reaper::default();
        let s = SessionId::parse("s").unwrap();
        let w = WorkloadId::parse("math").unwrap();
        r.note(&s, &w, "");
        assert!(r.is_empty());
        r.note(&s, &w, "b-1");
        r.note(&s, &w, "b-2");
        assert_eq!(r.forget(&s), vec![(w, "b-2".to_owned())]);
        assert!(r.is_empty());
    }
}
