//! Node-local live MCP gateway sessions over shared storage.
//!
//! Storage ([`SessionStore`](session_core::SessionStore)) is the source of
//! truth; each gateway node caches live sessions (open backend connections)
//! built from stored metadata by an application [`SessionFactory`], and
//! rebuilds them on a miss. The [`SessionManager`] does that without the
//! races a naive cache has: one restore per id per node however many callers
//! wait, compare-and-set writes that never resurrect a terminated session,
//! a per-id generation that discards a restore finishing after a terminate,
//! and adoption of newer stored versions that still match the live session
//! (no eviction storm between nodes).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use session_core::{keys, Binding, MemoryStore, Metadata, Snapshot, StoreConfig, WorkloadId};
//! use session_manager::{BuildCause, Built, Error, SessionFactory, SessionManager, ValidationPolicy};
//!
//! struct Echo;
//! #[async_trait::async_trait]
//! impl SessionFactory for Echo {
//!     type Session = Arc<String>;
//!     type Error = std::convert::Infallible;
//!     async fn build(&self, s: &Snapshot, _: BuildCause) -> Result<Built<Arc<String>>, Self::Error> {
//!         Ok(Built::new(Arc::new(format!("live {}", s.id)), s.metadata.clone()))
//!     }
//!     async fn close(&self, _session: Arc<String>) {}
//! }
//!
//! let store = Arc::new(MemoryStore::new(StoreConfig::default()));
//! let node_a = SessionManager::builder(store.clone(), Echo).build();
//! let node_b = SessionManager::builder(store, Echo).policy(ValidationPolicy::EveryAccess).build();
//!
//! let alice = Binding::identity("https://idp.example", "alice")?;
//! let md = keys::with_backend(&Metadata::new(), &WorkloadId::parse("github")?, "gh-1")?;
//! let md = keys::with_binding(&md, &alice)?;
//! let live = node_a.create(md).await?;
//! let id = live.id().clone();
//!
//! // Another node restores it from storage.
//! assert_eq!(node_b.get_for(&id, &alice).await?.version(), live.version());
//! let mallory = Binding::identity("https://idp.example", "mallory")?;
//! assert!(matches!(node_b.get_for(&id, &mallory).await, Err(Error::Forbidden { .. })));
//!
//! node_b.terminate(&id).await?;
//! assert!(matches!(node_b.get(&id).await, Err(Error::NotFound { .. })));
//! node_a.shutdown().await;
//! node_b.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See the crate README for the guarantees of each [`ValidationPolicy`],
//! the error to HTTP mapping and the metric names ([`metrics`]).

mod builder;
mod cache;
mod closer;
mod connect;
mod error;
mod factory;
mod manager;
pub mod metrics;
mod policy;

pub use builder::SessionManagerBuilder;
pub use connect::{ConnectError, connect};
pub use error::{Error, Result, SharedError};
pub use factory::{BuildCause, Built, Live, SessionFactory, vmcp_matches};
pub use manager::{BackendExpiry, BulkReport, CacheState, SessionManager, ShutdownReport};
pub use policy::ValidationPolicy;

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
pub use session_storage_redis::{self as redis, RedisConfig, RedisStore};
/// The SQL stores (features `postgres`, `sqlite`).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use session_storage_sql as sql;
/// The Postgres store (feature `postgres`).
#[cfg(feature = "postgres")]
pub use session_storage_sql::{PostgresConfig, PostgresStore};
/// The SQLite store (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use session_storage_sql::{SqliteConfig, SqliteStore};
