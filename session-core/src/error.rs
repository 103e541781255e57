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
    /// The store cannot work as configured and retrying will not help: the
    /// database does not exist, the server rejects the user or the
    /// password, TLS fails or is not compiled in, the database file cannot
    /// be opened. Not transient (a gateway answers 500, not 503): fix the
    /// configuration. The message says what to check; the source, when
    /// there is one, is the server's or driver's own report.
    #[error("{problem}")]
    Misconfigured {
        /// What is wrong, and what to do about it.
        problem: Misconfiguration,
        /// The backend's report.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Wraps a backend error as [`Error::Unavailable`] (as a [`Cause`], so
    /// a chain the backend repeats is shown once).
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable(Cause::boxed(source.into()))
    }

    /// Builds an [`Error::Misconfigured`] around the backend's report (as a
    /// [`Cause`]).
    pub fn misconfigured(problem: Misconfiguration, source: impl Into<BoxError>) -> Self {
        Self::Misconfigured {
            problem,
            source: Some(Cause::boxed(source.into())),
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(key: impl Into<String>, source: CorruptRecord) -> Self {
        Self::Corrupt {
            key: key.into(),
            source,
        }
    }

    /// True for errors that may go away on retry (unavailable, timeout);
    /// false for everything else, [`Error::Misconfigured`] included.
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

/// Why a store cannot work as configured (see [`Error::Misconfigured`]).
/// Each message names the class of problem and what to check; the
/// server's own words are in the error's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misconfiguration {
    /// The database named in the URL does not exist (Postgres
    /// `invalid_catalog_name`, a Redis database index out of range).
    #[error("the database does not exist: create it, or fix the database name in the URL")]
    UnknownDatabase,
    /// The server does not accept this user (Postgres
    /// `invalid_authorization_specification`: an unknown role, or no
    /// `pg_hba.conf` entry for it).
    #[error(
        "the server does not accept this user: check the user name in the URL and that the server lets it connect"
    )]
    UserRejected,
    /// The password (or user/password pair) is wrong.
    #[error("the server rejected the credentials: check the user name and password in the URL")]
    Credentials,
    /// The user lacks a right the store needs (to create its schema or
    /// table, to read or write it).
    #[error(
        "permission denied: grant the user the rights the store needs (create its schema and table, read and write them) or use another user"
    )]
    Permission,
    /// TLS negotiation failed (the server does not speak TLS on that port,
    /// or its certificate is not trusted).
    #[error(
        "TLS negotiation failed: check that the server speaks TLS on this port and that its certificate is trusted"
    )]
    Tls,
    /// The URL asks for TLS but this build has no TLS support.
    #[error("the URL asks for TLS, which this build lacks: enable the `{feature}` cargo feature")]
    TlsNotCompiled {
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The database file cannot be opened (missing and not to be created,
    /// no such directory, no permission, not a database).
    #[error(
        "the database file cannot be opened: check the path and its permissions (add `mode=rwc` to a sqlite: URL to create a missing file)"
    )]
    CannotOpen,
}

/// A backend error kept as the source of [`Error::Unavailable`] or
/// [`Error::Misconfigured`], shown once.
///
/// Drivers often wrap an error and print its text again (sqlx's "error
/// returned from database: X" with source X, redis-rs's I/O errors that
/// print and return the same `io::Error`). A `Cause` displays (and
/// `Debug`-prints) exactly as the backend error does, but its
/// [`source`](std::error::Error::source) skips the causes whose text it
/// already shows, so a printed chain never says the same thing twice.
pub struct Cause(BoxError);

impl Cause {
    /// Wraps `err`.
    pub fn boxed(err: BoxError) -> BoxError {
        Box::new(Self(err))
    }

    /// The backend error itself.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            if !shown.contains(&cause.to_string()) {
                return Some(cause);
            }
            next = cause.source();
        }
        None
    }
}

/// `err` and its sources on one line, joined by `: ` (what a log line or a
/// command-line tool should print for a failure: the top error alone may
/// say only what failed, its sources say why).
///
/// ```
/// use session_core::{Error, display_chain};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// assert_eq!(display_chain(&Error::unavailable(io)), "storage unavailable: refused");
/// ```
pub fn display_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
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
    /// A write id's text form must be exactly 22 bytes.
    #[error("write id must be 22 bytes, got {len}")]
    WriteIdLength {
        /// The length seen.
        len: usize,
    },
    /// A write id's text form holds a byte outside `[A-Za-z0-9_-]`, or a
    /// last character that is not canonical.
    #[error("write id byte {byte:#04x} at {pos} is not valid in a write id")]
    WriteIdByte {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source's text again, as sqlx's and
    /// redis-rs's wrappers do.
    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with database: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("handshake failed")]
    struct Says(#[source] std::io::Error);

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused")
    }

    #[test]
    fn a_cause_skips_the_sources_it_already_shows() {
        let err = Error::unavailable(Repeats(io()));
        assert_eq!(
            display_chain(&err),
            "storage unavailable: error communicating with database: Connection refused"
        );
        // Debug is the backend's own (tests and logs match on its fields).
        let Error::Unavailable(source) = &err else {
            unreachable!()
        };
        assert!(format!("{source:?}").contains("ConnectionRefused"));
        // A source with text of its own is kept.
        let err = Error::misconfigured(Misconfiguration::Tls, Says(io()));
        assert!(
            display_chain(&err).ends_with("handshake failed: Connection refused"),
            "{}",
            display_chain(&err)
        );
    }

    #[test]
    fn misconfigured_is_permanent_and_says_what_to_do() {
        for problem in [
            Misconfiguration::UnknownDatabase,
            Misconfiguration::UserRejected,
            Misconfiguration::Credentials,
            Misconfiguration::Permission,
            Misconfiguration::Tls,
            Misconfiguration::TlsNotCompiled {
                feature: "tls-rustls",
            },
            Misconfiguration::CannotOpen,
        ] {
            let err = Error::misconfigured(problem, io());
            assert!(!err.is_transient(), "{err}");
            assert!(err.to_string().contains(':'), "no advice in {err}");
        }
        assert!(Error::unavailable(io()).is_transient());
    }
}
