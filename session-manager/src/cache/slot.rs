//! One session id's cache slot: its live entry, its in-flight restore and
//! the generation guard. Every change to a slot's invariants goes through
//! the methods here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::{Binding, Snapshot, Version};
use tokio::sync::watch;

use crate::error::Error;
use crate::factory::Live;

/// Per-id state. A slot exists while it holds an entry or a flight, or
/// while an activation holds a [`Lease`](super::Lease) on it.
pub(crate) struct Slot<S> {
    /// Replaced by a fresh, never reused value on every terminate and every
    /// delete (local or from the change stream). A restore or activation
    /// reads it before touching storage and caches its result only if it
    /// is unchanged.
    generation: u64,
    /// The highest version known to be written; an entry older than it is
    /// stale (never served before a restore adopts or replaces it).
    floor: Version,
    pub entry: Option<Entry<S>>,
    pub flight: Option<Arc<Flight<S>>>,
    /// Activations currently between reading the generation and caching.
    pub leases: u32,
}

/// A cached live session.
pub(crate) struct Entry<S> {
    pub live: Arc<Live<S>>,
    /// Milliseconds since the manager started.
    pub last_access: u64,
    /// When the last validation that found this entry current was *sent*.
    pub last_validated: u64,
    pub last_slide: u64,
    /// The resync epoch the entry was last validated in.
    pub epoch: u64,
    /// A newer version exists: never served before a restore adopts or replaces it.
    pub stale: bool,
    /// Identifies this entry in the eviction order (unique per insert).
    pub tick: u64,
    /// Used since the eviction clock last passed it (second chance).
    pub referenced: bool,
}

/// When a storage read was sent: the resync epoch and the manager clock
/// (ms). An entry validated by that read counts as validated then, not
/// when the reply arrived.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SentAt {
    pub epoch: u64,
    pub at: u64,
}

impl<S> Slot<S> {
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            floor: Version::new(0),
            entry: None,
            flight: None,
            leases: 0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn floor(&self) -> Version {
        self.floor
    }

    /// Whether the slot can be removed from its map.
    pub fn is_empty(&self) -> bool {
        self.entry.is_none() && self.flight.is_none() && self.leases == 0
    }

    /// The session is gone (terminate, delete): a fresh generation, so no
    /// restore or activation that started before caches its result, and
    /// the in-flight restore is detached, so no caller joins it any more
    /// and its waiters start over.
    pub fn bump_generation(&mut self, next: u64) {
        self.generation = next;
        if let Some(flight) = self.flight.take() {
            flight.detached.store(true, Ordering::SeqCst);
        }
    }

    /// A newer version is known to be written.
    pub fn raise_floor(&mut self, version: Version) {
        self.floor = self.floor.max(version);
        if let Some(e) = self.entry.as_mut()
            && e.live.version() < self.floor
        {
            e.stale = true;
        }
    }

    /// Storage was confirmed (by a load sent after the floor was known) to
    /// hold an older version than the floor: accept it.
    pub fn lower_floor(&mut self, version: Version) {
        self.floor = version;
    }

    /// Marks the entry stale if it still serves `live`.
    pub fn mark_stale(&mut self, live: &Arc<Live<S>>, newer: Version) {
        self.raise_floor(newer);
        if let Some(e) = self.entry.as_mut()
            && Arc::ptr_eq(&e.live, live)
        {
            e.stale = true;
        }
    }

    /// Records a validation sent at `sent` that found `live` current.
    pub fn validated(&mut self, live: &Arc<Live<S>>, sent: SentAt) {
        if let Some(e) = self.entry.as_mut()
            && Arc::ptr_eq(&e.live, live)
        {
            e.last_validated = e.last_validated.max(sent.at);
            e.epoch = e.epoch.max(sent.epoch);
        }
    }

    /// Keeps the live session of the entry serving `old` for the newer
    /// `stored` snapshot. `None` if the entry no longer serves `old`.
    pub fn adopt(
        &mut self,
        old: &Arc<Live<S>>,
        stored: &Snapshot,
        sent: SentAt,
    ) -> Option<Arc<Live<S>>>
    where
        S: Clone,
    {
        let floor = self.floor.max(stored.version);
        let e = self.entry.as_mut().filter(|e| Arc::ptr_eq(&e.live, old))?;
        let live = Arc::new(Live::new(stored.clone(), old.session().clone()));
        e.live = live.clone();
        e.stale = stored.version < floor;
        e.last_validated = sent.at;
        e.epoch = sent.epoch;
        self.floor = floor;
        Some(live)
    }
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
    /// Set before the flight first reads storage: a caller that joins
    /// afterwards may get a result read before it started.
    pub loading: AtomicBool,
    /// Set when a terminate or delete detached the flight from its slot:
    /// its result is never served.
    pub detached: AtomicBool,
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
            detached: AtomicBool::new(false),
            leader,
            refresh_only,
        }
    }

    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::SeqCst)
    }
}
