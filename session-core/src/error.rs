//! Error types. Stores convert their backend errors into [`Error`] at the
//! crate edge, so a caller can tell bad input, a corrupt record, an outage
//! and a timeout apart without knowing which store it talks to.

use std::time::Duration;

/// A boxed backend error kept as the source of [`Error::Unavailable`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something no store accepts; nothing was written.
    #[error("invalid input")]
    InvalidInput(#[from] InvalidInput),
    /// A stored record could not be decoded. The record is left as it is:
    /// the failing call neither deleted nor overwrote it.
    #[error("corrupt record at {key}")]
    Corrupt {
        /// The storage key (or row id) holding the record.
        key: String,
        /// What is wrong with it.
        #[source]
        source: CorruptRecord,
    },
    /// The record is at [`Version::MAX`](crate::Version::MAX): an update
    /// would take it past the highest version every store can hold, so it
    /// is refused and nothing is written. Permanent: delete and recreate
    /// the session.
    #[error("record at {key} is at the maximum version")]
    VersionLimit {
        /// The storage key (or row id) holding the record.
        key: String,
    },
    /// The storage backend could not be reached or refused the operation.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// The storage backend did not answer in time. The operation may or may
    /// not have been applied.
    #[error("storage operation timed out after {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// Wraps a backend error as [`Error::Unavailable`].
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable(source.into())
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(key: impl Into<String>, source: CorruptRecord) -> Self {
        Self::Corrupt {
            key: key.into(),
            source,
        }
    }

    /// True for errors that may go away on retry (unavailable, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Self {
        Self::InvalidInput(InvalidInput::Metadata(e))
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::InvalidInput(InvalidInput::Config(e))
    }
}

/// What is wrong with a stored record that someone else wrote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptRecord {
    /// The key holds another kind of value (e.g. a Redis string, not a hash).
    #[error("wrong storage type: {0}")]
    WrongType(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// The version field breaks the stored-version rule
    /// ([`Version::from_stored_text`](crate::Version::from_stored_text)):
    /// not 1..=2^53-1 in plain decimal digits. The text shown is the
    /// stored value, lossily decoded and cut to 64 characters.
    #[error("version is not an integer in 1..=2^53-1: {0:?}")]
    InvalidVersion(String),
    /// The metadata is not a valid metadata map.
    #[error("invalid metadata")]
    InvalidMetadata(#[source] MetadataError),
    /// The stored id is not a valid session id.
    #[error("invalid stored session id")]
    InvalidId(#[source] InvalidInput),
}

/// Input that is rejected before any storage is touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A session id must be 1..=128 bytes.
    #[error("session id must be 1..=128 bytes, got {len}")]
    SessionIdLength {
        /// The length seen.
        len: usize,
    },
    /// A session id must be visible ASCII (0x21..=0x7E).
    #[error("session id byte {byte:#04x} at {pos} is not visible ASCII")]
    SessionIdByte {
        /// The offending byte.
        byte: u8,
        /// Its position.
        pos: usize,
    },
    /// A workload id must be 1..=253 bytes.
    #[error("workload id must be 1..=253 bytes, got {len}")]
    WorkloadIdLength {
        /// The length seen.
        len: usize,
    },
    /// A workload id may hold only `[A-Za-z0-9._-]`.
    #[error("workload id byte {byte:#04x} at {pos} is not one of [A-Za-z0-9._-]")]
    WorkloadIdByte {
        /// The offending byte.
        byte: u8,
        /// Its position.
        pos: usize,
    },
    /// Metadata breaks a limit or is malformed.
    #[error("invalid metadata")]
    Metadata(#[from] MetadataError),
    /// An identity binding part is empty or holds a NUL byte.
    #[error("identity binding {part} must be non-empty and hold no NUL byte")]
    Binding {
        /// `issuer` or `subject`.
        part: &'static str,
    },
    /// Store configuration is inconsistent.
    #[error("invalid store configuration")]
    Config(#[from] ConfigError),
    /// A scan page size of zero.
    #[error("scan limit must be at least 1")]
    ScanLimit,
}

/// Why a metadata map was rejected. Every store enforces the same limits
/// (see [`crate::metadata::limits`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Keys must be non-empty.
    #[error("metadata key is empty")]
    EmptyKey,
    /// A key is longer than [`crate::metadata::limits::MAX_KEY_LEN`].
    #[error("metadata key of {len} bytes exceeds {max}")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Keys may not hold control characters.
    #[error("metadata key {key:?} holds a control character")]
    KeyControlChar {
        /// The key.
        key: String,
    },
    /// A value is longer than [`crate::metadata::limits::MAX_VALUE_LEN`].
    #[error("value of metadata key {key:?} is {len} bytes, exceeds {max}")]
    ValueTooLong {
        /// The key.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More entries than [`crate::metadata::limits::MAX_ENTRIES`].
    #[error("metadata holds {count} entries, exceeds {max}")]
    TooManyEntries {
        /// Entries seen.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Encoded JSON larger than [`crate::metadata::limits::MAX_ENCODED_LEN`].
    #[error("metadata encodes to {len} bytes, exceeds {max}")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a JSON object whose values are all strings.
    #[error("metadata is not a JSON object of strings: {0}")]
    NotStringMap(String),
}

/// Store configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sliding TTL must be at least one millisecond.
    #[error("ttl must be at least 1ms")]
    ZeroTtl,
    /// An absolute lifetime shorter than the sliding TTL makes no sense.
    #[error("max_lifetime ({max_lifetime:?}) is shorter than ttl ({ttl:?})")]
    MaxLifetimeBelowTtl {
        /// The TTL.
        ttl: Duration,
        /// The lifetime.
        max_lifetime: Duration,
    },
    /// A backend-specific setting is invalid (prefix, schema, table...).
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}
