//! What the driver asks a node to do and what the node answers: one JSON
//! object per line on a worker's stdin and stdout (the same values are
//! passed directly to in-process nodes).

use serde::{Deserialize, Serialize};

/// The metadata key prefix of the per-writer counters (`soak.n.<writer>`).
pub const COUNTER_PREFIX: &str = "soak.n.";
/// Marks a session created with a short TTL: the factory never rewrites
/// such a session's metadata (a write would slide it by the store TTL).
pub const EXPIRING_KEY: &str = "soak.expiring";

/// One operation for a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `SessionManager::create` with these backends.
    Create {
        /// Workload ids.
        backends: Vec<String>,
    },
    /// A session created with a short TTL (`Ttl::Custom`), then left to the
    /// managers' reads and to expiry.
    CreateExpiring {
        /// Workload ids.
        backends: Vec<String>,
        /// Its TTL in milliseconds.
        ttl_ms: u64,
    },
    /// `SessionManager::reserve`, never activated (it must vanish).
    Reserve,
    /// `SessionManager::get`.
    Get {
        /// The session.
        id: String,
    },
    /// `SessionManager::update` incrementing `writer`'s counter, optionally
    /// adding a backend in the same write.
    Update {
        /// The session.
        id: String,
        /// Whose counter.
        writer: usize,
        /// A workload to add if absent.
        add_backend: Option<String>,
    },
    /// `SessionManager::notify_backend_expired`.
    Notify {
        /// The session.
        id: String,
        /// The backend that expired.
        workload: String,
    },
    /// `SessionManager::evict_backend`.
    EvictBackend {
        /// The backend to remove everywhere.
        workload: String,
    },
    /// `SessionManager::terminate`.
    Terminate {
        /// The session.
        id: String,
    },
    /// Shut the manager down and report.
    Finish,
}

/// A request with its sequence number (the reply carries it back).
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Matches the reply to the request.
    pub seq: u64,
    /// The operation.
    pub request: Request,
}

/// A node's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    /// The request's sequence number (0: the worker is ready).
    pub seq: u64,
    /// How long the manager call took, in microseconds.
    pub us: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// The result of one operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "ok", rename_all = "snake_case")]
pub enum Outcome {
    /// The worker connected to its store and built its manager.
    Ready,
    /// A session was created (or reserved).
    Created {
        /// Its id.
        id: String,
    },
    /// `get` served the session.
    Got {
        /// `(writer, value)` of every counter in the metadata.
        counters: Vec<(usize, u64)>,
    },
    /// `update` applied; the writer's counter now holds `value`.
    Updated {
        /// The counter after the write.
        value: u64,
    },
    /// `notify_backend_expired`'s answer.
    Notified {
        /// `removed`, `not_present` or `gone`.
        result: String,
    },
    /// `evict_backend`'s report.
    Evicted {
        /// Sessions visited.
        scanned: usize,
        /// Sessions the backend was removed from.
        removed: usize,
        /// Sessions whose write failed.
        failed: usize,
    },
    /// `terminate`'s answer.
    Terminated {
        /// Whether a stored session was deleted.
        deleted: bool,
    },
    /// The manager shut down.
    Finished(FinishReport),
    /// The operation failed.
    Failed {
        /// The error's kind (the `session_manager::Error` variant).
        kind: String,
        /// Its message chain.
        detail: String,
    },
}

/// What a node reports when it finishes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FinishReport {
    /// Live sessions built.
    pub builds: u64,
    /// Live sessions closed.
    pub closes: u64,
    /// `ShutdownReport::is_complete`.
    pub shutdown_complete: bool,
    /// RSS samples: (seconds since start, KiB).
    pub rss: Vec<(f64, u64)>,
}
