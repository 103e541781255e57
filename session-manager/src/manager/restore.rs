//! Single-flight restore: join or launch the one restore of an id on this
//! node, load (or peek, for a caller-bound restore), adopt or build, cache.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::FutureExt;
use session_core::{Binding, SessionId, Snapshot, Update, Version, constant_time_eq, keys};
use tracing::Instrument;

use super::validate::{RestorePanicked, refused};
use super::{Inner, LiveOf};
use crate::cache::{Cache, Flight, Outcome, SentAt, shared};
use crate::closer::Pending;
use crate::error::Error;
use crate::factory::{BuildCause, Live, SessionFactory};
use crate::metrics::{self as m, Cause, inc};

/// How many times one restore retries after losing a race.
const RESTORE_ATTEMPTS: u32 = 4;

impl<F: SessionFactory> Inner<F> {
    /// Joins the in-flight restore for `id` or starts one. The flag tells
    /// whether the flight had already begun loading. With `take_over`, a
    /// flight led by another identity is replaced by one this caller leads.
    pub(super) fn join(
        self: &Arc<Self>,
        id: &SessionId,
        caller: Option<&Binding>,
        take_over: bool,
    ) -> (Arc<Flight<F::Session>>, bool) {
        let flight = {
            let mut map = self.cache.shard(id);
            let slot = self.cache.slot(&mut map, id);
            if let Some(f) = &slot.flight {
                let foreign = take_over
                    && f.leader.as_ref().is_some_and(|l| {
                        caller.is_none_or(|c| {
                            !constant_time_eq(c.encode().as_bytes(), l.encode().as_bytes())
                        })
                    });
                if !foreign {
                    return (f.clone(), f.loading.load(Ordering::SeqCst));
                }
            }
            let f = Arc::new(Flight::new(caller.cloned(), false));
            slot.flight = Some(f.clone());
            f
        };
        self.launch(id.clone(), flight.clone());
        (flight, false)
    }

    /// Runs a flight in its own task, so a waiter giving up (its own
    /// timeout, a dropped request) never cancels the restore others wait
    /// for. A panic in it (a panicking `build`) fails the flight only.
    pub(super) fn launch(self: &Arc<Self>, id: SessionId, flight: Arc<Flight<F::Session>>) {
        self.flights.fetch_add(1, Ordering::SeqCst);
        let inner = self.clone();
        let span = tracing::info_span!("session_manager.restore", session_id = %id);
        tokio::spawn(
            async move {
                let outcome = AssertUnwindSafe(inner.restore(&id, &flight))
                    .catch_unwind()
                    .await
                    .unwrap_or(Outcome::Failed(Error::Build {
                        source: shared(RestorePanicked),
                    }));
                {
                    let mut map = inner.cache.shard(&id);
                    if let Some(slot) = map.get_mut(&id)
                        && slot
                            .flight
                            .as_ref()
                            .is_some_and(|f| Arc::ptr_eq(f, &flight))
                    {
                        slot.flight = None;
                    }
                    Cache::gc(&mut map, &id);
                }
                flight.tx.send_replace(Some(outcome));
                inner.flights.fetch_sub(1, Ordering::SeqCst);
                inner.flight_ended.notify_waiters();
            }
            .instrument(span),
        );
    }

    async fn restore(
        self: &Arc<Self>,
        id: &SessionId,
        flight: &Flight<F::Session>,
    ) -> Outcome<F::Session> {
        let started = Instant::now();
        let out = self.restore_attempts(id, flight).await;
        metrics::histogram!(m::RESTORE_SECONDS).record(started.elapsed().as_secs_f64());
        match &out {
            Outcome::Ready(_) => inc(m::RESTORES),
            Outcome::Failed(_) => inc(m::RESTORE_FAILURES),
            Outcome::Refused | Outcome::Retry => {}
        }
        out
    }

    /// The generation of `id`'s slot (created if missing).
    pub(super) fn generation(&self, id: &SessionId) -> u64 {
        let mut map = self.cache.shard(id);
        self.cache.slot(&mut map, id).generation()
    }

    fn floor(&self, id: &SessionId) -> Version {
        self.cache
            .shard(id)
            .get(id)
            .map_or(Version::new(0), crate::cache::Slot::floor)
    }

    fn cached_live(&self, id: &SessionId) -> Option<LiveOf<F>> {
        let map = self.cache.shard(id);
        map.get(id)
            .and_then(|s| s.entry.as_ref())
            .map(|e| e.live.clone())
    }

    #[allow(clippy::too_many_lines)]
    async fn restore_attempts(
        self: &Arc<Self>,
        id: &SessionId,
        flight: &Flight<F::Session>,
    ) -> Outcome<F::Session> {
        let mut confirming = false;
        for _ in 0..RESTORE_ATTEMPTS {
            if self.is_shut() {
                return Outcome::Failed(Error::ShutDown);
            }
            let generation = self.generation(id);
            let sent = self.sent_now();
            flight.loading.store(true, Ordering::SeqCst);
            // A caller-bound restore reads without sliding, and slides only
            // once the caller is known to be bound to the session.
            let read = if flight.leader.is_some() {
                self.timed(self.store.peek(id)).await
            } else {
                self.timed(self.store.load(id)).await
            };
            let stored = match read {
                Ok(Some(rec)) => rec.into_snapshot(id.clone()),
                Ok(None) => {
                    self.forget(id);
                    return Outcome::Failed(Error::NotFound { id: id.clone() });
                }
                Err(e) => return Outcome::Failed(self.storage_error("load", e)),
            };
            if !stored.metadata.contains_key(keys::BACKEND_IDS) {
                return Outcome::Failed(Error::NotReady { id: id.clone() });
            }
            if refused(&stored.metadata, flight.leader.as_ref()) {
                return Outcome::Refused;
            }
            if flight.leader.is_some() {
                self.spawn_slide(id.clone());
            }
            if stored.version < self.floor(id) {
                if !confirming {
                    // Storage is behind what this node has seen: confirm
                    // with a load sent now that the floor is known.
                    confirming = true;
                    continue;
                }
                self.accept_rewind(id, generation, stored.version);
            }
            let current = self.cached_live(id);
            if let Some(old) = &current
                && old.version() <= stored.version
                && self.still_matches(old.snapshot(), &stored)
            {
                match self.adopt(id, old, &stored, generation, sent) {
                    Some(live) => return Outcome::Ready(live),
                    None => continue,
                }
            }
            if flight.refresh_only {
                // A background refresh never builds: the next get does.
                let taken = {
                    let mut map = self.cache.shard(id);
                    let taken = map
                        .get_mut(id)
                        .and_then(|slot| match (&slot.entry, &current) {
                            (Some(e), Some(old)) if Arc::ptr_eq(&e.live, old) => {
                                self.cache.take(slot)
                            }
                            _ => None,
                        });
                    Cache::gc(&mut map, id);
                    taken
                };
                if let Some(s) = taken {
                    self.closer.close(s, Cause::Replaced);
                }
                return Outcome::Retry;
            }
            let built = match self.factory.build(&stored, BuildCause::Restore).await {
                Ok(b) => b,
                Err(e) => return Outcome::Failed(Error::Build { source: shared(e) }),
            };
            let pending = Pending::new(built.session, &self.closer);
            metrics::counter!(m::BUILDS, "cause" => "restore").increment(1);
            let mut snapshot = Snapshot {
                id: id.clone(),
                version: stored.version,
                metadata: built.metadata,
            };
            let mut stale = false;
            if snapshot.metadata != stored.metadata {
                // Write back what the build changed (new backend session ids).
                match self
                    .timed(self.store.update(id, stored.version, &snapshot.metadata))
                    .await
                {
                    Ok(Update::Applied(v)) => snapshot.version = v,
                    Ok(Update::Conflict { .. }) => stale = true,
                    Ok(Update::Missing) => {
                        self.forget(id);
                        return Outcome::Failed(Error::NotFound { id: id.clone() });
                    }
                    Err(e) => {
                        self.storage_error("update", e);
                        stale = true;
                    }
                }
            }
            let live = Arc::new(Live::new(snapshot, pending.session()));
            if self.insert(id, &live, generation, sent, stale) {
                pending.keep();
                return Outcome::Ready(live);
            }
            inc(m::RESTORES_DISCARDED);
        }
        Outcome::Failed(Error::ConflictBudgetExhausted {
            id: id.clone(),
            attempts: RESTORE_ATTEMPTS,
        })
    }

    /// Storage holds an older version than this node has seen, confirmed by
    /// a second load (a failover that lost acknowledged writes): accept it
    /// rather than restoring on every access forever.
    fn accept_rewind(&self, id: &SessionId, generation: u64, version: Version) {
        static LOGGED: AtomicBool = AtomicBool::new(false);
        let mut map = self.cache.shard(id);
        let Some(slot) = map.get_mut(id) else { return };
        if slot.generation() != generation || version >= slot.floor() {
            return;
        }
        let seen = slot.floor();
        slot.lower_floor(version);
        inc(m::VERSION_REWINDS);
        if !LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                session_id = %id, seen = %seen, stored = %version,
                "storage went back to an older version (lost writes?): accepting it; \
                 later rewinds are only counted in session_manager_version_rewinds_total"
            );
        }
    }

    /// Keeps `old`'s live session for the newer `stored` snapshot, if the
    /// entry is still `old` and no terminate/delete happened since `generation`.
    fn adopt(
        &self,
        id: &SessionId,
        old: &LiveOf<F>,
        stored: &Snapshot,
        generation: u64,
        sent: SentAt,
    ) -> Option<LiveOf<F>> {
        let mut map = self.cache.shard(id);
        let slot = map.get_mut(id)?;
        if slot.generation() != generation || self.is_shut() {
            return None;
        }
        let live = slot.adopt(old, stored, sent)?;
        inc(m::ADOPTIONS);
        Some(live)
    }

    /// Caches a freshly built session unless a terminate or delete changed
    /// the generation since `generation` was read (then the caller's
    /// [`Pending`] guard closes it). Entries evicted for capacity go to the
    /// closer; nothing here awaits.
    pub(super) fn insert(
        &self,
        id: &SessionId,
        live: &LiveOf<F>,
        generation: u64,
        sent: SentAt,
        stale: bool,
    ) -> bool {
        let now = self.now_ms();
        let (replaced, tick) = {
            let mut map = self.cache.shard(id);
            let Some(slot) = map.get_mut(id) else {
                return false;
            };
            if slot.generation() != generation || self.is_shut() {
                return false;
            }
            let mut entry = self.cache.entry(live.clone(), now, sent);
            entry.stale = stale || live.version() < slot.floor();
            let tick = entry.tick;
            let replaced = self.cache.put(slot, entry);
            slot.raise_floor(live.version());
            (replaced, tick)
        };
        if let Some(old) = replaced {
            self.closer.close(old, Cause::Replaced);
        }
        self.cache.enqueue(id, tick);
        if self.cache.len() > self.cfg.capacity {
            let mut closing = Vec::new();
            self.cache.shrink_to(self.cfg.capacity, id, &mut closing);
            self.closer.close_all(closing);
        }
        true
    }
}
