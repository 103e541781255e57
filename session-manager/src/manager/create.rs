//! Creation in two phases: reserve a placeholder, then activate it (build,
//! then compare-and-set over the placeholder, so a terminate in between wins).

use std::sync::Arc;

use session_core::{Metadata, SessionId, Snapshot, Ttl, Update, constant_time_eq, keys};

use super::{Inner, LiveOf};
use crate::cache::Lease;
use crate::closer::Pending;
use crate::error::{Error, Result};
use crate::factory::{BuildCause, Live, SessionFactory};
use crate::metrics as m;

impl<F: SessionFactory> Inner<F> {
    pub(super) async fn reserve(&self, placeholder: Metadata) -> Result<SessionId> {
        self.open()?;
        for _ in 0..3 {
            let id = SessionId::generate();
            let ttl = Ttl::Custom(self.cfg.reservation_ttl);
            match self.create_exactly_once(&id, &placeholder, ttl).await {
                Ok(Some(_)) => {
                    tracing::Span::current().record("session_id", tracing::field::display(&id));
                    return Ok(id);
                }
                Ok(None) => {}
                Err(e) => return Err(self.storage_error("create", e)),
            }
        }
        Err(Error::store(session_core::Error::unavailable(
            "could not allocate a fresh session id",
        )))
    }

    pub(super) async fn activate(
        self: &Arc<Self>,
        id: &SessionId,
        metadata: Metadata,
    ) -> Result<LiveOf<F>> {
        self.open()?;
        let metadata = with_backend_list(metadata)?;
        keys::validate(&metadata).map_err(Error::edit)?;
        let cached = {
            // The lease keeps the slot (and so its generation) until the
            // result is cached or dropped, cancelled or not.
            let lease = Lease::take(&self.cache, id);
            self.activate_leased(id, metadata, &lease).await?
        };
        match cached {
            Some(live) => Ok(live),
            // Lost the insert race: a terminate wins, otherwise restore.
            None => self.get(id, None, tracing::Span::current()).await,
        }
    }

    async fn activate_leased(
        &self,
        id: &SessionId,
        metadata: Metadata,
        lease: &Lease<'_, F::Session>,
    ) -> Result<Option<LiveOf<F>>> {
        let sent = self.sent_now();
        let placeholder = match self.timed(self.store.peek(id)).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return Err(Error::NotFound { id: id.clone() }),
            Err(e) => return Err(self.storage_error("load", e)),
        };
        if placeholder.metadata.contains_key(keys::BACKEND_IDS) {
            return Err(Error::AlreadyActive { id: id.clone() });
        }
        if let Some(bound) = placeholder.metadata.get(keys::IDENTITY_BINDING)
            && !metadata
                .get(keys::IDENTITY_BINDING)
                .is_some_and(|b| constant_time_eq(b.as_bytes(), bound.as_bytes()))
        {
            return Err(Error::Forbidden { id: id.clone() });
        }
        let snapshot = Snapshot {
            id: id.clone(),
            version: placeholder.version,
            metadata,
        };
        let built = self
            .factory
            .build(&snapshot, BuildCause::Create)
            .await
            .map_err(|e| Error::Build {
                source: crate::cache::shared(e),
            })?;
        // From here until it is cached, a dropped future closes the session.
        let pending = Pending::new(built.session, &self.closer);
        metrics::counter!(m::BUILDS, "cause" => "create").increment(1);
        let metadata = with_backend_list(built.metadata)?;
        let version = match self
            .update_exactly_once(id, placeholder.version, &metadata)
            .await
        {
            Ok(Update::Applied(v)) => v,
            Ok(Update::Conflict { .. }) => return Err(Error::AlreadyActive { id: id.clone() }),
            Ok(_) => return Err(Error::NotFound { id: id.clone() }),
            Err(e) => return Err(self.storage_error("update", e)),
        };
        let live = Arc::new(Live::new(
            Snapshot {
                id: id.clone(),
                version,
                metadata,
            },
            pending.session(),
        ));
        if self.insert(id, &live, lease.generation(), sent, false) {
            pending.keep();
            Ok(Some(live))
        } else {
            metrics::counter!(m::RESTORES_DISCARDED).increment(1);
            Ok(None)
        }
    }
}

/// Adds an empty `vmcp.backend.ids` if missing: its presence marks an active session.
fn with_backend_list(md: Metadata) -> Result<Metadata> {
    if md.contains_key(keys::BACKEND_IDS) {
        Ok(md)
    } else {
        md.with(keys::BACKEND_IDS, "").map_err(Error::edit)
    }
}
