//! Conversion of sqlx errors into [`session_core::Error`] at the crate edge.

use std::time::Duration;

use session_core::{CorruptRecord, Error, MetadataError, Misconfiguration};

/// Postgres `query_canceled` (raised by `statement_timeout`).
const PG_QUERY_CANCELED: &str = "57014";

/// Maps a sqlx error: pool acquire timeouts and statement timeouts become
/// [`Error::Timeout`]; a configuration the server or the driver refuses
/// ([`misconfiguration`]) becomes [`Error::Misconfigured`]; everything
/// else [`Error::Unavailable`]. The sqlx error is kept as the source.
pub(crate) fn from_sqlx(err: sqlx::Error, acquire: Duration, statement: Option<Duration>) -> Error {
    if let Some(problem) = misconfiguration(&err) {
        return Error::misconfigured(problem, err);
    }
    match &err {
        sqlx::Error::PoolTimedOut => Error::Timeout(acquire),
        sqlx::Error::Database(db) if db.code().as_deref() == Some(PG_QUERY_CANCELED) => {
            Error::Timeout(statement.unwrap_or_default())
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Error::Timeout(statement.unwrap_or(acquire))
        }
        _ => Error::unavailable(err),
    }
}

/// The permanent problem a sqlx error reports, if it is one:
///
/// - Postgres `3D000` (no such database), `28000` (the server does not
///   accept the user: unknown role, no `pg_hba.conf` entry), `28P01`
///   (wrong password), `42501` (insufficient privilege);
/// - SQLite `SQLITE_CANTOPEN`, `SQLITE_NOTADB`, `SQLITE_READONLY` (primary
///   codes 14, 26, 8);
/// - a TLS failure (the server does not speak TLS, a certificate is not
///   trusted, or the build has no TLS support).
pub(crate) fn misconfiguration(err: &sqlx::Error) -> Option<Misconfiguration> {
    match err {
        sqlx::Error::Tls(_) if !cfg!(feature = "tls-rustls") => {
            Some(Misconfiguration::TlsNotCompiled {
                feature: "tls-rustls",
            })
        }
        sqlx::Error::Tls(_) => Some(Misconfiguration::Tls),
        // rustls reports a refused certificate or a handshake the server
        // broke off as an I/O error of this kind; nothing else on a
        // Postgres connection does (protocol errors have their own kind).
        sqlx::Error::Io(io)
            if cfg!(feature = "tls-rustls") && io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Some(Misconfiguration::Tls)
        }
        sqlx::Error::Database(db) => match db.code().as_deref()? {
            "3D000" => Some(Misconfiguration::UnknownDatabase),
            "28000" => Some(Misconfiguration::UserRejected),
            "28P01" => Some(Misconfiguration::Credentials),
            "42501" => Some(Misconfiguration::Permission),
            code => match code.parse::<i32>().map(|c| c & 0xff) {
                Ok(14 | 26) => Some(Misconfiguration::CannotOpen),
                Ok(8) => Some(Misconfiguration::Permission),
                _ => None,
            },
        },
        _ => None,
    }
}

/// A stored row whose metadata does not decode.
pub(crate) fn corrupt_metadata(id: &str, err: MetadataError) -> Error {
    Error::corrupt(id, CorruptRecord::InvalidMetadata(err))
}

/// A stored row whose version is not a positive integer.
pub(crate) fn corrupt_version(id: &str, raw: i64) -> Error {
    Error::corrupt(id, CorruptRecord::InvalidVersion(raw.to_string()))
}

/// Converts a stored version with the one rule every store applies
/// (1..=[`session_core::Version::MAX`]).
pub(crate) fn version(id: &str, raw: i64) -> Result<session_core::Version, Error> {
    session_core::Version::from_stored_int(raw).ok_or_else(|| corrupt_version(id, raw))
}

/// Decodes a stored row's version and metadata, naming the row if either
/// is corrupt. Every read of both stores uses it (`load`, `peek`, `touch`).
/// The metadata comes as bytes: SQLite's TEXT can hold bytes that are not
/// UTF-8, which is corrupt, not an outage.
pub(crate) fn record(
    id: &str,
    raw_version: i64,
    metadata: &[u8],
) -> Result<session_core::Record, Error> {
    let version = version(id, raw_version)?;
    let text = std::str::from_utf8(metadata)
        .map_err(|e| corrupt_metadata(id, MetadataError::NotStringMap(e.to_string())))?;
    Ok(session_core::Record {
        version,
        metadata: session_core::Metadata::from_json(text).map_err(|e| corrupt_metadata(id, e))?,
    })
}

/// An update that would take `id` past [`session_core::Version::MAX`].
pub(crate) fn version_limit(id: &str) -> Error {
    Error::VersionLimit { key: id.to_owned() }
}

/// A version as the `bigint` the column holds (versions past `i64::MAX`
/// cannot exist in storage, so such an expectation never matches).
pub(crate) fn version_param(v: session_core::Version) -> i64 {
    i64::try_from(v.get()).unwrap_or(i64::MAX)
}

/// Milliseconds as the `bigint` the SQL takes.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Bad configuration, reported as invalid input.
pub(crate) fn config(err: session_core::ConfigError) -> Error {
    Error::InvalidInput(session_core::InvalidInput::Config(err))
}
