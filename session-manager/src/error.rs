//! The manager's error type, with the HTTP status a gateway maps it to.

use std::sync::Arc;

use session_core::{BoxError, SessionId};

/// A boxed, shareable error (build failures are shared by every waiter of a
/// single-flight restore).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a manager operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such session (never existed, terminated or expired). HTTP 404.
    #[error("session {id} not found")]
    NotFound {
        /// The session.
        id: SessionId,
    },
    /// The session is reserved but not yet activated. HTTP 409.
    #[error("session {id} is reserved but not yet active")]
    NotReady {
        /// The session.
        id: SessionId,
    },
    /// The caller's identity does not match the session's binding. HTTP 403
    /// (or 404 to hide that the id exists). The owner's session is untouched.
    #[error("session {id} is bound to another identity")]
    Forbidden {
        /// The session.
        id: SessionId,
    },
    /// Storage did not answer or timed out; a cached session is kept. HTTP 503.
    #[error("session storage unavailable")]
    Unavailable {
        /// The store's error.
        #[source]
        source: Arc<session_core::Error>,
    },
    /// Storage answered with a non-transient error (invalid input, corrupt
    /// record, a configuration that cannot work such as a dropped database
    /// or a changed password). HTTP 500.
    #[error("session storage error")]
    Storage {
        /// The store's error.
        #[source]
        source: Arc<session_core::Error>,
    },
    /// Every compare-and-set attempt of the retry budget met a concurrent
    /// writer. HTTP 409 (retryable).
    #[error("session {id}: {attempts} conflicting attempts, retry budget exhausted")]
    ConflictBudgetExhausted {
        /// The session.
        id: SessionId,
        /// Attempts made.
        attempts: u32,
    },
    /// `activate` on a session that is already active. HTTP 409.
    #[error("session {id} is already active")]
    AlreadyActive {
        /// The session.
        id: SessionId,
    },
    /// The factory failed to build the live session. HTTP 502.
    #[error("building the live session failed")]
    Build {
        /// The factory's error.
        #[source]
        source: SharedError,
    },
    /// The update function or metadata given was rejected; nothing was written. HTTP 400.
    #[error("metadata edit rejected")]
    Edit {
        /// Why.
        #[source]
        source: SharedError,
    },
    /// The manager was shut down. HTTP 503.
    #[error("session manager is shut down")]
    ShutDown,
}

impl Error {
    /// The HTTP status a gateway answers with.
    ///
    /// ```
    /// use session_core::SessionId;
    /// use session_manager::Error;
    ///
    /// assert_eq!(Error::NotFound { id: SessionId::generate() }.http_status(), 404);
    /// ```
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::Forbidden { .. } => 403,
            Self::NotReady { .. }
            | Self::AlreadyActive { .. }
            | Self::ConflictBudgetExhausted { .. } => 409,
            Self::Edit { .. } => 400,
            Self::Build { .. } => 502,
            Self::Unavailable { .. } | Self::ShutDown => 503,
            Self::Storage { .. } => 500,
        }
    }

    pub(crate) fn store(e: session_core::Error) -> Self {
        if e.is_transient() {
            Self::Unavailable {
                source: Arc::new(e),
            }
        } else {
            Self::Storage {
                source: Arc::new(e),
            }
        }
    }

    pub(crate) fn edit(e: impl Into<BoxError>) -> Self {
        Self::Edit {
            source: Arc::from(e.into()),
        }
    }
}

/// Result alias for manager operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
