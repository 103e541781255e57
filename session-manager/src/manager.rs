//! The session manager: restore-on-access through a validating cache,
//! compare-and-set updates, backend expiry and terminate.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use session_core::{
    Binding, Change, ChangeStream, Metadata, SessionId, SessionStore, Snapshot, Ttl, Update,
    Version, WorkloadId, constant_time_eq, keys,
};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::builder::{Config, SessionManagerBuilder};
use crate::cache::{Cache, Closing, Entry, Flight, Outcome, shared};
use crate::error::{Error, Result};
use crate::factory::{BuildCause, Live, SessionFactory, authorizes};
use crate::metrics::{self as m, Cause, inc};
use crate::policy::ValidationPolicy;

/// How many times one `get` goes round (stale hit, lost race, a flight
/// started by another identity) before giving up.
const GET_ROUNDS: u32 = 8;
/// How many times one restore retries after losing a race.
const RESTORE_ATTEMPTS: u32 = 4;
/// Scan page size of `evict_backend`.
const SCAN_PAGE: usize = 256;

/// What [`SessionManager::notify_backend_expired`] did.
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

/// What [`SessionManager::evict_backend`] did.
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

/// A cache entry as seen by [`SessionManager::cached`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheState {
    /// The version the cached live session serves.
    pub version: Version,
    /// Whether a newer version is known (the entry is not served before a
    /// restore adopts or replaces it).
    pub stale: bool,
}

/// A node-local cache of live sessions over shared storage.
///
/// Cheap to clone (a handle). See the [crate documentation](crate) for the
/// guarantees per [`ValidationPolicy`].
pub struct SessionManager<F: SessionFactory> {
    inner: Arc<Inner<F>>,
}

impl<F: SessionFactory> Clone for SessionManager<F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<F: SessionFactory> std::fmt::Debug for SessionManager<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("policy", &self.inner.cfg.policy)
            .field("cached", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}

type LiveOf<F> = Arc<Live<<F as SessionFactory>::Session>>;

struct Inner<F: SessionFactory> {
    store: Arc<dyn SessionStore>,
    factory: F,
    cache: Cache<F::Session>,
    cfg: Config,
    origin: Instant,
    /// Milliseconds since `origin`, refreshed every `tick_ms` by a
    /// background task: the hit path's clock (no clock read per hit).
    coarse: AtomicU64,
    tick_ms: u64,
    /// Bumped on every resync: entries validated in an older epoch probe once.
    epoch: AtomicU64,
    /// The change stream is delivering (push policy only).
    push_live: AtomicBool,
    shut: AtomicBool,
    flights: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Hot-path counters, registered once (install a recorder before
    /// building managers to export them).
    hits: metrics::Counter,
    probes: metrics::Counter,
}

#[derive(Debug, thiserror::Error)]
#[error("the restore task panicked")]
struct RestorePanicked;

enum Lookup<S> {
    Fresh(Arc<Live<S>>),
    Probe(Arc<Live<S>>),
    Miss,
}

/// When a restore read storage: the resync epoch and the time (ms) before
/// its load, which is when the entry it caches was last validated.
#[derive(Clone, Copy)]
struct Stamp {
    epoch: u64,
    at: u64,
}

enum Edited {
    Unchanged(Snapshot),
    Applied(Snapshot),
}

impl<F: SessionFactory> SessionManager<F> {
    /// Configures a manager over `store` (the source of truth, shared by
    /// every node) and `factory`.
    pub fn builder(store: Arc<dyn SessionStore>, factory: F) -> SessionManagerBuilder<F> {
        SessionManagerBuilder::new(store, factory)
    }

    pub(crate) fn start(
        store: Arc<dyn SessionStore>,
        factory: F,
        cfg: Config,
        stream: Option<ChangeStream>,
    ) -> Self {
        // Coarse enough to cost nothing, fine enough for idle eviction and
        // TTL sliding: at most an eighth of the idle timeout, a quarter of
        // the slide interval, one second.
        let tick_ms = (duration_ms(cfg.idle_timeout) / 8)
            .min(cfg.slide_ms / 4)
            .clamp(1, 1000);
        let inner = Arc::new(Inner {
            store,
            factory,
            cache: Cache::new(),
            push_live: AtomicBool::new(stream.is_some()),
            cfg,
            origin: Instant::now(),
            coarse: AtomicU64::new(0),
            tick_ms,
            epoch: AtomicU64::new(0),
            shut: AtomicBool::new(false),
            flights: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
            hits: metrics::counter!(m::HITS),
            probes: metrics::counter!(m::PROBES),
        });
        let mut tasks = Vec::new();
        if let Some(stream) = stream {
            tasks.push(tokio::spawn(listen(Arc::downgrade(&inner), stream)));
        }
        tasks.push(tokio::spawn(sweep(Arc::downgrade(&inner))));
        tasks.push(tokio::spawn(tick(Arc::downgrade(&inner))));
        *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
        Self { inner }
    }

    /// The validation policy in effect.
    pub fn policy(&self) -> ValidationPolicy {
        self.inner.cfg.policy
    }

    /// The store this manager uses.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The factory.
    pub fn factory(&self) -> &F {
        &self.inner.factory
    }

    /// Phase one of creation: stores a placeholder under a new id with the
    /// short reservation TTL. It is not restorable ([`Error::NotReady`]) and
    /// vanishes unless [`activate`](Self::activate)d in time.
    #[tracing::instrument(name = "session_manager.reserve", skip_all, fields(session_id))]
    pub async fn reserve(&self) -> Result<SessionId> {
        self.reserve_with(Metadata::new()).await
    }

    /// [`reserve`](Self::reserve) bound to `caller` from the start, so
    /// [`terminate_for`](Self::terminate_for) works on the placeholder and
    /// [`activate`](Self::activate) refuses metadata bound to anyone else.
    #[tracing::instrument(name = "session_manager.reserve_for", skip_all, fields(session_id))]
    pub async fn reserve_for(&self, caller: &Binding) -> Result<SessionId> {
        let md = keys::with_binding(&Metadata::new(), caller).map_err(Error::edit)?;
        self.reserve_with(md).await
    }

    async fn reserve_with(&self, placeholder: Metadata) -> Result<SessionId> {
        let inner = &self.inner;
        inner.open()?;
        for _ in 0..3 {
            let id = SessionId::generate();
            let ttl = Ttl::Custom(inner.cfg.reservation_ttl);
            match inner
                .timed(inner.store.create(&id, &placeholder, ttl))
                .await
            {
                Ok(Some(_)) => {
                    tracing::Span::current().record("session_id", tracing::field::display(&id));
                    return Ok(id);
                }
                Ok(None) => {}
                Err(e) => return Err(inner.storage_error("create", e)),
            }
        }
        Err(Error::store(session_core::Error::unavailable(
            "could not allocate a fresh session id",
        )))
    }

    /// Phase two: builds the live session from `metadata` and writes it over
    /// the placeholder by compare-and-set, so a terminate in between wins
    /// ([`Error::NotFound`], and the built session is closed). A missing
    /// `vmcp.backend.ids` is added (empty).
    #[tracing::instrument(name = "session_manager.activate", skip_all, fields(session_id = %id))]
    pub async fn activate(&self, id: &SessionId, metadata: Metadata) -> Result<LiveOf<F>> {
        self.inner.activate(id, metadata).await
    }

    /// [`reserve`](Self::reserve) then [`activate`](Self::activate).
    #[tracing::instrument(name = "session_manager.create", skip_all)]
    pub async fn create(&self, metadata: Metadata) -> Result<LiveOf<F>> {
        let id = self.reserve().await?;
        self.inner.activate(&id, metadata).await
    }

    /// The live session for `id`, validated per policy, restored on a miss
    /// (one load and one build per id on this node however many callers
    /// wait). No identity check: for trusted callers; see [`get_for`](Self::get_for).
    pub async fn get(&self, id: &SessionId) -> Result<LiveOf<F>> {
        let span = tracing::info_span!("session_manager.get", session_id = %id);
        self.inner.get(id, None, span).await
    }

    /// Like [`get`](Self::get) for a caller identity: the binding is checked
    /// in constant time against the stored snapshot before anything is built;
    /// a mismatch is [`Error::Forbidden`] and leaves the session untouched.
    pub async fn get_for(&self, id: &SessionId, caller: &Binding) -> Result<LiveOf<F>> {
        let span = tracing::info_span!("session_manager.get_for", session_id = %id);
        self.inner.get(id, Some(caller), span).await
    }

    /// Applies `f` to the stored metadata by compare-and-set, retrying on
    /// conflicts (bounded, jittered). The cached entry adopts the result if
    /// the factory says the live session still matches, else it is evicted
    /// and closed. Returns the stored snapshot after the update (unchanged,
    /// with no write, if `f` returned equal metadata).
    #[tracing::instrument(name = "session_manager.update", skip_all, fields(session_id = %id))]
    pub async fn update<E>(
        &self,
        id: &SessionId,
        mut f: impl FnMut(&Metadata) -> Result<Metadata, E> + Send,
    ) -> Result<Snapshot>
    where
        E: Into<session_core::BoxError>,
    {
        let started = Instant::now();
        let out = self
            .inner
            .edit(id, |s| {
                let md = f(&s.metadata).map_err(Error::edit)?;
                Ok((md != s.metadata).then_some(md))
            })
            .await;
        metrics::histogram!(m::UPDATE_SECONDS).record(started.elapsed().as_secs_f64());
        match out? {
            Edited::Unchanged(s) | Edited::Applied(s) => Ok(s),
        }
    }

    /// Removes `workload` from the session (idempotent): a CAS update that
    /// every node sees at its next validation.
    #[tracing::instrument(name = "session_manager.notify_backend_expired", skip_all, fields(session_id = %id, workload = %workload))]
    pub async fn notify_backend_expired(
        &self,
        id: &SessionId,
        workload: &WorkloadId,
    ) -> Result<BackendExpiry> {
        self.inner.notify(id, workload).await
    }

    /// Removes `workload` from every stored session that holds it (via scan).
    #[tracing::instrument(name = "session_manager.evict_backend", skip_all, fields(workload = %workload))]
    pub async fn evict_backend(&self, workload: &WorkloadId) -> Result<BulkReport> {
        let inner = &self.inner;
        inner.open()?;
        let mut report = BulkReport::default();
        let mut cursor = None;
        loop {
            let page = inner
                .timed(inner.store.scan(cursor.as_ref(), SCAN_PAGE))
                .await
                .map_err(|e| inner.storage_error("scan", e))?;
            for id in &page.ids {
                report.scanned += 1;
                match inner.notify(id, workload).await {
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

    /// Deletes the session in storage, then evicts and closes it here; an
    /// in-flight restore on this node is discarded. `true` if a stored
    /// session was deleted. A storage error changes nothing locally.
    #[tracing::instrument(name = "session_manager.terminate", skip_all, fields(session_id = %id))]
    pub async fn terminate(&self, id: &SessionId) -> Result<bool> {
        self.inner.terminate(id).await
    }

    /// [`terminate`](Self::terminate) for a caller identity: refused with
    /// [`Error::Forbidden`] unless `caller` is bound to the session.
    #[tracing::instrument(name = "session_manager.terminate_for", skip_all, fields(session_id = %id))]
    pub async fn terminate_for(&self, id: &SessionId, caller: &Binding) -> Result<bool> {
        let inner = &self.inner;
        inner.open()?;
        let Some(rec) = inner
            .timed(inner.store.load(id))
            .await
            .map_err(|e| inner.storage_error("load", e))?
        else {
            inner.gone(id).await;
            return Err(Error::NotFound { id: id.clone() });
        };
        if !authorizes(&rec.metadata, caller) {
            return Err(Error::Forbidden { id: id.clone() });
        }
        inner.terminate(id).await
    }

    /// Stops background tasks, waits for in-flight restores (they discard
    /// and close their result) and closes every cached session. Later
    /// operations fail with [`Error::ShutDown`].
    #[tracing::instrument(name = "session_manager.shutdown", skip_all)]
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shut.store(true, Ordering::SeqCst);
        for task in inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        while inner.flights.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut closing = Vec::new();
        inner.cache.drain(&mut closing);
        inner.close_all(closing).await;
    }

    /// Live sessions cached on this node.
    pub fn cached_len(&self) -> usize {
        self.inner.cache.len()
    }

    /// The cache entry for `id`, if any (diagnostics and tests).
    pub fn cached(&self, id: &SessionId) -> Option<CacheState> {
        let map = self.inner.cache.shard(id);
        let e = map.get(id)?.entry.as_ref()?;
        Some(CacheState {
            version: e.live.version(),
            stale: e.stale,
        })
    }

    /// Whether no cache lock is held right now (used by tests to check that
    /// closes run outside locks).
    #[doc(hidden)]
    pub fn cache_unlocked(&self) -> bool {
        self.inner.cache.unlocked()
    }
}

impl<F: SessionFactory> Inner<F> {
    fn open(&self) -> Result<()> {
        if self.shut.load(Ordering::Relaxed) {
            Err(Error::ShutDown)
        } else {
            Ok(())
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether every hit (and late joiner of a flight) must probe.
    fn probes_every_access(&self) -> bool {
        match self.cfg.policy {
            ValidationPolicy::EveryAccess => true,
            ValidationPolicy::Push => !self.push_live.load(Ordering::Relaxed),
            ValidationPolicy::BoundedStaleness(_) => false,
        }
    }

    /// Runs a storage call under the operation timeout. The first poll runs
    /// without a timer, so calls that complete at once cost no timer.
    async fn timed<T>(
        &self,
        fut: impl Future<Output = session_core::Result<T>>,
    ) -> session_core::Result<T> {
        let mut fut = std::pin::pin!(fut);
        if let Poll::Ready(out) =
            std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        {
            return out;
        }
        tokio::time::timeout(self.cfg.op_timeout, fut)
            .await
            .unwrap_or(Err(session_core::Error::Timeout(self.cfg.op_timeout)))
    }

    #[allow(clippy::unused_self)]
    fn storage_error(&self, op: &'static str, e: session_core::Error) -> Error {
        metrics::counter!(m::STORAGE_ERRORS, "op" => op).increment(1);
        tracing::debug!(op, error = %e, "storage error");
        Error::store(e)
    }

    async fn close_all(&self, closing: Closing<F::Session>) {
        for (session, cause) in closing {
            self.close_one(session, cause).await;
        }
    }

    async fn close_one(&self, session: F::Session, cause: Cause) {
        metrics::counter!(m::EVICTIONS, "cause" => cause.as_str()).increment(1);
        self.factory.close(session).await;
        inc(m::CLOSES);
    }

    /// Storage says the session is gone: bump the generation, evict, close.
    async fn gone(&self, id: &SessionId) {
        if let Some(s) = self.cache.invalidate(id) {
            self.close_one(s, Cause::Gone).await;
        }
    }

    fn lookup(self: &Arc<Self>, id: &SessionId) -> Lookup<F::Session> {
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
            e.last_access = now;
            e.tick = self.cache.next_tick();
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

    /// Slides the stored TTL of a used session in the background.
    fn spawn_slide(self: &Arc<Self>, id: SessionId) {
        let inner = self.clone();
        tokio::spawn(async move {
            match inner.timed(inner.store.touch(&id)).await {
                Ok(true) => {}
                Ok(false) => inner.gone(&id).await,
                Err(e) => {
                    inner.storage_error("touch", e);
                }
            }
        });
    }

    fn validated(&self, id: &SessionId, live: &LiveOf<F>) {
        if self.cfg.policy == ValidationPolicy::EveryAccess {
            return;
        }
        let now = self.now_ms();
        let epoch = self.epoch();
        let mut map = self.cache.shard(id);
        if let Some(e) = map.get_mut(id).and_then(|s| s.entry.as_mut())
            && Arc::ptr_eq(&e.live, live)
        {
            e.last_validated = now;
            e.epoch = epoch;
        }
    }

    fn mark_stale(&self, id: &SessionId, live: &LiveOf<F>, newer: Version) {
        let mut map = self.cache.shard(id);
        if let Some(slot) = map.get_mut(id) {
            slot.floor = slot.floor.max(newer);
            if let Some(e) = slot.entry.as_mut()
                && Arc::ptr_eq(&e.live, live)
            {
                e.stale = true;
            }
        }
    }

    fn authorize(id: &SessionId, live: LiveOf<F>, caller: Option<&Binding>) -> Result<LiveOf<F>> {
        match caller {
            Some(c) if !live.authorizes(c) => Err(Error::Forbidden { id: id.clone() }),
            _ => Ok(live),
        }
    }

    /// One version probe of a live session: `Ok(true)` current, `Ok(false)`
    /// newer exists (entry marked stale).
    async fn probe(&self, id: &SessionId, live: &LiveOf<F>) -> Result<bool> {
        self.probes.increment(1);
        match self.timed(self.store.version(id)).await {
            Ok(Some(v)) if v == live.version() => Ok(true),
            Ok(Some(v)) => {
                self.mark_stale(id, live, v);
                Ok(false)
            }
            Ok(None) => {
                self.gone(id).await;
                Err(Error::NotFound { id: id.clone() })
            }
            Err(e) => Err(self.storage_error("version", e)),
        }
    }

    /// The hit path stays small and inline; everything else runs boxed in
    /// [`get_slow`](Self::get_slow), so a hit never moves a large future.
    async fn get(
        self: &Arc<Self>,
        id: &SessionId,
        caller: Option<&Binding>,
        span: tracing::Span,
    ) -> Result<LiveOf<F>> {
        self.open()?;
        let first = span.in_scope(|| self.lookup(id));
        let first = match first {
            Lookup::Fresh(live) => {
                self.hits.increment(1);
                return Self::authorize(id, live, caller);
            }
            Lookup::Probe(live) if self.cfg.policy == ValidationPolicy::EveryAccess => {
                if self.probe(id, &live).await? {
                    self.hits.increment(1);
                    return Self::authorize(id, live, caller);
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
        for _ in 0..GET_ROUNDS {
            let found = first.take().unwrap_or_else(|| self.lookup(id));
            match found {
                Lookup::Fresh(live) => {
                    self.hits.increment(1);
                    return Self::authorize(id, live, caller);
                }
                Lookup::Probe(live) => {
                    if self.probe(id, &live).await? {
                        self.validated(id, &live);
                        self.hits.increment(1);
                        return Self::authorize(id, live, caller);
                    }
                }
                Lookup::Miss => {}
            }
            inc(m::MISSES);
            let (flight, late) = self.join(id, caller);
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

    /// Joins the in-flight restore for `id` or starts one. The flag tells
    /// whether the flight had already begun loading.
    fn join(
        self: &Arc<Self>,
        id: &SessionId,
        caller: Option<&Binding>,
    ) -> (Arc<Flight<F::Session>>, bool) {
        let flight = {
            let mut map = self.cache.shard(id);
            let slot = map
                .entry(id.clone())
                .or_insert_with(|| self.cache.new_slot());
            if let Some(f) = &slot.flight {
                return (f.clone(), f.loading.load(Ordering::SeqCst));
            }
            let f = Arc::new(Flight::new(caller.cloned(), false));
            slot.flight = Some(f.clone());
            f
        };
        self.launch(id.clone(), flight.clone());
        (flight, false)
    }

    /// Runs a flight in its own task, so a waiter giving up (its own
    /// timeout) never cancels the restore the others wait for.
    fn launch(self: &Arc<Self>, id: SessionId, flight: Arc<Flight<F::Session>>) {
        self.flights.fetch_add(1, Ordering::SeqCst);
        let inner = self.clone();
        let span = tracing::info_span!("session_manager.restore", session_id = %id);
        tokio::spawn(
            async move {
                let task = {
                    let (inner, id, flight) = (inner.clone(), id.clone(), flight.clone());
                    tokio::spawn(async move { inner.restore(&id, &flight).await }.in_current_span())
                };
                let outcome = task.await.unwrap_or(Outcome::Failed(Error::Build {
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

    /// The generation of `id`'s slot (created if missing) and the epoch.
    fn capture(&self, id: &SessionId) -> (u64, Stamp) {
        let at = self.now_ms();
        let mut map = self.cache.shard(id);
        let generation = map
            .entry(id.clone())
            .or_insert_with(|| self.cache.new_slot())
            .generation;
        (
            generation,
            Stamp {
                epoch: self.epoch(),
                at,
            },
        )
    }

    fn cached_live(&self, id: &SessionId) -> Option<LiveOf<F>> {
        let map = self.cache.shard(id);
        map.get(id)
            .and_then(|s| s.entry.as_ref())
            .map(|e| e.live.clone())
    }

    async fn restore_attempts(
        self: &Arc<Self>,
        id: &SessionId,
        flight: &Flight<F::Session>,
    ) -> Outcome<F::Session> {
        for _ in 0..RESTORE_ATTEMPTS {
            if self.shut.load(Ordering::SeqCst) {
                return Outcome::Failed(Error::ShutDown);
            }
            let (generation, epoch) = self.capture(id);
            flight.loading.store(true, Ordering::SeqCst);
            let stored = match self.timed(self.store.load(id)).await {
                Ok(Some(rec)) => rec.into_snapshot(id.clone()),
                Ok(None) => {
                    self.gone(id).await;
                    return Outcome::Failed(Error::NotFound { id: id.clone() });
                }
                Err(e) => return Outcome::Failed(self.storage_error("load", e)),
            };
            if !stored.metadata.contains_key(keys::BACKEND_IDS) {
                return Outcome::Failed(Error::NotReady { id: id.clone() });
            }
            if let Some(leader) = &flight.leader
                && !authorizes(&stored.metadata, leader)
            {
                return Outcome::Refused;
            }
            let current = self.cached_live(id);
            if let Some(old) = &current
                && old.version() <= stored.version
                && self.factory.matches(old.snapshot(), &stored)
            {
                match self.adopt(id, old, &stored, generation, epoch) {
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
                    self.close_one(s, Cause::Replaced).await;
                }
                return Outcome::Retry;
            }
            let built = match self.factory.build(&stored, BuildCause::Restore).await {
                Ok(b) => b,
                Err(e) => return Outcome::Failed(Error::Build { source: shared(e) }),
            };
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
                        self.close_one(built.session, Cause::Discarded).await;
                        self.gone(id).await;
                        return Outcome::Failed(Error::NotFound { id: id.clone() });
                    }
                    Err(e) => {
                        self.storage_error("update", e);
                        stale = true;
                    }
                }
            }
            let live = Arc::new(Live::new(snapshot, built.session));
            if self.insert(id, &live, generation, epoch, stale).await {
                return Outcome::Ready(live);
            }
            inc(m::RESTORES_DISCARDED);
            self.close_one(live.session().clone(), Cause::Discarded)
                .await;
        }
        Outcome::Failed(Error::ConflictBudgetExhausted {
            id: id.clone(),
            attempts: RESTORE_ATTEMPTS,
        })
    }

    /// Keeps `old`'s live session for the newer `stored` snapshot, if the
    /// entry is still `old` and no terminate/delete happened since `generation`.
    fn adopt(
        &self,
        id: &SessionId,
        old: &LiveOf<F>,
        stored: &Snapshot,
        generation: u64,
        stamp: Stamp,
    ) -> Option<LiveOf<F>> {
        let mut map = self.cache.shard(id);
        let slot = map.get_mut(id)?;
        if slot.generation != generation || self.shut.load(Ordering::SeqCst) {
            return None;
        }
        let floor = slot.floor;
        let e = slot.entry.as_mut().filter(|e| Arc::ptr_eq(&e.live, old))?;
        let live = Arc::new(Live::new(stored.clone(), old.session().clone()));
        e.live = live.clone();
        e.stale = stored.version < floor;
        e.last_validated = stamp.at;
        e.epoch = stamp.epoch;
        slot.floor = floor.max(stored.version);
        inc(m::ADOPTIONS);
        Some(live)
    }

    /// Caches a freshly built session unless a terminate or delete bumped the
    /// generation since `generation` was captured (then the caller closes it).
    async fn insert(
        &self,
        id: &SessionId,
        live: &LiveOf<F>,
        generation: u64,
        stamp: Stamp,
        stale: bool,
    ) -> bool {
        let now = self.now_ms();
        let mut closing = Vec::new();
        {
            let mut map = self.cache.shard(id);
            let Some(slot) = map.get_mut(id) else {
                return false;
            };
            if slot.generation != generation || self.shut.load(Ordering::SeqCst) {
                return false;
            }
            let entry = Entry {
                live: live.clone(),
                last_access: now,
                last_validated: stamp.at,
                last_slide: now,
                epoch: stamp.epoch,
                stale: stale || live.version() < slot.floor,
                tick: self.cache.next_tick(),
            };
            slot.floor = slot.floor.max(live.version());
            if let Some(old) = self.cache.put(slot, entry) {
                closing.push((old, Cause::Replaced));
            }
        }
        if self.cache.len() > self.cfg.capacity {
            self.cache.shrink_to(self.cfg.capacity, id, &mut closing);
        }
        self.close_all(closing).await;
        true
    }

    async fn activate(self: &Arc<Self>, id: &SessionId, metadata: Metadata) -> Result<LiveOf<F>> {
        self.open()?;
        let metadata = with_backend_list(metadata)?;
        keys::validate(&metadata).map_err(Error::edit)?;
        let (generation, epoch) = self.capture(id);
        let result = self
            .activate_captured(id, metadata, generation, epoch)
            .await;
        {
            let mut map = self.cache.shard(id);
            Cache::gc(&mut map, id);
        }
        match result {
            Ok(Some(live)) => Ok(live),
            // Lost the insert race: a terminate wins, otherwise restore.
            Ok(None) => self.get(id, None, tracing::Span::current()).await,
            Err(e) => Err(e),
        }
    }

    async fn activate_captured(
        &self,
        id: &SessionId,
        metadata: Metadata,
        generation: u64,
        epoch: Stamp,
    ) -> Result<Option<LiveOf<F>>> {
        let placeholder = match self.timed(self.store.load(id)).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return Err(Error::NotFound { id: id.clone() }),
            Err(e) => return Err(self.storage_error("load", e)),
        };
        if placeholder.metadata.contains_key(keys::BACKEND_IDS) {
            return Err(Error::AlreadyActive { id: id.clone() });
        }
        if let Some(bound) = placeholder.metadata.get(keys::IDENTITY_BINDING)
            && metadata.get(keys::IDENTITY_BINDING) != Some(bound)
        {
            return Err(Error::Forbidden { id: id.clone() });
        }
        let snapshot = Snapshot {
            id: id.clone(),
            version: placeholder.version,
            metadata,
        };
        let built = self
            .factory
            .build(&snapshot, BuildCause::Create)
            .await
            .map_err(|e| Error::Build { source: shared(e) })?;
        metrics::counter!(m::BUILDS, "cause" => "create").increment(1);
        let metadata = match with_backend_list(built.metadata) {
            Ok(md) => md,
            Err(e) => {
                self.close_one(built.session, Cause::Discarded).await;
                return Err(e);
            }
        };
        let outcome = self
            .timed(self.store.update(id, placeholder.version, &metadata))
            .await;
        let version = match outcome {
            Ok(Update::Applied(v)) => v,
            other => {
                self.close_one(built.session, Cause::Discarded).await;
                return Err(match other {
                    Ok(Update::Conflict { .. }) => Error::AlreadyActive { id: id.clone() },
                    Ok(_) => Error::NotFound { id: id.clone() },
                    Err(e) => self.storage_error("update", e),
                });
            }
        };
        let live = Arc::new(Live::new(
            Snapshot {
                id: id.clone(),
                version,
                metadata,
            },
            built.session,
        ));
        if self.insert(id, &live, generation, epoch, false).await {
            Ok(Some(live))
        } else {
            inc(m::RESTORES_DISCARDED);
            self.close_one(live.session().clone(), Cause::Discarded)
                .await;
            Ok(None)
        }
    }

    /// Loads an active session; a missing one is evicted here.
    async fn load_active(&self, id: &SessionId) -> Result<Snapshot> {
        match self.timed(self.store.load(id)).await {
            Ok(Some(rec)) if rec.metadata.contains_key(keys::BACKEND_IDS) => {
                Ok(rec.into_snapshot(id.clone()))
            }
            Ok(Some(_)) => Err(Error::NotReady { id: id.clone() }),
            Ok(None) => {
                self.gone(id).await;
                Err(Error::NotFound { id: id.clone() })
            }
            Err(e) => Err(self.storage_error("load", e)),
        }
    }

    /// The CAS loop behind `update` and `notify_backend_expired`; `f`
    /// returns `None` for "no change".
    async fn edit(
        &self,
        id: &SessionId,
        mut f: impl FnMut(&Snapshot) -> Result<Option<Metadata>> + Send,
    ) -> Result<Edited> {
        self.open()?;
        let mut current = self.load_active(id).await?;
        for attempt in 0..self.cfg.cas_retries {
            let Some(md) = f(&current)? else {
                return Ok(Edited::Unchanged(current));
            };
            match self
                .timed(self.store.update(id, current.version, &md))
                .await
            {
                Ok(Update::Applied(version)) => {
                    let snapshot = Snapshot {
                        id: id.clone(),
                        version,
                        metadata: md,
                    };
                    self.after_write(id, &snapshot).await;
                    return Ok(Edited::Applied(snapshot));
                }
                Ok(Update::Conflict { .. }) => {
                    inc(m::CAS_CONFLICTS);
                    self.backoff(attempt).await;
                    current = self.load_active(id).await?;
                }
                Ok(Update::Missing) => {
                    self.gone(id).await;
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

    async fn backoff(&self, attempt: u32) {
        let base = self.cfg.cas_backoff;
        if base.is_zero() {
            tokio::task::yield_now().await;
            return;
        }
        let max = base.saturating_mul(1 << attempt.min(6));
        tokio::time::sleep(jitter(max)).await;
    }

    /// After a local write: adopt it in the cached entry if the live session
    /// still matches, else evict and close.
    async fn after_write(&self, id: &SessionId, snapshot: &Snapshot) {
        let now = self.now_ms();
        let replaced = {
            let mut map = self.cache.shard(id);
            let Some(slot) = map.get_mut(id) else { return };
            slot.floor = slot.floor.max(snapshot.version);
            let keep = match &slot.entry {
                Some(e) if e.live.version() < snapshot.version => {
                    self.factory.matches(e.live.snapshot(), snapshot)
                }
                _ => return,
            };
            if keep {
                if let Some(e) = slot.entry.as_mut() {
                    e.live = Arc::new(Live::new(snapshot.clone(), e.live.session().clone()));
                    e.stale = snapshot.version < slot.floor;
                    e.last_validated = now;
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
            self.close_one(s, Cause::Replaced).await;
        }
    }

    async fn notify(&self, id: &SessionId, workload: &WorkloadId) -> Result<BackendExpiry> {
        let out = self
            .edit(id, |s| {
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
            Ok(Edited::Applied(s)) => Ok(BackendExpiry::Removed(s)),
            Ok(Edited::Unchanged(_)) => Ok(BackendExpiry::NotPresent),
            Err(Error::NotFound { .. }) => Ok(BackendExpiry::SessionGone),
            Err(e) => Err(e),
        }
    }

    async fn terminate(&self, id: &SessionId) -> Result<bool> {
        self.open()?;
        let deleted = self
            .timed(self.store.delete(id))
            .await
            .map_err(|e| self.storage_error("delete", e))?;
        if let Some(s) = self.cache.invalidate(id) {
            self.close_one(s, Cause::Terminated).await;
        }
        Ok(deleted)
    }

    async fn on_change(self: &Arc<Self>, change: Change) {
        match change {
            Change::Written { id, version } => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "written").increment(1);
                let refresh = {
                    let mut map = self.cache.shard(&id);
                    let Some(slot) = map.get_mut(&id) else { return };
                    slot.floor = slot.floor.max(version);
                    match slot.entry.as_mut() {
                        Some(e) if e.live.version() < version => {
                            e.stale = true;
                            if slot.flight.is_none() && !self.shut.load(Ordering::SeqCst) {
                                let f = Arc::new(Flight::new(None, true));
                                slot.flight = Some(f.clone());
                                Some(f)
                            } else {
                                None
                            }
                        }
                        _ => None,
                    }
                };
                if let Some(f) = refresh {
                    self.launch(id, f);
                }
            }
            Change::Deleted { id } => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "deleted").increment(1);
                self.gone(&id).await;
            }
            Change::Resync => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "resync").increment(1);
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }
}

/// Adds an empty `vmcp.backend.ids` if missing: its presence marks an active session.
fn with_backend_list(md: Metadata) -> Result<Metadata> {
    if md.contains_key(keys::BACKEND_IDS) {
        Ok(md)
    } else {
        md.with(keys::BACKEND_IDS, "").map_err(Error::edit)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

/// The push listener: applies change events; bumps the resync epoch
/// periodically and on gaps; falls back to probing when the stream ends.
async fn listen<F: SessionFactory>(weak: Weak<Inner<F>>, mut stream: ChangeStream) {
    let period = match weak.upgrade() {
        Some(inner) => inner.cfg.resync_interval,
        None => return,
    };
    // No immediate first tick: events are handled from the first poll on.
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            change = stream.recv() => {
                let Some(inner) = weak.upgrade() else { return };
                let Some(change) = change else {
                    tracing::warn!("change stream ended: validating by probe from now on");
                    inner.push_live.store(false, Ordering::SeqCst);
                    return;
                };
                inner.on_change(change).await;
            }
            _ = resync.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                inner.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// Refreshes the coarse clock.
async fn tick<F: SessionFactory>(weak: Weak<Inner<F>>) {
    let period = match weak.upgrade() {
        Some(inner) => Duration::from_millis(inner.tick_ms),
        None => return,
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        inner.coarse.store(inner.now_ms(), Ordering::Relaxed);
    }
}

/// The idle sweeper.
async fn sweep<F: SessionFactory>(weak: Weak<Inner<F>>) {
    let (idle, period) = match weak.upgrade() {
        Some(inner) => {
            let idle = inner.cfg.idle_timeout;
            (idle, (idle / 4).max(Duration::from_millis(5)))
        }
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let before = inner.now_ms().saturating_sub(duration_ms(idle));
        let mut closing = Vec::new();
        inner.cache.expire_idle(before, &mut closing);
        inner.close_all(closing).await;
    }
}
