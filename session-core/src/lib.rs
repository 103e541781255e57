#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod binding;
mod change;
mod clock;
mod config;
mod error;
/// Fuzz-target properties and seed-corpus replay: **not part of the API**
/// (feature `fuzzing`, for the repository's `fuzz/` package only).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::fuzz::*;
}
#[cfg(any(test, feature = "fuzzing"))]
mod fuzz;
mod id;
pub mod keys;
mod memory;
mod metadata;
mod record;
mod redact;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod version;
mod write_id;

pub use binding::{Binding, UNAUTHENTICATED, constant_time_eq};
pub use change::{Change, ChangeHub, ChangeStream};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{StoreConfig, Ttl};
pub use error::{
    BoxError, Cause, ConfigError, CorruptRecord, Error, InvalidInput, MetadataError,
    Misconfiguration, Result, display_chain,
};
pub use id::{MAX_SESSION_ID_LEN, MAX_WORKLOAD_ID_LEN, SessionId, WorkloadId};
pub use memory::MemoryStore;
pub use metadata::{Metadata, limits};
pub use record::{Cursor, Page, Record, Snapshot, Update};
pub use redact::redact_url;
pub use store::SessionStore;
pub use version::Version;
pub use write_id::{WriteId, write_log};
