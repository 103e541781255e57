//! Conversion of `redis` errors and unexpected replies into
//! [`session_core::Error`] at the crate edge (sources are kept).

use std::time::Duration;

use redis::{ErrorKind, RedisError};
use session_core::{CorruptRecord, Error, Misconfiguration};

use crate::scripts::CORRUPT_CODE;

/// A reply that does not have the shape a script or command promises
/// (e.g. a proxy in between answered something else).
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply to {command}: {reply}")]
pub struct UnexpectedReply {
    command: &'static str,
    reply: String,
}

impl UnexpectedReply {
    pub(crate) fn new(command: &'static str, reply: &redis::Value) -> Self {
        let mut reply = format!("{reply:?}");
        if reply.len() > 200 {
            let mut cut = 200;
            while !reply.is_char_boundary(cut) {
                cut -= 1;
            }
            reply.truncate(cut);
            reply.push('…');
        }
        Self { command, reply }
    }
}

impl From<UnexpectedReply> for Error {
    fn from(e: UnexpectedReply) -> Self {
        Error::unavailable(e)
    }
}

/// Maps a `redis` error for an operation on `key`.
///
/// - a script's `VMCPCORRUPT` reply or the server's `WRONGTYPE` →
///   [`Error::Corrupt`] naming `key`;
/// - a refused login or a missing right (`WRONGPASS`, `NOAUTH`, `NOPERM`,
///   a failed `AUTH`, a database index the server does not have) →
///   [`Error::Misconfigured`]: retrying cannot help;
/// - an I/O timeout → [`Error::Timeout`] with the configured response timeout;
/// - anything else (refused, dropped, cluster down...) → [`Error::Unavailable`].
pub(crate) fn map_redis(err: RedisError, key: &str, timeout: Duration) -> Error {
    match err.code() {
        Some(CORRUPT_CODE) => {
            return Error::corrupt(key, parse_corrupt(err.detail().unwrap_or("")));
        }
        Some("WRONGTYPE") => {
            return Error::corrupt(key, CorruptRecord::WrongType("not a hash".to_owned()));
        }
        _ => {}
    }
    if let Some(problem) = misconfiguration(&err) {
        return Error::misconfigured(problem, err);
    }
    if err.is_timeout() {
        return Error::Timeout(timeout);
    }
    Error::unavailable(err)
}

/// The configuration problem a Redis error reports, if it is one.
fn misconfiguration(err: &RedisError) -> Option<Misconfiguration> {
    if err.kind() == ErrorKind::AuthenticationFailed {
        return Some(Misconfiguration::Credentials);
    }
    match err.code() {
        Some("WRONGPASS" | "NOAUTH") => return Some(Misconfiguration::Credentials),
        Some("NOPERM") => return Some(Misconfiguration::Permission),
        _ => {}
    }
    // redis-rs reports a failed `SELECT` at connection setup as a plain
    // response error with this description.
    if err.to_string().contains("refused to switch database") {
        return Some(Misconfiguration::UnknownDatabase);
    }
    None
}

/// Maps a failure to open a connection to `url`: as [`map_redis`], and a
/// `rediss://` URL whose connection was made but whose handshake then
/// broke off (the server answered something that is not TLS, or a
/// certificate was refused) is
/// [`Misconfiguration::Tls`].
pub(crate) fn map_connect(err: RedisError, url: &str, timeout: Duration) -> Error {
    let tls = url.starts_with("rediss://") || url.starts_with("rediss+");
    // The TCP connection was made (not refused, not timed out) but the
    // TLS handshake on it failed: rustls reports that as an I/O error.
    if tls && err.kind() == ErrorKind::Io && !err.is_timeout() && !err.is_connection_refusal() {
        return Error::misconfigured(Misconfiguration::Tls, err);
    }
    map_redis(err, "", timeout)
}

/// Parses the detail of a `VMCPCORRUPT <kind> <detail>` reply. A bad
/// version comes as hex of its first 32 bytes (the scripts never echo
/// stored bytes); it is shown as `load` shows it (lossy UTF-8).
fn parse_corrupt(detail: &str) -> CorruptRecord {
    let (kind, rest) = detail.split_once(' ').unwrap_or((detail, ""));
    match kind {
        "wrongtype" if rest == "noexpiry" => {
            CorruptRecord::WrongType("record without an expiry".to_owned())
        }
        "wrongtype" => CorruptRecord::WrongType(rest.to_owned()),
        "version" => CorruptRecord::InvalidVersion(unhex(rest).map_or_else(
            || rest.to_owned(),
            |raw| String::from_utf8_lossy(&raw).chars().take(64).collect(),
        )),
        "missing" => CorruptRecord::MissingField(field_name(rest)),
        _ => CorruptRecord::WrongType(detail.to_owned()),
    }
}

/// Decodes lowercase hex (`None` if it is not).
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The static name of a hash field reported missing or malformed.
pub(crate) fn field_name(field: &str) -> &'static str {
    match field {
        "v" => "v",
        "m" => "m",
        "c" => "c",
        "t" => "t",
        "w" => "w",
        "e" => "e",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_corrupt_details() {
        assert!(
            matches!(parse_corrupt("wrongtype string"), CorruptRecord::WrongType(t) if t == "string")
        );
        assert!(
            matches!(parse_corrupt("version 616263"), CorruptRecord::InvalidVersion(v) if v == "abc")
        );
        assert!(
            matches!(parse_corrupt("version fffe31"), CorruptRecord::InvalidVersion(v) if v == "\u{fffd}\u{fffd}1")
        );
        assert!(matches!(
            parse_corrupt("missing v"),
            CorruptRecord::MissingField("v")
        ));
        assert!(matches!(
            parse_corrupt("missing c"),
            CorruptRecord::MissingField("c")
        ));
        assert!(matches!(
            parse_corrupt("missing e"),
            CorruptRecord::MissingField("e")
        ));
        assert!(
            matches!(parse_corrupt("wrongtype noexpiry"), CorruptRecord::WrongType(t) if t == "record without an expiry")
        );
    }
}
