//! The hit path: look the id up, refuse a wrong caller before anything
//! else, validate per policy (probe), and fall back to a restore.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use session_core::{Binding, SessionId, constant_time_eq};
use tracing::Instrument;

use super::{Inner, LiveOf, duration_ms};
use crate::cache::{Outcome, SentAt, shared};
use crate::error::{Error, Result};
use crate::factory::{SessionFactory, authorizes};
use crate::metrics::{self as m, inc};
use crate::policy::ValidationPolicy;

/// How many times one `get` goes round (stale hit, lost race, a flight
/// detached by a terminate, a flight started by another identity) before
/// giving up.
pub(super) const GET_ROUNDS: u32 = 8;

pub(super) enum Lookup<S> {
    Fresh(Arc<crate::factory::Live<S>>),
    Probe(Arc<crate::factory::Live<S>>),
    /// The cached session is bound to someone else: nothing was touched.
    Refused,
    Miss,
}

#[derive(Debug, thiserror::Error)]
#[error("the restore task panicked")]
pub(super) struct RestorePanicked;

impl<F: SessionFactory> Inner<F> {
    /// Whether every hit (and late joiner of a flight) must probe.
    pub(super) fn probes_every_access(&self) -> bool {
        match self.cfg.policy {
            ValidationPolicy::EveryAccess => true,
            ValidationPolicy::Push => !self.push_live.load(Ordering::Relaxed),
            ValidationPolicy::BoundedStaleness(_) => false,
        }
    }

    fn lookup(self: &Arc<Self>, id: &SessionId, caller: Option<&Binding>) -> Lookup<F::Session> {
        // Bounded staleness compares against validation times: read the
        // clock. Otherwise the coarse clock is precise enough.
        let now = if matches!(self.cfg.policy, ValidationPolicy::BoundedStaleness(_)) {
            self.now_ms()
        } else {
            self.coarse.load(Ordering::Relaxed).max(1)
        };
        let mut slide = false;
        let found = {
            let mut map = self.cache.shard(id);
            let Some(e) = map.get_mut(id).and_then(|s| s.entry.as_mut()) else {
                return Lookup::Miss;
            };
            if e.stale {
                return Lookup::Miss;
            }
            if let Some(c) = caller
                && !e.live.authorizes(c)
            {
                return Lookup::Refused;
            }
            e.last_access = now;
            e.referenced = true;
            // Slide when a quarter TTL (plus one coarse tick, so never more
            // often) has passed: with the tick at most a sixteenth of the
            // TTL, a used session slides at least once per half TTL.
            if now.saturating_sub(e.last_slide) >= self.cfg.slide_ms + self.tick_ms {
                e.last_slide = now;
                slide = true;
            }
            let probe = match self.cfg.policy {
                ValidationPolicy::EveryAccess => true,
                ValidationPolicy::BoundedStaleness(d) => {
                    e.epoch < self.epoch() || now.saturating_sub(e.last_validated) >= duration_ms(d)
                }
                ValidationPolicy::Push => {
                    !self.push_live.load(Ordering::Relaxed) || e.epoch < self.epoch()
                }
            };
            if probe {
                Lookup::Probe(e.live.clone())
            } else {
                Lookup::Fresh(e.live.clone())
            }
        };
        if slide {
            self.spawn_slide(id.clone());
        }
        found
    }

    fn authorize(id: &SessionId, live: LiveOf<F>, caller: Option<&Binding>) -> Result<LiveOf<F>> {
        match caller {
            Some(c) if !live.authorizes(c) => Err(Error::Forbidden { id: id.clone() }),
            _ => Ok(live),
        }
    }

    /// One version probe of a live session: `Ok(true)` current, `Ok(false)`
    /// newer exists (entry marked stale). A current entry counts as
    /// validated when the probe was sent, not when its reply arrived.
    async fn probe(&self, id: &SessionId, live: &LiveOf<F>) -> Result<bool> {
        self.probes.increment(1);
        let sent = self.sent_now();
        match self.timed(self.store.version(id)).await {
            Ok(Some(v)) if v == live.version() => {
                self.validated(id, live, sent);
                Ok(true)
            }
            Ok(Some(v)) => {
                if let Some(slot) = self.cache.shard(id).get_mut(id) {
                    slot.mark_stale(live, v);
                }
                Ok(false)
            }
            Ok(None) => {
                self.forget(id);
                Err(Error::NotFound { id: id.clone() })
            }
            Err(e) => Err(self.storage_error("version", e)),
        }
    }

    fn validated(&self, id: &SessionId, live: &LiveOf<F>, sent: SentAt) {
        if self.cfg.policy == ValidationPolicy::EveryAccess {
            return;
        }
        if let Some(slot) = self.cache.shard(id).get_mut(id) {
            slot.validated(live, sent);
        }
    }

    /// The hit path stays small and inline; everything else runs boxed in
    /// [`get_slow`](Self::get_slow), so a hit never moves a large future.
    pub(super) async fn get(
        self: &Arc<Self>,
        id: &SessionId,
        caller: Option<&Binding>,
        span: tracing::Span,
    ) -> Result<LiveOf<F>> {
        self.open()?;
        let first = span.in_scope(|| self.lookup(id, caller));
        let first = match first {
            Lookup::Fresh(live) => {
                self.hits.increment(1);
                return Ok(live);
            }
            Lookup::Refused => return Err(Error::Forbidden { id: id.clone() }),
            Lookup::Probe(live) if self.cfg.policy == ValidationPolicy::EveryAccess => {
                if self.probe(id, &live).await? {
                    self.hits.increment(1);
                    return Ok(live);
                }
                Lookup::Miss
            }
            other => other,
        };
        Box::pin(self.get_slow(id, caller, first).instrument(span)).await
    }

    async fn get_slow(
        self: &Arc<Self>,
        id: &SessionId,
        caller: Option<&Binding>,
        first: Lookup<F::Session>,
    ) -> Result<LiveOf<F>> {
        let mut first = Some(first);
        // Set once a flight led by another identity refused: this caller
        // then leads its own restore instead of joining theirs, so a flood
        // of wrong callers cannot use up its rounds.
        let mut take_over = false;
        for _ in 0..GET_ROUNDS {
            match first.take().unwrap_or_else(|| self.lookup(id, caller)) {
                Lookup::Fresh(live) => {
                    self.hits.increment(1);
                    return Ok(live);
                }
                Lookup::Refused => return Err(Error::Forbidden { id: id.clone() }),
                Lookup::Probe(live) => {
                    if self.probe(id, &live).await? {
                        self.hits.increment(1);
                        return Self::authorize(id, live, caller);
                    }
                }
                Lookup::Miss => {}
            }
            inc(m::MISSES);
            let (flight, late) = self.join(id, caller, take_over);
            let mut rx = flight.tx.subscribe();
            let outcome = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|o| o.clone())
                .unwrap_or(Outcome::Failed(Error::Build {
                    source: shared(RestorePanicked),
                }));
            match outcome {
                Outcome::Ready(live) => {
                    // A terminate or delete detached this flight: its result
                    // is never served, start over.
                    if flight.is_detached() {
                        continue;
                    }
                    // A caller that joined after the flight loaded may get a
                    // snapshot read before it started: re-validate it.
                    if late && self.probes_every_access() && !self.probe(id, &live).await? {
                        continue;
                    }
                    return Self::authorize(id, live, caller);
                }
                Outcome::Refused => {
                    let same = match (caller, flight.leader.as_ref()) {
                        (Some(c), Some(l)) => {
                            constant_time_eq(c.encode().as_bytes(), l.encode().as_bytes())
                        }
                        _ => false,
                    };
                    if same {
                        return Err(Error::Forbidden { id: id.clone() });
                    }
                    take_over = true;
                }
                Outcome::Retry => {}
                Outcome::Failed(e) => return Err(e),
            }
        }
        Err(Error::ConflictBudgetExhausted {
            id: id.clone(),
            attempts: GET_ROUNDS,
        })
    }
}

/// Whether `caller` may use a session with this stored metadata.
pub(super) fn refused(md: &session_core::Metadata, caller: Option<&Binding>) -> bool {
    caller.is_some_and(|c| !authorizes(md, c))
}
