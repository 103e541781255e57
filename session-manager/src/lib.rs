#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod cache;
mod closer;
mod connect;
mod error;
mod factory;
/// Fuzz-target properties: **not part of the API** (feature `fuzzing`,
/// for the repository's `fuzz/` package only).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::connect::fuzz::*;
}
mod manager;
pub mod metrics;
mod policy;

pub use builder::SessionManagerBuilder;
pub use connect::{ConnectError, ConnectOptions, connect};
pub use error::{Error, Result, SharedError};
pub use factory::{BuildCause, Built, Live, SessionFactory, vmcp_matches};
pub use manager::{BackendExpiry, BulkReport, CacheState, SessionManager, ShutdownReport};
pub use policy::ValidationPolicy;

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use session_storage_redis::{self as redis, RedisConfig, RedisStore};
/// The SQL stores (features `postgres`, `sqlite`).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use session_storage_sql as sql;
/// The Postgres store (feature `postgres`).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use session_storage_sql::{PostgresConfig, PostgresStore};
/// The SQLite store (feature `sqlite`).
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use session_storage_sql::{SqliteConfig, SqliteStore};
