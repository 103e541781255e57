//! The node-local cache: sharded slots holding the live entry, the
//! in-flight restore and the generation guard of each session id.
//!
//! Everything here is synchronous and runs under one shard lock at a time;
//! callers collect the sessions to close and close them after the lock is
//! released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_core::{Binding, SessionId, Version};
use tokio::sync::watch;

use crate::error::{Error, SharedError};
use crate::factory::Live;
use crate::metrics::Cause;

const SHARDS: usize = 16;

/// One shard's map.
pub(crate) type Map<S> = HashMap<SessionId, Slot<S>>;

/// Per-id state. A slot exists while it holds an entry or a flight.
pub(crate) struct Slot<S> {
    /// Replaced by a fresh, never reused value on every terminate and every
    /// delete (local or from the change stream). A restore captures it
    /// before loading and inserts only if it is unchanged.
    pub generation: u64,
    /// The highest version known to be written; a restore that loaded an
    /// older one is inserted as stale.
    pub floor: Version,
    pub entry: Option<Entry<S>>,
    pub flight: Option<Arc<Flight<S>>>,
}

/// A cached live session.
pub(crate) struct Entry<S> {
    pub live: Arc<Live<S>>,
    /// Milliseconds since the manager started.
    pub last_access: u64,
    pub last_validated: u64,
    pub last_slide: u64,
    /// The resync epoch the entry was last validated in.
    pub epoch: u64,
    /// A newer version exists: never served before a restore adopts or replaces it.
    pub stale: bool,
    /// LRU order.
    pub tick: u64,
}

/// The shared outcome of one single-flight restore.
pub(crate) enum Outcome<S> {
    Ready(Arc<Live<S>>),
    /// The flight's leader is not bound to the session; nothing was built.
    Refused,
    /// Start over (a background refresh found a mismatch and evicted).
    Retry,
    Failed(Error),
}

impl<S> Clone for Outcome<S> {
    fn clone(&self) -> Self {
        match self {
            Self::Ready(l) => Self::Ready(l.clone()),
            Self::Refused => Self::Refused,
            Self::Retry => Self::Retry,
            Self::Failed(e) => Self::Failed(e.clone()),
        }
    }
}

/// An in-flight restore that callers wait on.
pub(crate) struct Flight<S> {
    pub tx: watch::Sender<Option<Outcome<S>>>,
    /// Set before the flight first loads: a caller that joins afterwards may
    /// get a result read before it started.
    pub loading: AtomicBool,
    /// The identity of the caller that started it (checked before building).
    pub leader: Option<Binding>,
    /// A background refresh after a change event: adopt or evict, never build.
    pub refresh_only: bool,
}

impl<S> Flight<S> {
    pub fn new(leader: Option<Binding>, refresh_only: bool) -> Self {
        Self {
            tx: watch::channel(None).0,
            loading: AtomicBool::new(false),
            leader,
            refresh_only,
        }
    }
}

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

    pub fn next_tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// A new empty slot with a fresh generation.
    pub fn new_slot(&self) -> Slot<S> {
        Slot {
            generation: self.next_gen(),
            floor: Version::new(0),
            entry: None,
            flight: None,
        }
    }

    /// Puts `entry` in `slot`, returning the session it replaces (if any).
    pub fn put(&self, slot: &mut Slot<S>, entry: Entry<S>) -> Option<S> {
        let old = slot.entry.replace(entry);
        if old.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        old.map(|e| e.live.session().clone())
    }

    /// Takes the entry out of `slot`, returning its session.
    pub fn take(&self, slot: &mut Slot<S>) -> Option<S> {
        let old = slot.entry.take()?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(old.live.session().clone())
    }

    /// Removes the slot for `id` if it holds neither an entry nor a flight.
    pub fn gc(map: &mut Map<S>, id: &SessionId) {
        if map
            .get(id)
            .is_some_and(|s| s.entry.is_none() && s.flight.is_none())
        {
            map.remove(id);
        }
    }

    /// Bumps `id`'s generation (if it has a slot) and takes its entry.
    pub fn invalidate(&self, id: &SessionId) -> Option<S> {
        let mut map = self.shard(id);
        let slot = map.get_mut(id)?;
        slot.generation = self.next_gen();
        let s = self.take(slot);
        Self::gc(&mut map, id);
        s
    }

    /// Removes least-recently used entries until the cache holds at most
    /// `capacity`, never the entry for `keep`. Finds the global LRU entry by
    /// visiting every shard (one lock at a time): O(cached entries) per
    /// eviction, paid only by inserts beyond capacity.
    pub fn shrink_to(&self, capacity: usize, keep: &SessionId, out: &mut Closing<S>) {
        while self.len() > capacity {
            let mut oldest: Option<(usize, u64, SessionId)> = None;
            for (i, shard) in self.shards.iter().enumerate() {
                let map = lock(shard);
                for (id, slot) in map.iter() {
                    if let Some(e) = &slot.entry
                        && id != keep
                        && slot.flight.is_none()
                        && oldest.as_ref().is_none_or(|(_, t, _)| e.tick < *t)
                    {
                        oldest = Some((i, e.tick, id.clone()));
                    }
                }
            }
            let Some((i, tick, id)) = oldest else { return };
            let mut map = lock(&self.shards[i]);
            if let Some(slot) = map.get_mut(&id)
                && slot.flight.is_none()
                && slot.entry.as_ref().is_some_and(|e| e.tick == tick)
            {
                slot.generation = self.next_gen();
                if let Some(s) = self.take(slot) {
                    out.push((s, Cause::Capacity));
                }
            }
            Self::gc(&mut map, &id);
        }
    }

    /// Removes entries not accessed since `before` (ms).
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
                if let Some(slot) = map.get_mut(&id) {
                    slot.generation = self.next_gen();
                    if let Some(s) = self.take(slot) {
                        out.push((s, Cause::Idle));
                    }
                }
                Self::gc(&mut map, &id);
            }
        }
    }

    /// Takes every entry (shutdown).
    pub fn drain(&self, out: &mut Closing<S>) {
        for shard in &*self.shards {
            let mut map = lock(shard);
            for slot in map.values_mut() {
                slot.generation = self.next_gen();
                if let Some(s) = self.take(slot) {
                    out.push((s, Cause::Shutdown));
                }
            }
            map.retain(|_, s| s.flight.is_some());
        }
    }

    /// Whether no shard lock is currently held (diagnostics for tests).
    pub fn unlocked(&self) -> bool {
        self.shards.iter().all(|m| m.try_lock().is_ok())
    }
}
