//! The node-local cache: sharded [`Slot`]s and the eviction order.
//!
//! Everything here is synchronous and runs under at most one shard lock at
//! a time; no user code runs here. Sessions leaving the cache are returned
//! to the caller, which hands them to the closer.

mod slot;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_core::SessionId;

pub(crate) use slot::{Entry, Flight, Outcome, SentAt, Slot};

use crate::error::SharedError;
use crate::metrics::Cause;

const SHARDS: usize = 16;

/// One shard's map.
pub(crate) type Map<S> = HashMap<SessionId, Slot<S>>;

/// A build error shared by every waiter.
pub(crate) fn shared(e: impl std::error::Error + Send + Sync + 'static) -> SharedError {
    Arc::new(e)
}

/// Sessions to close once no lock is held.
pub(crate) type Closing<S> = Vec<(S, Cause)>;

pub(crate) struct Cache<S> {
    shards: Box<[Mutex<Map<S>>]>,
    seed: u64,
    len: AtomicUsize,
    gens: AtomicU64,
    ticks: AtomicU64,
    /// The eviction clock: cached entries in insertion order as
    /// `(id, tick)`. Elements whose entry is gone or was replaced are
    /// skipped when reached, and compacted away when they pile up.
    order: Mutex<VecDeque<(SessionId, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: Clone> Cache<S> {
    pub fn new() -> Self {
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            seed,
            len: AtomicUsize::new(0),
            gens: AtomicU64::new(1),
            ticks: AtomicU64::new(0),
            order: Mutex::new(VecDeque::new()),
        }
    }

    /// Picks a shard from the id's first and last 8 bytes (the map inside
    /// uses SipHash, so a crafted id can at worst crowd one shard's lock,
    /// not degrade lookups).
    fn index(&self, id: &SessionId) -> usize {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let b = id.as_str().as_bytes();
        let word = |s: &[u8]| s.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
        let mut h = self.seed ^ (b.len() as u64);
        h = (h ^ word(&b[..b.len().min(8)])).wrapping_mul(K);
        h = (h ^ word(&b[b.len().saturating_sub(8)..])).wrapping_mul(K);
        usize::try_from(h >> 60).unwrap_or(0) % SHARDS
    }

    pub fn shard(&self, id: &SessionId) -> MutexGuard<'_, Map<S>> {
        lock(&self.shards[self.index(id)])
    }

    pub fn next_gen(&self) -> u64 {
        self.gens.fetch_add(1, Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Slots in every shard (entries, flights and leased slots).
    pub fn slots(&self) -> usize {
        self.shards.iter().map(|m| lock(m).len()).sum()
    }

    /// The slot for `id`, created (with a fresh generation) if missing.
    pub fn slot<'m>(&self, map: &'m mut Map<S>, id: &SessionId) -> &'m mut Slot<S> {
        map.entry(id.clone())
            .or_insert_with(|| Slot::new(self.next_gen()))
    }

    /// A new entry for `live`, not yet in any slot.
    pub fn entry(&self, live: Arc<crate::factory::Live<S>>, now: u64, sent: SentAt) -> Entry<S> {
        Entry {
            live,
            last_access: now,
            last_validated: sent.at,
            last_slide: now,
            epoch: sent.epoch,
            stale: false,
            tick: self.ticks.fetch_add(1, Ordering::Relaxed),
            referenced: false,
        }
    }

    /// Puts `entry` in `slot`, returning the session it replaces (if any).
    /// The caller must call [`enqueue`](Self::enqueue) with the returned
    /// tick once the shard lock is released.
    pub fn put(&self, slot: &mut Slot<S>, entry: Entry<S>) -> Option<S> {
        let old = slot.entry.replace(entry);
        if old.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        old.map(|e| e.live.session().clone())
    }

    /// Adds an inserted entry to the eviction order (no shard lock held).
    pub fn enqueue(&self, id: &SessionId, tick: u64) {
        let compact = {
            let mut order = lock(&self.order);
            order.push_back((id.clone(), tick));
            order.len() > 2 * self.len() + 1024
        };
        if compact {
            self.compact();
        }
    }

    /// Drops eviction-order elements whose entry is gone or replaced:
    /// O(elements), run only after the queue doubled, so O(1) amortised.
    fn compact(&self) {
        let queued = std::mem::take(&mut *lock(&self.order));
        let kept: VecDeque<(SessionId, u64)> = queued
            .into_iter()
            .filter(|(id, tick)| {
                self.shard(id)
                    .get(id)
                    .and_then(|s| s.entry.as_ref())
                    .is_some_and(|e| e.tick == *tick)
            })
            .collect();
        let mut order = lock(&self.order);
        let newer = std::mem::replace(&mut *order, kept);
        order.extend(newer);
    }

    /// Takes the entry out of `slot`, returning its session.
    pub fn take(&self, slot: &mut Slot<S>) -> Option<S> {
        let old = slot.entry.take()?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(old.live.session().clone())
    }

    /// Removes the slot for `id` if nothing holds it.
    pub fn gc(map: &mut Map<S>, id: &SessionId) {
        if map.get(id).is_some_and(Slot::is_empty) {
            map.remove(id);
        }
    }

    /// Storage says `id` is gone (terminate, delete, a probe or load found
    /// nothing): bumps its generation, detaches its in-flight restore and
    /// takes its entry.
    pub fn invalidate(&self, id: &SessionId) -> Option<S> {
        let mut map = self.shard(id);
        let slot = map.get_mut(id)?;
        slot.bump_generation(self.next_gen());
        let s = self.take(slot);
        Self::gc(&mut map, id);
        s
    }

    /// Evicts entries until the cache holds at most `capacity`, never the
    /// entry for `keep` nor one with a restore in flight. A clock with
    /// second chance over the insertion order: an entry used since the
    /// hand last passed is moved to the back once. Each element is visited
    /// at most twice per insert, so the cost per insert does not grow with
    /// the cache.
    pub fn shrink_to(&self, capacity: usize, keep: &SessionId, out: &mut Closing<S>) {
        let mut budget = 2 * lock(&self.order).len() + 2;
        while self.len() > capacity && budget > 0 {
            budget -= 1;
            let Some((id, tick)) = lock(&self.order).pop_front() else {
                return;
            };
            let mut requeue = false;
            {
                let mut map = self.shard(&id);
                let Some(slot) = map.get_mut(&id) else {
                    continue;
                };
                match slot.entry.as_mut() {
                    Some(e) if e.tick == tick => {
                        if &id == keep || slot.flight.is_some() || e.referenced {
                            e.referenced = false;
                            requeue = true;
                        } else if let Some(s) = self.take(slot) {
                            out.push((s, Cause::Capacity));
                        }
                    }
                    _ => {}
                }
                Self::gc(&mut map, &id);
            }
            if requeue {
                lock(&self.order).push_back((id, tick));
            }
        }
    }

    /// Removes entries not accessed since `before` (ms). A periodic sweep:
    /// visits every entry.
    pub fn expire_idle(&self, before: u64, out: &mut Closing<S>) {
        for shard in &*self.shards {
            let mut map = lock(shard);
            let idle: Vec<SessionId> = map
                .iter()
                .filter(|(_, s)| {
                    s.flight.is_none() && s.entry.as_ref().is_some_and(|e| e.last_access < before)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in idle {
                if let Some(slot) = map.get_mut(&id)
                    && let Some(s) = self.take(slot)
                {
                    out.push((s, Cause::Idle));
                }
                Self::gc(&mut map, &id);
            }
        }
    }

    /// Takes every entry (shutdown, drop).
    pub fn drain(&self, out: &mut Closing<S>) {
        for shard in &*self.shards {
            let mut map = lock(shard);
            for slot in map.values_mut() {
                slot.bump_generation(self.next_gen());
                if let Some(s) = self.take(slot) {
                    out.push((s, Cause::Shutdown));
                }
            }
            map.retain(|_, s| !s.is_empty());
        }
        lock(&self.order).clear();
    }

    /// Whether no shard lock is currently held (diagnostics for tests).
    pub fn unlocked(&self) -> bool {
        self.shards.iter().all(|m| m.try_lock().is_ok())
    }
}

/// Holds `id`'s slot open for an activation between reading its
/// generation and caching the result; releases it on drop, also when the
/// activation is cancelled or panics.
pub(crate) struct Lease<'c, S: Clone> {
    cache: &'c Cache<S>,
    id: SessionId,
    generation: u64,
}

impl<'c, S: Clone> Lease<'c, S> {
    pub fn take(cache: &'c Cache<S>, id: &SessionId) -> Self {
        let mut map = cache.shard(id);
        let slot = cache.slot(&mut map, id);
        slot.leases += 1;
        let generation = slot.generation();
        Self {
            cache,
            id: id.clone(),
            generation,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl<S: Clone> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        let mut map = self.cache.shard(&self.id);
        if let Some(slot) = map.get_mut(&self.id) {
            slot.leases = slot.leases.saturating_sub(1);
        }
        Cache::gc(&mut map, &self.id);
    }
}
