#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod changes;
mod config;
mod connection;
mod error;
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
