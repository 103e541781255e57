//! What the application supplies: how to build and close a live session,
//! and when a live session still matches newer stored metadata.

use std::fmt;
use std::ops::Deref;

use async_trait::async_trait;
use session_core::{Binding, Metadata, SessionId, Snapshot, Version, keys};

/// Why a live session is being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildCause {
    /// Phase two of creation ([`activate`](crate::SessionManager::activate)).
    Create,
    /// A cache miss: the session exists in storage and this node rebuilds it.
    Restore,
}

/// A live session as built, with the metadata it was built with (for
/// example with new backend session ids). When that metadata differs from
/// the snapshot, the manager writes it back by compare-and-set.
#[derive(Debug)]
pub struct Built<S> {
    /// The live session.
    pub session: S,
    /// The metadata as built.
    pub metadata: Metadata,
}

impl<S> Built<S> {
    /// Pairs a live session with the metadata it was built with.
    pub fn new(session: S, metadata: Metadata) -> Self {
        Self { session, metadata }
    }
}

/// Builds and closes live sessions for a [`SessionManager`](crate::SessionManager).
///
/// The manager guarantees that every session returned by a successful
/// [`build`](Self::build) is passed to [`close`](Self::close) exactly once:
/// on eviction (capacity, idle), terminate, replacement, when a build result
/// is discarded (it lost a race with a terminate), or at shutdown. Closes run
/// outside every cache lock.
#[async_trait]
pub trait SessionFactory: Send + Sync + 'static {
    /// The live session: typically a cheap handle (an `Arc`) on open backend
    /// connections. The manager clones it when a newer stored snapshot is
    /// adopted without rebuilding; it still closes each built session once.
    type Session: Clone + Send + Sync + 'static;
    /// Why a build failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Builds a live session from `snapshot`.
    async fn build(
        &self,
        snapshot: &Snapshot,
        cause: BuildCause,
    ) -> Result<Built<Self::Session>, Self::Error>;

    /// Releases a live session built by [`build`](Self::build).
    async fn close(&self, session: Self::Session);

    /// Whether a live session built from `live` can serve the newer `stored`
    /// snapshot unchanged. If so the manager adopts the new snapshot and
    /// keeps the live session; otherwise it replaces it. Called under a
    /// cache lock: it must be cheap and must not block.
    ///
    /// The default is the vMCP rule ([`vmcp_matches`]): same backend set and
    /// same identity binding; per-backend session ids are hints that may
    /// differ per node.
    fn matches(&self, live: &Snapshot, stored: &Snapshot) -> bool {
        vmcp_matches(live, stored)
    }
}

/// The vMCP matching rule: the same backend set (`vmcp.backend.ids`) and the
/// same identity binding (`vmcp.identity.binding`).
///
/// ```
/// use session_core::{keys, Metadata, SessionId, Snapshot, Version, WorkloadId};
/// use session_manager::vmcp_matches;
///
/// let gh = WorkloadId::parse("github")?;
/// let id = SessionId::generate();
/// let a = Snapshot { id: id.clone(), version: Version::new(2), metadata: keys::with_backend(&Metadata::new(), &gh, "s-a")? };
/// let b = Snapshot { id: id.clone(), version: Version::new(3), metadata: keys::with_backend(&Metadata::new(), &gh, "s-b")? };
/// assert!(vmcp_matches(&a, &b)); // only the backend session id hint differs
/// let c = Snapshot { id, version: Version::new(4), metadata: keys::without_backend(&b.metadata, &gh)? };
/// assert!(!vmcp_matches(&b, &c));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn vmcp_matches(live: &Snapshot, stored: &Snapshot) -> bool {
    let backends = |s: &Snapshot| keys::backend_ids(&s.metadata).ok();
    let binding = |s: &Snapshot| s.metadata.get(keys::IDENTITY_BINDING).map(str::to_owned);
    backends(live).is_some()
        && backends(live) == backends(stored)
        && binding(live) == binding(stored)
}

/// A live session and the snapshot it serves: immutable. When metadata
/// changes the manager hands out a new `Arc<Live>`, it never mutates one.
/// Dereferences to the session.
pub struct Live<S> {
    snapshot: Snapshot,
    session: S,
}

impl<S> Live<S> {
    pub(crate) fn new(snapshot: Snapshot, session: S) -> Self {
        Self { snapshot, session }
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.snapshot.id
    }

    /// The stored version this live session serves.
    pub fn version(&self) -> Version {
        self.snapshot.version
    }

    /// The metadata this live session serves.
    pub fn metadata(&self) -> &Metadata {
        &self.snapshot.metadata
    }

    /// Id, version and metadata.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The live session.
    pub fn session(&self) -> &S {
        &self.session
    }

    /// Whether `caller` may use this session (constant-time comparison).
    pub fn authorizes(&self, caller: &Binding) -> bool {
        authorizes(&self.snapshot.metadata, caller)
    }
}

/// A session without a stored binding is treated as unauthenticated.
pub(crate) fn authorizes(md: &Metadata, caller: &Binding) -> bool {
    match md.get(keys::IDENTITY_BINDING) {
        Some(stored) => caller.matches_encoded(stored),
        None => matches!(caller, Binding::Unauthenticated),
    }
}

impl<S> Deref for Live<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.session
    }
}

impl<S> fmt::Debug for Live<S> {
    /// Id and version only: metadata values can hold personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("id", &self.snapshot.id)
            .field("version", &self.snapshot.version)
            .finish_non_exhaustive()
    }
}
