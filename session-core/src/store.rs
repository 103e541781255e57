//! The storage trait every backend implements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::change::ChangeStream;
use crate::config::{StoreConfig, Ttl};
use crate::error::Result;
use crate::id::SessionId;
use crate::metadata::Metadata;
use crate::record::{Cursor, Page, Record, Update};
use crate::version::Version;
use crate::write_id::WriteId;

/// Session storage: the source of truth that every gateway node shares.
///
/// Every method is atomic on one session. Writes after creation are
/// compare-and-set on [`Version`] and never create a missing record, so a
/// write racing a delete cannot resurrect a session. An expired record is
/// invisible to every method at once. The contract suite
/// (`testing` feature) pins these semantics for every implementation.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> session_core::Result<()> {
/// use session_core::{MemoryStore, Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version};
///
/// let store = MemoryStore::new(StoreConfig::default());
/// let id = SessionId::generate();
/// let md = Metadata::new().with("k", "v")?;
/// assert_eq!(store.create(&id, &md, Ttl::Default).await?, Some(Version::INITIAL));
/// let md2 = md.with("k", "w")?;
/// assert_eq!(store.update(&id, Version::INITIAL, &md2).await?, Update::Applied(Version::new(2)));
/// assert_eq!(store.update(&id, Version::INITIAL, &md).await?, Update::Conflict { current: Version::new(2) });
/// // A retried write (same WriteId) reports its original outcome.
/// let w = session_core::WriteId::generate();
/// assert_eq!(store.update_once(&id, Version::new(2), &md, &w).await?, Update::Applied(Version::new(3)));
/// assert_eq!(store.update_once(&id, Version::new(2), &md, &w).await?, Update::Applied(Version::new(3)));
/// assert!(store.delete(&id).await?);
/// assert_eq!(store.update(&id, Version::new(3), &md).await?, Update::Missing);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a record at [`Version::INITIAL`]. `None` if a live record
    /// with this id exists: create never overwrites.
    ///
    /// A create under a fresh [`WriteId`]: a retry after a lost reply may
    /// report `None` for a create that was applied. Retry with
    /// [`create_once`](Self::create_once) to tell the two apart.
    async fn create(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
    ) -> Result<Option<Version>> {
        self.create_once(id, metadata, ttl, &WriteId::generate())
            .await
    }

    /// [`create`](Self::create) as the write `write`, recorded with the
    /// record. If the record exists and `write` is among its last
    /// [`WriteId::RECENT`] writes (this very create, applied, its reply
    /// lost), nothing is written and the version that create produced
    /// ([`Version::INITIAL`]) is returned instead of `None`. Once the
    /// record is gone (deleted, expired) a retry creates it again, as any
    /// create of a free id does.
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>>;

    /// Reads a record and slides its expiry. `None` if missing or expired.
    async fn load(&self, id: &SessionId) -> Result<Option<Record>>;

    /// Reads a record like [`load`](Self::load) but never slides its
    /// expiry: for checks made before a caller is authorized (a binding
    /// check), and for bulk paths that must not keep idle sessions alive.
    async fn peek(&self, id: &SessionId) -> Result<Option<Record>>;

    /// The current version, without sliding expiry or reading metadata.
    async fn version(&self, id: &SessionId) -> Result<Option<Version>>;

    /// Writes `metadata` if the record is live and at `expected`; bumps the
    /// version and slides expiry (by the store TTL). Never creates.
    ///
    /// An update under a fresh [`WriteId`]: a retry after a lost reply
    /// reports a `Conflict` for an update that was applied. Retry with
    /// [`update_once`](Self::update_once) to get the original outcome.
    async fn update(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
    ) -> Result<Update> {
        self.update_once(id, expected, metadata, &WriteId::generate())
            .await
    }

    /// [`update`](Self::update) as the write `write`, recorded with the
    /// record (with the version it produced) atomically with the write.
    /// If the record is not at `expected` but `write` is among its last
    /// [`WriteId::RECENT`] writes, nothing is written and that write's
    /// original outcome, `Applied(the version it produced)`, is returned,
    /// however many (fewer than `RECENT`) writes others made since. A
    /// retry after the record was deleted or expired reports `Missing`
    /// (the record, and its write list, are gone).
    ///
    /// Use one id per logical write: retry a write whose reply was lost
    /// (a transient error) with the same id; after a `Conflict`, re-read,
    /// re-edit and write with a new id.
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update>;

    /// Slides expiry only. `false` if missing or expired.
    async fn touch(&self, id: &SessionId) -> Result<bool>;

    /// Deletes the record. `true` if a live record was deleted; deleting a
    /// missing one is not an error.
    async fn delete(&self, id: &SessionId) -> Result<bool>;

    /// One page of live session ids. Every session live for the whole scan
    /// is returned at least once (stores document whether they can repeat
    /// one); none deleted before the scan began is. `limit` (at least 1) is
    /// the page size a store aims for.
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page>;

    /// A stream of ids written or deleted through any handle on the same
    /// storage, if the store has one.
    fn changes(&self) -> Option<ChangeStream>;

    /// The expiry configuration.
    fn config(&self) -> &StoreConfig;
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    async fn create(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
    ) -> Result<Option<Version>> {
        (**self).create(id, metadata, ttl).await
    }
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        (**self).create_once(id, metadata, ttl, write).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        (**self).load(id).await
    }
    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        (**self).peek(id).await
    }
    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        (**self).version(id).await
    }
    async fn update(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
    ) -> Result<Update> {
        (**self).update(id, expected, metadata).await
    }
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        (**self).update_once(id, expected, metadata, write).await
    }
    async fn touch(&self, id: &SessionId) -> Result<bool> {
        (**self).touch(id).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        (**self).delete(id).await
    }
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        (**self).scan(cursor, limit).await
    }
    fn changes(&self) -> Option<ChangeStream> {
        (**self).changes()
    }
    fn config(&self) -> &StoreConfig {
        (**self).config()
    }
}
