//! Change notifications: which sessions another handle wrote or deleted.

use tokio::sync::broadcast;

use crate::id::SessionId;
use crate::version::Version;

/// One change seen by a store's change stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The session was created or updated and now has `version`.
    Written {
        /// The session.
        id: SessionId,
        /// Its new version.
        version: Version,
    },
    /// The session was deleted. Expiry is not reported.
    Deleted {
        /// The session.
        id: SessionId,
    },
    /// Changes may have been missed (a reconnect, a lagging receiver):
    /// every cached session must be re-validated.
    Resync,
    /// The stream lost its connection: changes made from now on may not be
    /// delivered until the next [`Change::Resync`], which the store sends
    /// once it is subscribed again. Consumers must validate by probing
    /// between the two.
    Down,
}

/// A receiver of [`Change`]s. Falling behind is reported as a
/// [`Change::Resync`], never silently skipped.
#[derive(Debug)]
pub struct ChangeStream {
    rx: broadcast::Receiver<Change>,
}

impl ChangeStream {
    /// The next change; `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        match self.rx.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The sending side stores keep: cheap to clone, fan-out to every stream.
#[derive(Clone, Debug)]
pub struct ChangeHub {
    tx: broadcast::Sender<Change>,
}

impl ChangeHub {
    /// A hub whose receivers may fall `capacity` changes behind before they
    /// see a [`Change::Resync`].
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// A new stream that sees changes published from now on.
    pub fn subscribe(&self) -> ChangeStream {
        ChangeStream {
            rx: self.tx.subscribe(),
        }
    }

    /// Publishes a change (dropped when nobody listens).
    pub fn publish(&self, change: Change) {
        if self.has_subscribers() {
            let _ = self.tx.send(change);
        }
    }

    /// Whether anyone listens (lets a store skip building events).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }
}

impl Default for ChangeHub {
    fn default() -> Self {
        Self::new(1024)
    }
}
