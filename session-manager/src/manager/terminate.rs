//! Terminate, and forgetting a session storage no longer has.

use session_core::{Binding, SessionId};

use super::Inner;
use crate::error::{Error, Result};
use crate::factory::{SessionFactory, authorizes};
use crate::metrics::Cause;

impl<F: SessionFactory> Inner<F> {
    pub(super) async fn terminate(&self, id: &SessionId) -> Result<bool> {
        self.open()?;
        let deleted = self
            .timed(self.store.delete(id))
            .await
            .map_err(|e| self.storage_error("delete", e))?;
        if let Some(s) = self.cache.invalidate(id) {
            self.closer.close(s, Cause::Terminated);
        }
        Ok(deleted)
    }

    pub(super) async fn terminate_for(&self, id: &SessionId, caller: &Binding) -> Result<bool> {
        self.open()?;
        let Some(rec) = self
            .timed(self.store.peek(id))
            .await
            .map_err(|e| self.storage_error("load", e))?
        else {
            self.forget(id);
            return Err(Error::NotFound { id: id.clone() });
        };
        if !authorizes(&rec.metadata, caller) {
            return Err(Error::Forbidden { id: id.clone() });
        }
        self.terminate(id).await
    }

    /// Storage says the session is gone (a delete event, a probe or load
    /// that found nothing): a fresh generation, the in-flight restore
    /// detached, the entry handed to the closer. Synchronous: safe in the
    /// listener and in any future that may be dropped.
    pub(super) fn forget(&self, id: &SessionId) {
        if let Some(s) = self.cache.invalidate(id) {
            self.closer.close(s, Cause::Gone);
        }
    }
}
