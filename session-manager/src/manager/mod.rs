//! The session manager: the public handle and the state its parts share.
//!
//! - [`validate`]: the hit path (lookup, authorize, probe).
//! - [`restore`]: single-flight restore (join, launch, restore, adopt, insert).
//! - [`create`]: reserve and activate.
//! - [`write`]: compare-and-set writes, backend expiry, bulk eviction.
//! - [`terminate`]: terminate and forgetting sessions storage no longer has.
//! - [`changes`]: the change-stream listener.
//! - [`housekeeping`]: the coarse clock, idle sweep, TTL slides, shutdown.
//!
//! User code ([`SessionFactory::close`]) runs only on the
//! [closer](crate::closer); [`SessionFactory::matches`] runs outside every
//! cache lock with panics caught; [`SessionFactory::build`] runs in the
//! restore task or the activating caller, owning nothing the manager needs.

mod changes;
mod create;
mod housekeeping;
mod restore;
mod terminate;
mod validate;
mod write;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use session_core::{
    Binding, ChangeStream, Metadata, SessionId, SessionStore, Snapshot, WorkloadId,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use housekeeping::ShutdownReport;
pub use write::{BackendExpiry, BulkReport};

use crate::builder::{Config, SessionManagerBuilder};
use crate::cache::{Cache, SentAt};
use crate::closer::Closer;
use crate::error::{Error, Result};
use crate::factory::{Live, SessionFactory};
use crate::metrics::{self as m, Cause, inc};
use crate::policy::ValidationPolicy;

/// A cache entry as seen by [`SessionManager::cached`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheState {
    /// The version the cached live session serves.
    pub version: session_core::Version,
    /// Whether a newer version is known (the entry is not served before a
    /// restore adopts or replaces it).
    pub stale: bool,
}

/// A node-local cache of live sessions over shared storage.
///
/// Cheap to clone (a handle). See the [crate documentation](crate) for the
/// guarantees per [`ValidationPolicy`]. Dropping the last handle without
/// [`shutdown`](Self::shutdown) still hands every cached session to the
/// closer (it runs on as long as the runtime does).
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

pub(crate) struct Inner<F: SessionFactory> {
    store: Arc<dyn SessionStore>,
    factory: Arc<F>,
    cache: Cache<F::Session>,
    closer: Closer<F::Session>,
    cfg: Config,
    origin: Instant,
    /// Milliseconds since `origin`, refreshed every `tick_ms` by a
    /// background task: the hit path's clock (no clock read per hit).
    coarse: AtomicU64,
    tick_ms: u64,
    /// Bumped on every resync: entries validated in an older epoch probe once.
    epoch: AtomicU64,
    /// The change stream is delivering (push policy only): false from a
    /// `Down` event until the next `Resync`, and for good once it ends.
    push_live: AtomicBool,
    shut: AtomicBool,
    /// Restores in flight, and a wake-up when one ends (shutdown waits).
    flights: AtomicUsize,
    flight_ended: Notify,
    /// Background tasks (listener, sweeper, clock) and their stop signal.
    tasks: TaskTracker,
    stop: CancellationToken,
    /// Hot-path counters, registered once (install a recorder before
    /// building managers to export them).
    hits: metrics::Counter,
    probes: metrics::Counter,
}

impl<F: SessionFactory> Drop for Inner<F> {
    fn drop(&mut self) {
        // The last handle is gone (and no restore runs): whatever is still
        // cached goes to the closer, which outlives us.
        self.stop.cancel();
        let mut closing = Vec::new();
        self.cache.drain(&mut closing);
        self.closer.close_all(closing);
    }
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
        let factory = Arc::new(factory);
        let inner = Arc::new(Inner {
            store,
            closer: Closer::start(factory.clone()),
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
            flight_ended: Notify::new(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            hits: metrics::counter!(m::HITS),
            probes: metrics::counter!(m::PROBES),
        });
        if let Some(stream) = stream {
            inner.background(changes::listen(Arc::downgrade(&inner), stream));
        }
        inner.background(housekeeping::sweep(Arc::downgrade(&inner)));
        inner.background(housekeeping::tick(Arc::downgrade(&inner)));
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
        self.inner.reserve(Metadata::new()).await
    }

    /// [`reserve`](Self::reserve) bound to `caller` from the start, so
    /// [`terminate_for`](Self::terminate_for) works on the placeholder and
    /// [`activate`](Self::activate) refuses metadata bound to anyone else.
    #[tracing::instrument(name = "session_manager.reserve_for", skip_all, fields(session_id))]
    pub async fn reserve_for(&self, caller: &Binding) -> Result<SessionId> {
        let md = session_core::keys::with_binding(&Metadata::new(), caller).map_err(Error::edit)?;
        self.inner.reserve(md).await
    }

    /// Phase two: builds the live session from `metadata` and writes it over
    /// the placeholder by compare-and-set, so a terminate in between wins
    /// ([`Error::NotFound`], and the built session is closed). A missing
    /// `vmcp.backend.ids` is added (empty). Cancelling it at any point
    /// closes whatever it built. The write is exactly-once: after a
    /// transient error it is retried with the same write id, so a lost
    /// reply is neither an error nor a conflict with itself (see
    /// [`SessionManagerBuilder::write_retries`](crate::SessionManagerBuilder::write_retries)).
    #[tracing::instrument(name = "session_manager.activate", skip_all, fields(session_id = %id))]
    pub async fn activate(&self, id: &SessionId, metadata: Metadata) -> Result<LiveOf<F>> {
        self.inner.activate(id, metadata).await
    }

    /// [`reserve`](Self::reserve) then [`activate`](Self::activate).
    #[tracing::instrument(name = "session_manager.create", skip_all)]
    pub async fn create(&self, metadata: Metadata) -> Result<LiveOf<F>> {
        let id = self.inner.reserve(Metadata::new()).await?;
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
    /// in constant time against the stored snapshot (read without sliding
    /// its TTL) before anything is built; a mismatch is
    /// [`Error::Forbidden`] and leaves the session untouched: no build, no
    /// TTL slide, no change in eviction order.
    pub async fn get_for(&self, id: &SessionId, caller: &Binding) -> Result<LiveOf<F>> {
        let span = tracing::info_span!("session_manager.get_for", session_id = %id);
        self.inner.get(id, Some(caller), span).await
    }

    /// Applies `f` to the stored metadata by compare-and-set, retrying on
    /// conflicts (bounded, jittered). The cached entry adopts the result if
    /// the factory says the live session still matches, else it is evicted
    /// and closed. Returns the stored snapshot after the update (unchanged,
    /// with no write and no TTL slide, if `f` returned equal metadata).
    ///
    /// Exactly-once from the caller's view: each edit is one write id; a
    /// transient error (the reply may be lost after the store applied it)
    /// retries that write with the same id, so it is never applied twice
    /// and `f`'s edit is never redone on its own result; a conflict (a
    /// genuine other writer) re-reads and calls `f` again under a new id.
    #[tracing::instrument(name = "session_manager.update", skip_all, fields(session_id = %id))]
    pub async fn update<E>(
        &self,
        id: &SessionId,
        mut f: impl FnMut(&Metadata) -> std::result::Result<Metadata, E> + Send,
    ) -> Result<Snapshot>
    where
        E: Into<session_core::BoxError>,
    {
        let started = Instant::now();
        let out = self
            .inner
            .compare_and_set(id, |s| {
                let md = f(&s.metadata).map_err(Error::edit)?;
                Ok((md != s.metadata).then_some(md))
            })
            .await;
        metrics::histogram!(m::UPDATE_SECONDS).record(started.elapsed().as_secs_f64());
        out.map(write::Written::into_snapshot)
    }

    /// Removes `workload` from the session (idempotent): a CAS update that
    /// every node sees at its next validation. Exactly-once like `update`:
    /// a removal whose reply was lost reports `Removed`, not `NotPresent`.
    #[tracing::instrument(name = "session_manager.notify_backend_expired", skip_all, fields(session_id = %id, workload = %workload))]
    pub async fn notify_backend_expired(
        &self,
        id: &SessionId,
        workload: &WorkloadId,
    ) -> Result<BackendExpiry> {
        self.inner.remove_backend(id, workload).await
    }

    /// Removes `workload` from every stored session that holds it (via
    /// scan). Sessions that do not hold it are read without sliding their
    /// TTL and left untouched.
    #[tracing::instrument(name = "session_manager.evict_backend", skip_all, fields(workload = %workload))]
    pub async fn evict_backend(&self, workload: &WorkloadId) -> Result<BulkReport> {
        self.inner.evict_backend(workload).await
    }

    /// Deletes the session in storage, then evicts it here (its close runs
    /// on the closer); an in-flight restore on this node is detached and
    /// its result never served. `true` if a stored session was deleted. A
    /// storage error changes nothing locally.
    #[tracing::instrument(name = "session_manager.terminate", skip_all, fields(session_id = %id))]
    pub async fn terminate(&self, id: &SessionId) -> Result<bool> {
        self.inner.terminate(id).await
    }

    /// [`terminate`](Self::terminate) for a caller identity: refused with
    /// [`Error::Forbidden`] unless `caller` is bound to the session (checked
    /// on a read that does not slide the TTL).
    #[tracing::instrument(name = "session_manager.terminate_for", skip_all, fields(session_id = %id))]
    pub async fn terminate_for(&self, id: &SessionId, caller: &Binding) -> Result<bool> {
        self.inner.terminate_for(id, caller).await
    }

    /// Evicts `id` from this node's cache only (storage keeps it; the next
    /// access restores it). `true` if an entry was cached.
    pub fn evict_local(&self, id: &SessionId) -> bool {
        self.inner.evict_local(id)
    }

    /// Stops background tasks, waits for in-flight restores (they discard
    /// their result), hands every cached session to the closer and waits
    /// for the closes — all within the configured shutdown timeout
    /// ([`SessionManagerBuilder::shutdown_timeout`]). Later operations fail
    /// with [`Error::ShutDown`]. The report says what did not finish in time.
    #[tracing::instrument(name = "session_manager.shutdown", skip_all)]
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.shutdown(self.inner.cfg.shutdown_timeout).await
    }

    /// [`shutdown`](Self::shutdown) with an explicit deadline.
    #[tracing::instrument(name = "session_manager.shutdown", skip_all)]
    pub async fn shutdown_within(&self, timeout: Duration) -> ShutdownReport {
        self.inner.shutdown(timeout).await
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

    /// Cache slots (entries, restores in flight, activations in progress):
    /// diagnostics for tests that check nothing leaks.
    #[doc(hidden)]
    pub fn slot_count(&self) -> usize {
        self.inner.cache.slots()
    }

    /// Whether the change stream is delivering (push policy): false from a
    /// `Down` event until the next `Resync`, when every hit probes
    /// (diagnostics and tests).
    #[doc(hidden)]
    pub fn stream_live(&self) -> bool {
        self.inner.push_live.load(Ordering::SeqCst)
    }

    /// Whether no cache lock is held right now (used by tests to check that
    /// closes run outside locks).
    #[doc(hidden)]
    pub fn cache_unlocked(&self) -> bool {
        self.inner.cache.unlocked()
    }
}

impl<F: SessionFactory> Inner<F> {
    fn background(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    fn open(&self) -> Result<()> {
        if self.shut.load(Ordering::Relaxed) {
            Err(Error::ShutDown)
        } else {
            Ok(())
        }
    }

    fn is_shut(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Now, as the send time of a storage read.
    fn sent_now(&self) -> SentAt {
        SentAt {
            epoch: self.epoch(),
            at: self.now_ms(),
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

    /// [`SessionFactory::matches`], outside every lock; a panic counts as
    /// "does not match" (the entry is replaced).
    fn still_matches(&self, live: &Snapshot, stored: &Snapshot) -> bool {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.factory.matches(live, stored)))
            .unwrap_or_else(|_| {
                inc(m::MATCH_PANICS);
                tracing::error!("SessionFactory::matches panicked: treated as a mismatch");
                false
            })
    }

    fn evict_local(&self, id: &SessionId) -> bool {
        let taken = {
            let mut map = self.cache.shard(id);
            let taken = map.get_mut(id).and_then(|slot| self.cache.take(slot));
            Cache::gc(&mut map, id);
            taken
        };
        match taken {
            Some(s) => {
                self.closer.close(s, Cause::Evicted);
                true
            }
            None => false,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
