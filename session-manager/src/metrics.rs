//! Metric names (recorded through the `metrics` facade; install any
//! recorder to export them). No label carries metadata values.

/// Counter: cache hits served without a rebuild.
pub const HITS: &str = "session_manager_hits_total";
/// Counter: `get`s that found no usable cache entry.
pub const MISSES: &str = "session_manager_misses_total";
/// Counter: `version` probes made to validate a hit.
pub const PROBES: &str = "session_manager_probes_total";
/// Counter: live sessions built by restore (label `cause`: `restore`, `create`).
pub const BUILDS: &str = "session_manager_builds_total";
/// Counter: restores (load then build or adopt) that produced a live session.
pub const RESTORES: &str = "session_manager_restores_total";
/// Counter: restores that failed (build error, storage error).
pub const RESTORE_FAILURES: &str = "session_manager_restore_failures_total";
/// Counter: built sessions discarded because a terminate or delete won the race.
pub const RESTORES_DISCARDED: &str = "session_manager_restores_discarded_total";
/// Counter: newer stored snapshots adopted without a rebuild.
pub const ADOPTIONS: &str = "session_manager_adoptions_total";
/// Counter: compare-and-set conflicts met by `update`/`notify_backend_expired`.
pub const CAS_CONFLICTS: &str = "session_manager_cas_conflicts_total";
/// Counter: cache entries removed (label `cause`: `capacity`, `idle`,
/// `terminated`, `gone`, `replaced`, `shutdown`, `discarded` (a build result
/// not cached: lost a race, or its caller was cancelled), `evicted`
/// (`evict_local`)).
pub const EVICTIONS: &str = "session_manager_evictions_total";
/// Counter: live sessions closed.
pub const CLOSES: &str = "session_manager_closes_total";
/// Closes that panicked (caught on the closer; the session counts as closed).
pub const CLOSE_PANICS: &str = "session_manager_close_panics_total";
/// `matches` calls that panicked (treated as "does not match").
pub const MATCH_PANICS: &str = "session_manager_match_panics_total";
/// Times storage was found at an older version than this node had seen
/// (confirmed by a second load), and the older version accepted.
pub const VERSION_REWINDS: &str = "session_manager_version_rewinds_total";
/// Counter: writes retried with the same write id after a transient
/// storage error (label `op`: `update`, `create`).
pub const WRITE_RETRIES: &str = "session_manager_write_retries_total";
/// Counter: storage errors seen (label `op`).
pub const STORAGE_ERRORS: &str = "session_manager_storage_errors_total";
/// Counter: change events received (label `kind`: `written`, `deleted`, `resync`).
pub const CHANGE_EVENTS: &str = "session_manager_change_events_total";
/// Histogram: seconds from the start of a restore to its outcome.
pub const RESTORE_SECONDS: &str = "session_manager_restore_seconds";
/// Histogram: seconds an `update` took, retries included.
pub const UPDATE_SECONDS: &str = "session_manager_update_seconds";

/// Why a cache entry left the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Capacity,
    Idle,
    Terminated,
    Gone,
    Replaced,
    Shutdown,
    Discarded,
    Evicted,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::Idle => "idle",
            Self::Terminated => "terminated",
            Self::Gone => "gone",
            Self::Replaced => "replaced",
            Self::Shutdown => "shutdown",
            Self::Discarded => "discarded",
            Self::Evicted => "evicted",
        }
    }
}

pub(crate) fn inc(name: &'static str) {
    metrics::counter!(name).increment(1);
}
