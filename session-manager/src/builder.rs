//! Configuring a [`SessionManager`].

use std::sync::Arc;
use std::time::Duration;

use session_core::SessionStore;

use crate::factory::SessionFactory;
use crate::manager::SessionManager;
use crate::policy::ValidationPolicy;

/// Settings of a [`SessionManager`]; see [`SessionManager::builder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub capacity: usize,
    pub idle_timeout: Duration,
    pub policy: ValidationPolicy,
    pub op_timeout: Duration,
    pub cas_retries: u32,
    pub cas_backoff: Duration,
    pub write_retries: u32,
    pub write_backoff: Duration,
    pub reservation_ttl: Duration,
    pub resync_interval: Duration,
    pub shutdown_timeout: Duration,
    /// Slide a used entry's TTL when this many ms passed since its last slide
    /// (a quarter of the store TTL).
    pub slide_ms: u64,
}

/// Builds a [`SessionManager`]. Defaults: capacity 10 000, idle timeout
/// 5 minutes, policy [`Push`](ValidationPolicy::Push) if the store has a
/// change stream else [`EveryAccess`](ValidationPolicy::EveryAccess),
/// storage operation timeout 2 s, CAS retry budget 16 with 2 ms base
/// jittered backoff, 2 retries of a write after a transient error (25 ms
/// base jittered backoff), reservation TTL 30 s, resync interval 60 s,
/// shutdown timeout 10 s.
#[must_use]
pub struct SessionManagerBuilder<F> {
    store: Arc<dyn SessionStore>,
    factory: F,
    capacity: usize,
    idle_timeout: Duration,
    policy: Option<ValidationPolicy>,
    op_timeout: Duration,
    cas_retries: u32,
    cas_backoff: Duration,
    write_retries: u32,
    write_backoff: Duration,
    reservation_ttl: Duration,
    resync_interval: Duration,
    shutdown_timeout: Duration,
}

impl<F: SessionFactory> SessionManagerBuilder<F> {
    pub(crate) fn new(store: Arc<dyn SessionStore>, factory: F) -> Self {
        Self {
            store,
            factory,
            capacity: 10_000,
            idle_timeout: Duration::from_secs(300),
            policy: None,
            op_timeout: Duration::from_secs(2),
            cas_retries: 16,
            cas_backoff: Duration::from_millis(2),
            write_retries: 2,
            write_backoff: Duration::from_millis(25),
            reservation_ttl: Duration::from_secs(30),
            resync_interval: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// Most live sessions cached; the least recently used is evicted (and
    /// closed) beyond it. At least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// A cached session unused this long is evicted and closed (storage
    /// keeps it; the next access restores it).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle.max(Duration::from_millis(1));
        self
    }

    /// How hits are validated against storage.
    pub fn policy(mut self, policy: ValidationPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Deadline for each storage call; a miss is reported as
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Compare-and-set attempts of one `update` before
    /// [`Error::ConflictBudgetExhausted`](crate::Error::ConflictBudgetExhausted). At least 1.
    pub fn cas_retries(mut self, attempts: u32) -> Self {
        self.cas_retries = attempts.max(1);
        self
    }

    /// Base of the jittered exponential backoff between CAS attempts; zero
    /// only yields to the scheduler.
    pub fn cas_backoff(mut self, base: Duration) -> Self {
        self.cas_backoff = base;
        self
    }

    /// How often one write (`update`, `notify_backend_expired`,
    /// `activate`, `reserve`) is retried after a transient storage error
    /// (unavailable, timeout: its reply may have been lost after the write
    /// was applied), and the base of the jittered exponential backoff
    /// between tries. Every try carries the same
    /// [`WriteId`](session_core::WriteId), so a write that was applied is
    /// recognised by the store and never applied twice: the caller sees
    /// exactly one outcome. 0 reports the first transient error.
    pub fn write_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.write_retries = retries;
        self.write_backoff = backoff;
        self
    }

    /// TTL of a reserved, not yet activated session (clamped by the store to its TTL).
    ///
    /// Keep it above the slowest creation you accept during a storage
    /// outage: `reserve` and `activate` may each retry a write
    /// `write_retries` times after an operation timeout, so a reservation
    /// shorter than about `2 x (write_retries + 1) x` the operation timeout
    /// (plus the build) can expire before its activation, and `create` then
    /// reports `NotFound`. The default is 30 s.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// With the push policy: every entry is re-validated by one probe at
    /// least this often, bounding staleness if change events are lost.
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long [`shutdown`](SessionManager::shutdown) waits for in-flight
    /// restores and closes before it reports what is left (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Starts the manager: its change-stream listener (push policy) and idle
    /// sweeper run on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn build(self) -> SessionManager<F> {
        let stream = self.store.changes();
        let policy = self.policy.unwrap_or(if stream.is_some() {
            ValidationPolicy::Push
        } else {
            ValidationPolicy::EveryAccess
        });
        let ttl_ms = u64::try_from(self.store.config().ttl().as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            capacity: self.capacity,
            idle_timeout: self.idle_timeout,
            policy,
            op_timeout: self.op_timeout,
            cas_retries: self.cas_retries,
            cas_backoff: self.cas_backoff,
            write_retries: self.write_retries,
            write_backoff: self.write_backoff,
            reservation_ttl: self.reservation_ttl,
            resync_interval: self.resync_interval,
            shutdown_timeout: self.shutdown_timeout,
            slide_ms: (ttl_ms / 4).max(1),
        };
        let stream = if policy == ValidationPolicy::Push {
            stream
        } else {
            None
        };
        SessionManager::start(self.store, self.factory, config, stream)
    }
}
