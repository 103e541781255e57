//! The in-memory store: the embedded single-node default and the reference
//! implementation of the [`SessionStore`] contract.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::change::{Change, ChangeHub, ChangeStream};
use crate::clock::{Clock, SystemClock};
use crate::config::{StoreConfig, Ttl};
use crate::error::{Error, InvalidInput, Result};
use crate::id::SessionId;
use crate::metadata::Metadata;
use crate::record::{Cursor, Page, Record, Update};
use crate::store::SessionStore;
use crate::version::Version;
use crate::write_id::WriteId;

const SHARDS: usize = 64;
/// Every this many creates, one shard is swept of expired entries.
const SWEEP_EVERY: usize = 256;

/// An in-process [`SessionStore`]: a sharded map, exact expiry on an
/// injectable [`Clock`], and a change stream over a broadcast channel.
///
/// Clones are handles on the same data (and the same change stream). Each
/// operation holds one shard's lock for the map operation only. Expired
/// entries are invisible at once and removed when touched or by a periodic
/// sweep of one shard per 256 creates ([`MemoryStore::purge_expired`] sweeps
/// everything). Scan visits ids in order and never repeats one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_core::{ManualClock, MemoryStore, Metadata, SessionId, SessionStore, StoreConfig, Ttl};
///
/// let clock = ManualClock::new();
/// let store = MemoryStore::with_clock(StoreConfig::new(Duration::from_secs(60))?, clock.clone());
/// let id = SessionId::generate();
/// store.create(&id, &Metadata::new(), Ttl::Default).await?;
/// clock.advance(Duration::from_secs(59));
/// assert!(store.load(&id).await?.is_some()); // slides to t=119s
/// clock.advance(Duration::from_secs(59));
/// assert!(store.version(&id).await?.is_some());
/// clock.advance(Duration::from_secs(2));
/// assert!(store.version(&id).await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
    config: StoreConfig,
}

struct Inner {
    shards: Box<[Mutex<HashMap<SessionId, Entry>>]>,
    hasher: std::hash::RandomState,
    clock: Box<dyn Clock>,
    hub: ChangeHub,
    creates: AtomicUsize,
}

struct Entry {
    version: Version,
    metadata: Metadata,
    // Nanoseconds on the store's clock: u64, not Duration, keeps entries small.
    created: u64,
    expires: u64,
    ttl: u64,
    writes: Writes,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        now < self.expires
    }
}

/// A record's last [`WriteId::RECENT`] applied writes, newest first, each
/// with the version it produced.
#[derive(Default)]
struct Writes([Option<(WriteId, Version)>; WriteId::RECENT]);

impl Writes {
    fn first(write: WriteId, version: Version) -> Self {
        let mut w = Self::default();
        w.0[0] = Some((write, version));
        w
    }

    fn push(&mut self, write: WriteId, version: Version) {
        self.0.rotate_right(1);
        self.0[0] = Some((write, version));
    }

    fn find(&self, write: &WriteId) -> Option<Version> {
        self.0
            .iter()
            .flatten()
            .find(|(w, _)| w == write)
            .map(|&(_, v)| v)
    }
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new(config: StoreConfig) -> Self {
        Self::with_clock(config, SystemClock::new())
    }

    /// A store on the given clock.
    pub fn with_clock(config: StoreConfig, clock: impl Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: std::hash::RandomState::new(),
                clock: Box::new(clock),
                hub: ChangeHub::default(),
                creates: AtomicUsize::new(0),
            }),
            config,
        }
    }

    /// Another handle on the same data, clock and change stream with other
    /// expiry settings (as a second gateway node, deployed with another
    /// configuration, would see the same shared store).
    #[must_use]
    pub fn handle(&self, config: StoreConfig) -> Self {
        Self {
            inner: self.inner.clone(),
            config,
        }
    }

    /// Removes every expired entry now; returns how many.
    pub fn purge_expired(&self) -> usize {
        (0..SHARDS).map(|i| self.inner.sweep(i)).sum()
    }

    /// Live sessions (expired entries not yet swept are not counted).
    pub fn len(&self) -> usize {
        (0..SHARDS)
            .map(|i| {
                let map = lock(&self.inner.shards[i]);
                let now = self.inner.now();
                map.values().filter(|e| e.live(now)).count()
            })
            .sum()
    }

    /// Whether no live session is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn shard(&self, id: &SessionId) -> MutexGuard<'_, HashMap<SessionId, Entry>> {
        let h = usize::try_from(self.hasher.hash_one(id.as_str()) % SHARDS as u64).unwrap_or(0);
        lock(&self.shards[h])
    }

    /// Now on the store's clock. Every caller reads it while holding the
    /// shard lock of the entry it decides about, so an operation preempted
    /// between reading the clock and taking the lock cannot act on a
    /// record that another operation has meanwhile seen expire.
    fn now(&self) -> u64 {
        nanos(self.clock.now())
    }

    fn deadline(now: u64, created: u64, ttl: u64, max_lifetime: Option<Duration>) -> u64 {
        let slid = now.saturating_add(ttl);
        match max_lifetime {
            Some(max) => slid.min(created.saturating_add(nanos(max))),
            None => slid,
        }
    }

    fn sweep(&self, shard: usize) -> usize {
        let mut map = lock(&self.shards[shard]);
        let now = self.now();
        let before = map.len();
        map.retain(|_, e| e.live(now));
        before - map.len()
    }

    /// Runs `f` on the live entry for `id`, dropping it first if expired.
    fn with_live<T>(&self, id: &SessionId, f: impl FnOnce(&mut Entry, u64) -> T) -> Option<T> {
        let mut map = self.shard(id);
        let now = self.now();
        match map.get_mut(id) {
            Some(e) if e.live(now) => Some(f(e, now)),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Like [`Inner::with_live`] for an operation that slides: `f` returns
    /// the new sliding TTL, or `None` to leave the entry alone; when the
    /// capped deadline of a slide is already past (`max_lifetime` lowered
    /// since creation) the entry is removed, a delete is published and
    /// [`Slid::Expired`] returned.
    fn with_slide<T>(
        &self,
        id: &SessionId,
        max_lifetime: Option<Duration>,
        f: impl FnOnce(&mut Entry) -> (Option<u64>, T),
        apply: impl FnOnce(&mut Entry, T) -> T,
    ) -> Slid<T> {
        let outcome = {
            let mut map = self.shard(id);
            let now = self.now();
            match map.get_mut(id) {
                Some(e) if e.live(now) => match f(e) {
                    (None, out) => Slid::Live(out),
                    (Some(ttl), out) => {
                        let deadline = Self::deadline(now, e.created, ttl, max_lifetime);
                        if deadline <= now {
                            map.remove(id);
                            Slid::Expired
                        } else {
                            e.ttl = ttl;
                            e.expires = deadline;
                            Slid::Live(apply(e, out))
                        }
                    }
                },
                Some(_) => {
                    map.remove(id);
                    Slid::Absent
                }
                None => Slid::Absent,
            }
        };
        if let Slid::Expired = outcome {
            self.hub.publish(Change::Deleted { id: id.clone() });
        }
        outcome
    }
}

/// What an update found: written now (the new version), written before
/// by the same write id (the version it produced), or not (the current).
enum Written {
    Now(Version),
    Before(Version),
    Not(Version),
}

/// What a sliding operation found.
enum Slid<T> {
    Live(T),
    /// Live, but its capped deadline had passed: removed.
    Expired,
    Absent,
}

impl<T> Slid<T> {
    fn live(self) -> Option<T> {
        match self {
            Slid::Live(t) => Some(t),
            Slid::Expired | Slid::Absent => None,
        }
    }
}

#[cfg(feature = "testing")]
impl MemoryStore {
    /// Sets the version of a live record, for the contract suite's version
    /// ceiling case (no caller can reach 2^53 - 1 updates). `false` if the
    /// record is not live.
    #[doc(hidden)]
    pub fn force_version_for_tests(&self, id: &SessionId, version: Version) -> bool {
        self.inner
            .with_live(id, |e, _| e.version = version)
            .is_some()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        let inner = &*self.inner;
        let ttl = nanos(self.config.effective_ttl(ttl));
        let max = self.config.max_lifetime();
        {
            let mut map = inner.shard(id);
            let now = inner.now();
            match map.get(id) {
                // A live record: this very create retried, or an id taken.
                // (A write id that made a later version is an update's.)
                Some(e) if e.live(now) => {
                    return Ok(e.writes.find(write).filter(|&v| v == Version::INITIAL));
                }
                _ => {
                    map.insert(
                        id.clone(),
                        Entry {
                            version: Version::INITIAL,
                            metadata: metadata.clone(),
                            created: now,
                            expires: Inner::deadline(now, now, ttl, max),
                            ttl,
                            writes: Writes::first(*write, Version::INITIAL),
                        },
                    );
                }
            }
        }
        let n = inner.creates.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            inner.sweep((n / SWEEP_EVERY) % SHARDS);
        }
        inner.hub.publish(Change::Written {
            id: id.clone(),
            version: Version::INITIAL,
        });
        Ok(Some(Version::INITIAL))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        Ok(self
            .inner
            .with_slide(
                id,
                self.config.max_lifetime(),
                |e| {
                    let rec = Record {
                        version: e.version,
                        metadata: e.metadata.clone(),
                    };
                    (Some(e.ttl), rec)
                },
                |_, rec| rec,
            )
            .live())
    }

    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        Ok(self.inner.with_live(id, |e, _| Record {
            version: e.version,
            metadata: e.metadata.clone(),
        }))
    }

    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        Ok(self.inner.with_live(id, |e, _| e.version))
    }

    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        let inner = &*self.inner;
        let store_ttl = nanos(self.config.ttl());
        let outcome = inner.with_slide(
            id,
            self.config.max_lifetime(),
            |e| {
                if e.version != expected {
                    // Only here, off the fast path: was it this write?
                    match e.writes.find(write) {
                        Some(v) => (None, Ok(Written::Before(v))),
                        None => (None, Ok(Written::Not(e.version))),
                    }
                } else if e.version >= Version::MAX {
                    // Refused before anything is written, the expiry too.
                    (None, Err(()))
                } else {
                    (Some(store_ttl), Ok(Written::Now(e.version)))
                }
            },
            |e, out| {
                e.version = e.version.next();
                e.metadata = metadata.clone();
                e.writes.push(*write, e.version);
                out.map(|_| Written::Now(e.version))
            },
        );
        let outcome = match outcome {
            Slid::Live(Ok(Written::Now(version))) => {
                inner.hub.publish(Change::Written {
                    id: id.clone(),
                    version,
                });
                Update::Applied(version)
            }
            Slid::Live(Ok(Written::Before(version))) => Update::Applied(version),
            Slid::Live(Ok(Written::Not(current))) => Update::Conflict { current },
            Slid::Live(Err(())) => {
                return Err(Error::VersionLimit {
                    key: id.as_str().to_owned(),
                });
            }
            Slid::Expired | Slid::Absent => Update::Missing,
        };
        Ok(outcome)
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        Ok(self
            .inner
            .with_slide(
                id,
                self.config.max_lifetime(),
                |e| (Some(e.ttl), ()),
                |_, ()| (),
            )
            .live()
            .is_some())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let inner = &*self.inner;
        let removed = {
            let mut map = inner.shard(id);
            let now = inner.now();
            map.remove(id).is_some_and(|e| e.live(now))
        };
        if removed {
            inner.hub.publish(Change::Deleted { id: id.clone() });
        }
        Ok(removed)
    }

    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        if limit == 0 {
            return Err(InvalidInput::ScanLimit.into());
        }
        let inner = &*self.inner;
        let after = cursor.map(Cursor::as_str);
        let mut ids: Vec<SessionId> = Vec::new();
        for shard in &inner.shards {
            let map = lock(shard);
            let now = inner.now();
            ids.extend(
                map.iter()
                    .filter(|(id, e)| e.live(now) && after.is_none_or(|a| id.as_str() > a))
                    .map(|(id, _)| id.clone()),
            );
        }
        ids.sort_unstable();
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().map(|id| Cursor::new(id.as_str()))
        } else {
            None
        };
        Ok(Page {
            ids,
            next,
            skipped: 0,
        })
    }

    fn changes(&self) -> Option<ChangeStream> {
        Some(self.inner.hub.subscribe())
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Barrier, mpsc};

    use super::*;

    /// A manual clock that, once armed, stops the next caller inside
    /// `now()` (after it read the time) until the test lets it go: the
    /// caller is "preempted" right after reading the clock.
    #[derive(Clone, Default)]
    struct GateClock(Arc<Gate>);

    struct Gate {
        nanos: AtomicU64,
        armed: AtomicBool,
        entered: Barrier,
        release: Barrier,
    }

    impl Default for Gate {
        fn default() -> Self {
            Self {
                nanos: AtomicU64::new(0),
                armed: AtomicBool::new(false),
                entered: Barrier::new(2),
                release: Barrier::new(2),
            }
        }
    }

    impl Clock for GateClock {
        fn now(&self) -> Duration {
            let now = Duration::from_nanos(self.0.nanos.load(Ordering::SeqCst));
            if self.0.armed.swap(false, Ordering::SeqCst) {
                self.0.entered.wait();
                self.0.release.wait();
            }
            now
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A `touch` preempted between reading the clock and acting must not
    /// slide a record that another call saw expire in between.
    #[test]
    fn the_clock_is_read_under_the_shard_lock() {
        let clock = GateClock::default();
        let store = MemoryStore::with_clock(
            StoreConfig::new(Duration::from_secs(2)).unwrap(),
            clock.clone(),
        );
        let id = SessionId::generate();
        block_on(store.create(&id, &Metadata::new(), Ttl::Default)).unwrap();
        clock.0.nanos.store(1_000_000_000, Ordering::SeqCst); // t = 1 s, expires at 2 s
        clock.0.armed.store(true, Ordering::SeqCst);
        let toucher = {
            let (store, id) = (store.clone(), id.clone());
            std::thread::spawn(move || block_on(store.touch(&id)).unwrap())
        };
        clock.0.entered.wait(); // the touch has read t = 1 s
        clock.0.nanos.store(2_500_000_000, Ordering::SeqCst); // past the expiry
        let (tx, rx) = mpsc::channel();
        let scanner = {
            let store = store.clone();
            std::thread::spawn(move || {
                let page = block_on(store.scan(None, 10)).unwrap();
                tx.send(page.ids.is_empty()).unwrap();
            })
        };
        // Reading the clock before the lock, the scan completes now and
        // reports the record expired; under the lock it waits for the touch.
        let early = rx.recv_timeout(Duration::from_millis(300)).ok();
        clock.0.release.wait();
        let touched = toucher.join().unwrap();
        let scan_saw_it_expired = early.unwrap_or_else(|| rx.recv().unwrap());
        scanner.join().unwrap();
        assert!(
            !(scan_saw_it_expired && touched),
            "touch slid a record that a scan had already reported expired"
        );
    }
}
