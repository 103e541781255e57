//! Core types for distributed MCP gateway session state.
//!
//! A gateway session is a small string map ([`Metadata`]) kept in shared
//! storage with a sliding TTL and a [`Version`] that every write after
//! creation compares and bumps. This crate holds the pure parts: ids, the
//! metadata map and its vMCP key rules ([`keys`]), the [`SessionStore`]
//! trait and its semantics, errors, and [`MemoryStore`], the embedded
//! single-node default. It does no network I/O and needs no runtime.
//!
//! # Features
//!
//! - `testing`: the backend-agnostic contract suite ([`testing`]) that every
//!   store crate runs, and helpers to find test backends.

mod binding;
mod change;
mod clock;
mod config;
mod error;
mod id;
pub mod keys;
mod memory;
mod metadata;
mod record;
mod redact;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod version;

pub use binding::{Binding, UNAUTHENTICATED, constant_time_eq};
pub use change::{Change, ChangeHub, ChangeStream};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{StoreConfig, Ttl};
pub use error::{BoxError, ConfigError, CorruptRecord, Error, InvalidInput, MetadataError, Result};
pub use id::{MAX_SESSION_ID_LEN, MAX_WORKLOAD_ID_LEN, SessionId, WorkloadId};
pub use memory::MemoryStore;
pub use metadata::{Metadata, limits};
pub use record::{Cursor, Page, Record, Snapshot, Update};
pub use redact::redact_url;
pub use store::SessionStore;
pub use version::Version;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
