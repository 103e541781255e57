//! [`WithCleanup`]: a SQL store that owns its expired-row cleanup task, so
//! the task [`connect`](crate::connect) starts lives exactly as long as
//! the store handle it returns.

use async_trait::async_trait;
use session_core::{
    ChangeStream, Cursor, Metadata, Page, Record, Result, SessionId, SessionStore, StoreConfig,
    Ttl, Update, Version, WriteId,
};
use session_storage_sql::CleanupHandle;

/// `store`, with its cleanup task: dropping the last handle stops the task.
pub(crate) struct WithCleanup<S> {
    pub(crate) store: S,
    pub(crate) _cleanup: CleanupHandle,
}

#[async_trait]
impl<S: SessionStore> SessionStore for WithCleanup<S> {
    async fn create(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
    ) -> Result<Option<Version>> {
        self.store.create(id, metadata, ttl).await
    }

    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        self.store.create_once(id, metadata, ttl, write).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.store.load(id).await
    }

    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        self.store.peek(id).await
    }

    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        self.store.version(id).await
    }

    async fn update(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
    ) -> Result<Update> {
        self.store.update(id, expected, metadata).await
    }

    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        self.store.update_once(id, expected, metadata, write).await
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        self.store.touch(id).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.store.delete(id).await
    }

    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        self.store.scan(cursor, limit).await
    }

    fn changes(&self) -> Option<ChangeStream> {
        self.store.changes()
    }

    fn config(&self) -> &StoreConfig {
        self.store.config()
    }
}
