//! The driver's model of every session it made: what it acknowledged, and
//! therefore what every node and storage may still show.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// How a session was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `create`: lives until terminated (store TTL, slid by writes).
    Normal,
    /// Created with a short TTL and only read: must expire.
    Expiring,
    /// `reserve`d and never activated: must vanish after the reservation TTL.
    Reserved,
}

/// Where a session's lifecycle is, as acknowledged to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Live.
    Active,
    /// A terminate is in flight.
    Terminating,
    /// A terminate was acknowledged at this instant.
    Terminated(Instant),
    /// A terminate failed with an unknown outcome (it may or may not exist).
    Limbo,
}

/// One writer's counter in one session.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter {
    /// The value the last acknowledged increment returned.
    pub acked: u64,
    /// Increments since then whose outcome is unknown (each may have
    /// applied at most once).
    pub unknown: u64,
    /// An increment is in flight.
    pub inflight: bool,
}

impl Counter {
    /// The most a reader may see now.
    pub fn ceiling(&self) -> u64 {
        self.acked + self.unknown + u64::from(self.inflight)
    }
}

/// The mutable part of a session's model.
#[derive(Debug)]
pub struct State {
    /// Lifecycle.
    pub status: Status,
    /// Normal: storage holds the session at least until then (the start of
    /// its last acknowledged write plus the store TTL). Expiring and
    /// reserved: it is gone by then at the latest (the last read that
    /// slid it plus its TTL).
    pub deadline: Instant,
    /// Per-writer counters (normal sessions; emptied once terminated).
    pub counters: Vec<Counter>,
}

/// A session the driver made.
#[derive(Debug)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// How it was made.
    pub kind: Kind,
    state: Mutex<State>,
}

impl Session {
    /// A new session model.
    pub fn new(id: String, kind: Kind, deadline: Instant, writers: usize) -> Arc<Self> {
        let counters = if kind == Kind::Normal {
            vec![Counter::default(); writers]
        } else {
            Vec::new()
        };
        Arc::new(Self {
            id,
            kind,
            state: Mutex::new(State {
                status: Status::Active,
                deadline,
                counters,
            }),
        })
    }

    /// Locks the state (a poisoned lock is taken over: the model is only
    /// bookkeeping).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every session the driver made, by where it is in its lifecycle.
#[derive(Debug, Default)]
pub struct Pool {
    /// Live normal sessions: read, written, terminated.
    pub active: Vec<Arc<Session>>,
    /// Terminates with an unknown outcome (retried by later terminates).
    pub limbo: Vec<Arc<Session>>,
    /// Every terminated session (checked absent at the end).
    pub terminated: Vec<Arc<Session>>,
    /// Every expiring or reserved session (checked gone at the end).
    pub ephemeral: Vec<Arc<Session>>,
    /// Recently terminated, for reads and writes that must fail.
    pub recent_dead: VecDeque<Arc<Session>>,
    /// Recently made expiring / reserved sessions, for reads.
    pub recent_ephemeral: VecDeque<Arc<Session>>,
}

/// How many recent sessions the read-back probes choose from.
pub const RECENT: usize = 1024;

impl Pool {
    /// Records a terminated session.
    pub fn bury(&mut self, s: Arc<Session>) {
        push_bounded(&mut self.recent_dead, s.clone());
        self.terminated.push(s);
    }

    /// Records an expiring or reserved session.
    pub fn add_ephemeral(&mut self, s: Arc<Session>) {
        push_bounded(&mut self.recent_ephemeral, s.clone());
        self.ephemeral.push(s);
    }
}

fn push_bounded(q: &mut VecDeque<Arc<Session>>, s: Arc<Session>) {
    if q.len() == RECENT {
        q.pop_front();
    }
    q.push_back(s);
}

/// Invariant violations by kind, with the first few described.
#[derive(Debug, Default)]
pub struct Violations {
    /// Count per kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// The first examples.
    pub examples: Vec<String>,
}

impl Violations {
    /// Records one.
    #[allow(clippy::needless_pass_by_value)] // callers build the detail with format!
    pub fn add(&mut self, kind: &'static str, detail: String) {
        *self.by_kind.entry(kind).or_default() += 1;
        if self.examples.len() < 20 {
            eprintln!("soak: VIOLATION {kind}: {detail}");
            self.examples.push(format!("{kind}: {detail}"));
        }
    }

    /// Total.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}
