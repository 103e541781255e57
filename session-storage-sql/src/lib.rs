//! SQL storage for distributed MCP gateway sessions: [`PostgresStore`]
//! (feature `postgres`, default) and [`SqliteStore`] (feature `sqlite`),
//! both implementing [`session_core::SessionStore`] on sqlx with runtime
//! queries (no database at compile time).
//!
//! - One row per session in a configurable, validated `schema.table`,
//!   created by embedded, versioned migrations ([`migrate`]) that are safe
//!   when several stores start at once.
//! - Every operation is one statement on the database's clock (a load
//!   whose throttle window has passed sends a second one, the slide, and
//!   `touch` reads and decodes the row before its slide); updates are
//!   compare-and-set and never create.
//! - Postgres changes travel over `pg_notify` in the writing statement (or
//!   batched right after commit, [`NotifyMode`]) and a reconnecting
//!   listener that signals [`session_core::Change::Down`] when it loses its
//!   connection and [`session_core::Change::Resync`] once it listens again;
//!   SQLite's change stream is local to the process.
//! - A batched expired-row cleanup task ([`CleanupHandle`]).
//!
//! ```no_run
//! # async fn demo() -> session_core::Result<()> {
//! use std::time::Duration;
//! use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update};
//! use session_storage_sql::{CleanupConfig, PostgresConfig, PostgresStore};
//!
//! let store = PostgresStore::connect(
//!     PostgresConfig::new("postgres://app@db.internal/app?sslmode=verify-full")
//!         .schema("vmcp")
//!         .table("sessions")
//!         .store(StoreConfig::new(Duration::from_secs(1800))?),
//! )
//! .await?;
//! let _cleanup = store.spawn_cleanup(CleanupConfig::default());
//!
//! let id = SessionId::generate();
//! let v1 = store.create(&id, &Metadata::new().with("k", "v")?, Ttl::Default).await?.unwrap();
//! let md = Metadata::new().with("k", "w")?;
//! assert!(matches!(store.update(&id, v1, &md).await?, Update::Applied(_)));
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `postgres` (default): [`PostgresStore`].
//! - `sqlite`: [`SqliteStore`] (bundled SQLite, WAL mode).
//! - `tls-rustls`: TLS to Postgres via rustls (`sslmode` in the URL).
//! - `testcontainers`: lets the test harness start a pinned `postgres:16`
//!   container when no URL is given and a Docker daemon answers.

// Without a backend feature only the shared configuration types remain.
#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite")),
    allow(dead_code, unused_imports)
)]

mod cleanup;
mod config;
mod error;
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
