#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod changes;
mod clock;
mod config;
mod connection;
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
mod keys;
mod legacy;
mod record;
mod scan;
mod scripts;
mod store;
#[cfg(feature = "testcontainers")]
#[cfg_attr(docsrs, doc(cfg(feature = "testcontainers")))]
pub mod testing;

pub use config::{Backoff, RedisConfig, Topology};
pub use error::UnexpectedReply;
pub use keys::{DEFAULT_PREFIX, KeyPrefix};
pub use store::RedisStore;
