//! Redis storage for distributed MCP gateway sessions: a
//! [`SessionStore`](session_core::SessionStore) where every gateway node
//! shares the same session records.
//!
//! - One hash per session at `prefix + id` (fields `v` version, `m`
//!   metadata JSON, `c` creation time and `t` sliding TTL, both in ms), so
//!   every operation touches one key and Redis Cluster works unchanged.
//! - Every mutation is one Lua script (`EVALSHA`, reloaded after
//!   `SCRIPT FLUSH`); expiry is set with `PEXPIRE`, or `PEXPIREAT` from the
//!   server's `TIME` capped by `max_lifetime`. Update is compare-and-set and
//!   never creates; no `WATCH`.
//! - `load` is one pipelined round trip of two reads (`HMGET` + `PTTL`); it
//!   slides the expiry (the `touch` script) only once more than
//!   [`slide_fraction`](RedisConfig::slide_fraction) (default 0.1) of
//!   the record's TTL has passed since the last slide.
//! - `version` is a single `HMGET` of two small fields: no slide, no metadata.
//! - Creates, updates and deletes are published on `prefix + "changes"`; the
//!   [change stream](session_core::SessionStore::changes) emits
//!   [`Change::Down`](session_core::Change::Down) as soon as it loses its
//!   connection, re-subscribes, and then emits
//!   [`Change::Resync`](session_core::Change::Resync).
//! - Records written by others that do not decode give
//!   [`Error::Corrupt`](session_core::Error::Corrupt) naming the key; the
//!   scripts check before writing, so nothing is overwritten.
//!
//! See the crate README for the operator view (key layout, `redis-cli`).
//!
//! # Modules
//!
//! - `config`: [`RedisConfig`], [`Topology`]; `keys`: [`KeyPrefix`] (key and
//!   channel names); `scripts` + `lua/*.lua`: the Lua scripts; `store`:
//!   [`RedisStore`]; `scan`: `SCAN` paging (standalone and cluster);
//!   `changes`: the pub/sub subscriber; `connection`: the command connection;
//!   `error`: conversion to [`session_core::Error`].
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update};
//! use session_storage_redis::{RedisConfig, RedisStore};
//!
//! let config = RedisConfig::new("redis://127.0.0.1:6379")
//!     .prefix("vmcp:session:")
//!     .store(StoreConfig::new(Duration::from_secs(1800))?)
//!     .response_timeout(Duration::from_secs(1));
//! let store = RedisStore::connect(config).await?;
//! let id = SessionId::generate();
//! let v1 = store.create(&id, &Metadata::new().with("tenant", "acme")?, Ttl::Default).await?.unwrap();
//! let record = store.load(&id).await?.unwrap();
//! let next = record.metadata.with("vmcp.backend.ids", "github")?;
//! assert!(matches!(store.update(&id, v1, &next).await?, Update::Applied(_)));
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `tls-rustls`: `rediss://` URLs (rustls, webpki roots).
//! - `cluster`: `RedisConfig::cluster` for Redis Cluster (`cluster-async`).
//! - `testcontainers`: for test harnesses, `testing::container_url` starts
//!   a pinned `redis:7.2` container when a Docker daemon answers.

mod changes;
mod config;
mod connection;
mod error;
mod keys;
mod scan;
mod scripts;
mod store;
#[cfg(feature = "testcontainers")]
pub mod testing;

pub use config::{Backoff, RedisConfig, Topology};
pub use error::UnexpectedReply;
pub use keys::{DEFAULT_PREFIX, KeyPrefix};
pub use store::RedisStore;
