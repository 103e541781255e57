#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend feature only the shared configuration types remain.
#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite")),
    allow(dead_code, unused_imports)
)]

mod cleanup;
mod config;
mod error;
/// Fuzz-target properties: **not part of the API** (feature `fuzzing`,
/// for the repository's `fuzz/` package only).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::fuzz::*;
}
#[cfg(any(test, feature = "fuzzing"))]
mod fuzz;
mod ident;
#[cfg(feature = "postgres")]
mod listener;
pub mod migrate;
#[cfg(feature = "postgres")]
mod notifier;
#[cfg(feature = "postgres")]
mod postgres;
mod scan;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use cleanup::{CleanupConfig, CleanupHandle, CleanupStats};
pub use config::{DEFAULT_SLIDE_FRACTION, PoolConfig};
#[cfg(feature = "postgres")]
pub use config::{NotifyMode, PostgresConfig};
#[cfg(feature = "sqlite")]
pub use config::{SqliteConfig, SqliteLocation};
pub use ident::Ident;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
