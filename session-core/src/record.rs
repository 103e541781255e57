//! What stores return.

use crate::id::SessionId;
use crate::metadata::Metadata;
use crate::version::Version;

/// A stored session as loaded: its metadata and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The version this metadata was written at.
    pub version: Version,
    /// The metadata.
    pub metadata: Metadata,
}

impl Record {
    /// Attaches the id, giving the snapshot a live session is built from.
    pub fn into_snapshot(self, id: SessionId) -> Snapshot {
        Snapshot {
            id,
            version: self.version,
            metadata: self.metadata,
        }
    }
}

/// What a live session was built from: id, metadata and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The session.
    pub id: SessionId,
    /// The version the metadata was read at.
    pub version: Version,
    /// The metadata.
    pub metadata: Metadata,
}

/// The outcome of a compare-and-set [`update`](crate::SessionStore::update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Update {
    /// Written; the record now has this version.
    Applied(Version),
    /// Not written: the record exists at another version.
    Conflict {
        /// The version in storage.
        current: Version,
    },
    /// Not written: no live record (never created, deleted or expired).
    Missing,
}

/// An opaque scan position, returned by one [`scan`](crate::SessionStore::scan)
/// page and passed to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a store-specific position.
    pub fn new(pos: impl Into<String>) -> Self {
        Self(pos.into())
    }

    /// The store-specific position.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page of a scan.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Live session ids. A page may be empty while `next` is still `Some`.
    pub ids: Vec<SessionId>,
    /// Where to continue; `None` when the scan is complete.
    pub next: Option<Cursor>,
    /// Stored entries this page passed over because their key or row id is
    /// not a valid [`SessionId`] (written by someone else). They are left
    /// as they are and never stop a scan; stores also log them.
    pub skipped: usize,
}
