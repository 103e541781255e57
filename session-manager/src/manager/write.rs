//! Compare-and-set writes: the retry loop behind `update`, backend expiry
//! (one session, and every session via scan), and what a local write does
//! to the cached entry.

use std::cell::Cell;
use std::time::Duration;

use session_core::{
    Metadata, SessionId, Snapshot, Ttl, Update, Version, WorkloadId, WriteId, keys,
};

use super::Inner;
use crate::cache::{Cache, SentAt};
use crate::error::{Error, Result};
use crate::factory::{Live, SessionFactory};
use crate::metrics::{self as m, Cause, inc};

/// Scan page size of `evict_backend`.
const SCAN_PAGE: usize = 256;

/// What [`SessionManager::notify_backend_expired`](crate::SessionManager::notify_backend_expired) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendExpiry {
    /// The backend was removed; the session now has this snapshot.
    Removed(Snapshot),
    /// The session does not hold that backend (already removed): nothing written.
    NotPresent,
    /// The session no longer exists.
    SessionGone,
}

/// What [`SessionManager::evict_backend`](crate::SessionManager::evict_backend) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkReport {
    /// Sessions visited.
    pub scanned: usize,
    /// Sessions the backend was removed from.
    pub removed: usize,
    /// Sessions whose update failed (storage errors, exhausted CAS budget).
    pub failed: usize,
}

/// The result of a compare-and-set loop.
pub(super) enum Written {
    /// The edit asked for no change: nothing was written.
    Unchanged(Snapshot),
    Applied(Snapshot),
}

impl Written {
    pub(super) fn into_snapshot(self) -> Snapshot {
        match self {
            Self::Unchanged(s) | Self::Applied(s) => s,
        }
    }
}

impl<F: SessionFactory> Inner<F> {
    /// Reads an active session without sliding its TTL (a write slides it;
    /// an edit that changes nothing does not); a missing one is forgotten.
    async fn read_active(&self, id: &SessionId) -> Result<Snapshot> {
        match self.timed(self.store.peek(id)).await {
            Ok(Some(rec)) if rec.metadata.contains_key(keys::BACKEND_IDS) => {
                Ok(rec.into_snapshot(id.clone()))
            }
            Ok(Some(_)) => Err(Error::NotReady { id: id.clone() }),
            Ok(None) => {
                self.forget(id);
                Err(Error::NotFound { id: id.clone() })
            }
            Err(e) => Err(self.storage_error("load", e)),
        }
    }

    /// The CAS loop behind `update` and `notify_backend_expired`: `edit`
    /// returns the new metadata, or `None` for "no change".
    pub(super) async fn compare_and_set(
        &self,
        id: &SessionId,
        mut edit: impl FnMut(&Snapshot) -> Result<Option<Metadata>> + Send,
    ) -> Result<Written> {
        self.open()?;
        let mut current = self.read_active(id).await?;
        for attempt in 0..self.cfg.cas_retries {
            let Some(md) = edit(&current)? else {
                return Ok(Written::Unchanged(current));
            };
            let sent = self.sent_now();
            // A new write id per edit: a conflict means a genuine other
            // writer, so the edit is redone on what it wrote.
            match self.update_exactly_once(id, current.version, &md).await {
                Ok(Update::Applied(version)) => {
                    let snapshot = Snapshot {
                        id: id.clone(),
                        version,
                        metadata: md,
                    };
                    self.after_write(id, &snapshot, sent);
                    return Ok(Written::Applied(snapshot));
                }
                Ok(Update::Conflict { .. }) => {
                    inc(m::CAS_CONFLICTS);
                    backoff(self.cfg.cas_backoff, attempt).await;
                    current = self.read_active(id).await?;
                }
                Ok(Update::Missing) => {
                    self.forget(id);
                    return Err(Error::NotFound { id: id.clone() });
                }
                Err(e) => return Err(self.storage_error("update", e)),
            }
        }
        Err(Error::ConflictBudgetExhausted {
            id: id.clone(),
            attempts: self.cfg.cas_retries,
        })
    }

    /// One logical update: tried again with the same [`WriteId`] after a
    /// transient error (the reply may have been lost after the store
    /// applied it), so a retry reports the original outcome instead of a
    /// conflict with itself, and the write is applied at most once.
    pub(super) async fn update_exactly_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
    ) -> session_core::Result<Update> {
        self.same_write("update", |w| async move {
            self.store.update_once(id, expected, metadata, &w).await
        })
        .await
    }

    /// One logical create, retried like [`Self::update_exactly_once`]: a
    /// retry of a create that was applied reports its version, not "taken".
    pub(super) async fn create_exactly_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
    ) -> session_core::Result<Option<Version>> {
        self.same_write("create", |w| async move {
            self.store.create_once(id, metadata, ttl, &w).await
        })
        .await
    }

    /// Runs `write` under one fresh [`WriteId`], and again with the same id
    /// after a transient error, at most `write_retries` more times.
    async fn same_write<T, Fut>(
        &self,
        op: &'static str,
        write: impl Fn(WriteId) -> Fut,
    ) -> session_core::Result<T>
    where
        Fut: std::future::Future<Output = session_core::Result<T>>,
    {
        let id = WriteId::generate();
        let mut attempt = 0;
        loop {
            match self.timed(write(id)).await {
                Err(e) if e.is_transient() && attempt < self.cfg.write_retries => {
                    metrics::counter!(m::WRITE_RETRIES, "op" => op).increment(1);
                    tracing::debug!(op, attempt, error = %e, "write retried with the same write id");
                    backoff(self.cfg.write_backoff, attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// After a local write (sent at `sent`): the cached entry adopts it if
    /// the live session still matches, else it is evicted (closed on the
    /// closer). `matches` runs outside the lock.
    fn after_write(&self, id: &SessionId, snapshot: &Snapshot, sent: SentAt) {
        let cached = {
            let mut map = self.cache.shard(id);
            let Some(slot) = map.get_mut(id) else { return };
            slot.raise_floor(snapshot.version);
            match &slot.entry {
                Some(e) if e.live.version() < snapshot.version => e.live.clone(),
                _ => return,
            }
        };
        let keep = self.still_matches(cached.snapshot(), snapshot);
        let replaced = {
            let mut map = self.cache.shard(id);
            let Some(slot) = map.get_mut(id) else { return };
            if !slot
                .entry
                .as_ref()
                .is_some_and(|e| std::sync::Arc::ptr_eq(&e.live, &cached))
            {
                return;
            }
            if keep {
                let floor = slot.floor();
                if let Some(e) = slot.entry.as_mut() {
                    e.live =
                        std::sync::Arc::new(Live::new(snapshot.clone(), cached.session().clone()));
                    e.stale = snapshot.version < floor;
                    e.last_validated = sent.at;
                    inc(m::ADOPTIONS);
                }
                None
            } else {
                let s = self.cache.take(slot);
                Cache::gc(&mut map, id);
                s
            }
        };
        if let Some(s) = replaced {
            self.closer.close(s, Cause::Replaced);
        }
    }

    pub(super) async fn remove_backend(
        &self,
        id: &SessionId,
        workload: &WorkloadId,
    ) -> Result<super::BackendExpiry> {
        let out = self
            .compare_and_set(id, |s| {
                let listed = keys::backend_ids(&s.metadata).map_err(Error::edit)?;
                if !listed.contains(workload) {
                    return Ok(None);
                }
                keys::without_backend(&s.metadata, workload)
                    .map(Some)
                    .map_err(Error::edit)
            })
            .await;
        match out {
            Ok(Written::Applied(s)) => Ok(BackendExpiry::Removed(s)),
            Ok(Written::Unchanged(_)) => Ok(BackendExpiry::NotPresent),
            Err(Error::NotFound { .. }) => Ok(BackendExpiry::SessionGone),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn evict_backend(&self, workload: &WorkloadId) -> Result<BulkReport> {
        self.open()?;
        let mut report = BulkReport::default();
        let mut cursor = None;
        loop {
            let page = self
                .timed(self.store.scan(cursor.as_ref(), SCAN_PAGE))
                .await
                .map_err(|e| self.storage_error("scan", e))?;
            for id in &page.ids {
                report.scanned += 1;
                match self.remove_backend(id, workload).await {
                    Ok(BackendExpiry::Removed(_)) => report.removed += 1,
                    Ok(_) | Err(Error::NotReady { .. }) => {}
                    Err(_) => report.failed += 1,
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(report),
            }
        }
    }
}

/// A uniformly random duration in `0..=max` (xorshift, per thread).
fn jitter(max: Duration) -> Duration {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8) | 1
        );
    }
    let r = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(if nanos == 0 { 0 } else { r % (nanos + 1) })
}

/// Waits a jittered `base * 2^attempt` (the exponent capped at 6), or only
/// yields when `base` is zero.
async fn backoff(base: Duration, attempt: u32) {
    if base.is_zero() {
        tokio::task::yield_now().await;
        return;
    }
    let max = base.saturating_mul(1 << attempt.min(6));
    tokio::time::sleep(jitter(max)).await;
}
