//! The client-side deadline on every [`PostgresStore`] operation.
//!
//! `statement_timeout` is enforced by the server, so it cannot end a
//! statement whose connection stalled (a blackholed network path, a frozen
//! server): the client would wait for a reply that never comes. Every
//! operation is therefore also bounded here by
//! [`PoolConfig::operation_timeout`](crate::PoolConfig::operation_timeout)
//! and reported as [`Error::Timeout`]. The statements themselves are
//! implemented by `PostgresStore::*_unbounded` (in `mod.rs`); the public [`SessionStore`]
//! impl wraps each one.

use std::future::Future;

use async_trait::async_trait;
use session_core::{
    ChangeStream, Cursor, Error, Metadata, Page, Record, Result, SessionId, SessionStore,
    StoreConfig, Ttl, Update, Version, WriteId,
};

use super::PostgresStore;

impl PostgresStore {
    /// Runs `op` within the operation timeout, if one is set. A cancelled
    /// statement leaves its connection to sqlx, which waits for the
    /// server's `ReadyForQuery` before reusing it (itself bounded, by the
    /// next operation's deadline).
    async fn bounded<T>(&self, op: impl Future<Output = Result<T>> + Send) -> Result<T> {
        match self.inner.operation_timeout {
            Some(limit) => tokio::time::timeout(limit, op)
                .await
                .unwrap_or(Err(Error::Timeout(limit))),
            None => op.await,
        }
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        self.bounded(self.create_once_unbounded(id, metadata, ttl, write))
            .await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.bounded(self.load_unbounded(id)).await
    }
    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        self.bounded(self.peek_unbounded(id)).await
    }
    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        self.bounded(self.version_unbounded(id)).await
    }
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        self.bounded(self.update_once_unbounded(id, expected, metadata, write))
            .await
    }
    async fn touch(&self, id: &SessionId) -> Result<bool> {
        self.bounded(self.touch_unbounded(id)).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.bounded(self.delete_unbounded(id)).await
    }
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        self.bounded(self.scan_unbounded(cursor, limit)).await
    }
    fn changes(&self) -> Option<ChangeStream> {
        self.inner
            .hub
            .as_ref()
            .map(session_core::ChangeHub::subscribe)
    }
    fn config(&self) -> &StoreConfig {
        &self.inner.config
    }
}
