//! The stored record: one Redis string per session, a short text header
//! followed by the metadata JSON.
//!
//! ```text
//! s3 <expires> <version> <created> <ttl>\n<recent writes>\n<metadata JSON>
//! s2 <version> <created> <ttl>\n<recent writes>\n<metadata JSON>
//! s1 <version> <created> <ttl>\n<metadata JSON>
//! ```
//!
//! - `s3 ` names the layout (format 3, what every script writes); `s2 `
//!   (format 2, no deadline in the header) and `s1 ` (format 1, without the
//!   write list either), written by earlier releases, are still read and
//!   become `s3` on their next write: an update, a touch, or any `load`
//!   (which always runs the touch script for them). A string with none of
//!   the three tags was not written by this store.
//! - `expires` (`s3` only): exactly 13 decimal digits, zero-padded, at the
//!   fixed offset [`EXPIRES_AT`]: a deadline in ms on the server's clock,
//!   never later than the key's own expiry (so `touch` rewrites it in place
//!   with `SETRANGE key 3`). Where the writing script read `TIME` (`create`;
//!   `update` and `touch` with `max_lifetime`; a migration from `s2`, `s1`
//!   or a hash; or when the client sent no clock estimate) it is exactly
//!   the deadline the script gave the key with `PXAT`/`PEXPIREAT`.
//!   Otherwise (`update` and the in-place `touch` without `max_lifetime`)
//!   it is the writing client's lower bound of the server's clock
//!   ([`crate::clock::ServerClock::server_now_low_ms`]) plus the ttl, while
//!   the key gets `PX`/`PEXPIRE ttl` when the script runs, later: so `e`
//!   is at or a little before (about half a round trip on a local network)
//!   the key's real expiry, never after it. `load` decides its slide from
//!   it and an estimate of the server's clock ([`crate::clock`]): an early
//!   `e` can only make it slide early, never late; the key's own expiry
//!   stays the truth (a key the server expired is never read).
//! - `version`: the record's version, 1..=2^53-1 in plain decimal digits
//!   (the rule of [`Version::from_stored_text`]).
//! - `created`: the server's clock (`TIME`) in ms when the record was
//!   created, 1 to 15 digits: the base of the `max_lifetime` cap.
//! - `ttl`: the record's own sliding TTL in ms, 1 to 15 digits, no leading
//!   zero (a placeholder created with a shorter TTL slides by it).
//! - one `\n`; in `s3` and `s2`, then the record's last applied writes,
//!   newest first, each `<write id>:<16-digit version>`, separated by
//!   spaces, at most [`write_log::MAX_LEN`] bytes (see
//!   [`session_core::write_log`]), empty for a record no write id has
//!   written, and another `\n`;
//! - then the metadata JSON exactly as written.
//!
//! The header is at most [`HEADER_MAX`] bytes, so `version` reads it with
//! one `GETRANGE key 0 79` and never transfers the metadata; `load` reads
//! the whole string with one `GET` (pipelined with `TIME` about once every
//! 10 s per store, to refresh the clock estimate). The key's expiry is the
//! record's expiry, on the server's clock. The Lua scripts (`lua/*.lua`)
//! parse and check the header with the same rules.

use session_core::{CorruptRecord, Error, Metadata, MetadataError, Result, Version, write_log};

/// The layout tag of the records every script writes.
pub(crate) const MAGIC: &[u8] = b"s3 ";
/// The layout tag of records written by the previous release (no
/// deadline in the header).
pub(crate) const MAGIC_V2: &[u8] = b"s2 ";
/// The layout tag of records written by earlier releases (no write list).
pub(crate) const MAGIC_V1: &[u8] = b"s1 ";

/// Where the 13 digits of an `s3` record's deadline start (`SETRANGE key 3`).
pub(crate) const EXPIRES_AT: usize = 3;
/// The width of an `s3` record's deadline: ms since the epoch, zero-padded
/// (13 digits last until the year 2286).
pub(crate) const EXPIRES_LEN: usize = 13;

/// The longest header, `\n` included (`s3 ` + 13 + 1 + 16 + 1 + 15 + 1 +
/// 15 + 1 = 66, rounded up): what `version` reads with `GETRANGE key 0 79`.
pub(crate) const HEADER_MAX: usize = 80;

/// A checked record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The record's version.
    pub version: Version,
    /// The record's own sliding TTL, ms.
    pub ttl_ms: u64,
    /// The length of the header line, `\n` included: the write list (in
    /// `s2`) or the metadata (in `s1`) starts here.
    pub len: usize,
    /// Whether the record has a write list line (`s3` and `s2`).
    pub has_writes: bool,
    /// The deadline in the header (`s3` only): ms on the server's clock.
    pub expires_ms: Option<u64>,
}

/// The lossy text of a bad field, for an error (at most 64 characters).
pub(crate) fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).chars().take(64).collect()
}

/// A positive decimal integer of at most 15 digits, no leading zero (what
/// the scripts accept as the TTL: exact in a Lua double).
pub(crate) fn is_count(raw: &[u8]) -> bool {
    (1..=15).contains(&raw.len()) && raw[0] != b'0' && raw.iter().all(u8::is_ascii_digit)
}

/// 1 to 15 decimal digits (a creation time).
pub(crate) fn is_created(raw: &[u8]) -> bool {
    (1..=15).contains(&raw.len()) && raw.iter().all(u8::is_ascii_digit)
}

/// Parses digits already checked by [`is_count`] or [`is_created`].
fn digits(raw: &[u8]) -> u64 {
    raw.iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))
}

/// Decodes a stored version with the one rule every store applies.
pub(crate) fn decode_version(key: &str, raw: &[u8]) -> Result<Version> {
    Version::from_stored_text(raw)
        .ok_or_else(|| Error::corrupt(key, CorruptRecord::InvalidVersion(shown(raw))))
}

/// Decodes the 16 zero-padded digits of a write list entry's version.
pub(crate) fn decode_logged_version(key: &str, raw: &[u8]) -> Result<Version> {
    let start = raw.iter().position(|&b| b != b'0').unwrap_or(raw.len());
    if raw.len() != 16 {
        return Err(Error::corrupt(
            key,
            CorruptRecord::InvalidVersion(shown(raw)),
        ));
    }
    decode_version(key, &raw[start..])
}

/// Checks the header at the start of `raw` (a whole record, or its first
/// [`HEADER_MAX`] bytes). The errors name the first broken part, in the
/// order the scripts check them: the layout tag and the end of the header
/// (wrong type), then `e` (in `s3`), `v`, `c`, `t`.
pub(crate) fn decode_header(key: &str, raw: &[u8]) -> Result<Header> {
    let wrong = |what: &str| Error::corrupt(key, CorruptRecord::WrongType(what.to_owned()));
    let missing = |field: &'static str| Error::corrupt(key, CorruptRecord::MissingField(field));
    let v3 = raw.starts_with(MAGIC);
    let has_writes = v3 || raw.starts_with(MAGIC_V2);
    if !has_writes && !raw.starts_with(MAGIC_V1) {
        return Err(wrong("string without the s3, s2 or s1 record header"));
    }
    let window = &raw[..raw.len().min(HEADER_MAX)];
    let end = window
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| wrong("record header without its end"))?;
    let mut start = MAGIC.len();
    let mut expires_ms = None;
    if v3 {
        // Exactly 13 digits and one space, at a fixed offset.
        let digits_end = EXPIRES_AT + EXPIRES_LEN;
        let e = window.get(EXPIRES_AT..digits_end).unwrap_or_default();
        if end <= digits_end
            || window[digits_end] != b' '
            || e.len() != EXPIRES_LEN
            || !e.iter().all(u8::is_ascii_digit)
        {
            return Err(missing("e"));
        }
        expires_ms = Some(digits(e));
        start = digits_end + 1;
    }
    let mut fields = window[start..end].splitn(3, |&b| b == b' ');
    let v = fields.next().unwrap_or_default();
    let c = fields.next().unwrap_or_default();
    let t = fields.next().unwrap_or_default();
    if v.is_empty() {
        return Err(missing("v"));
    }
    let version = decode_version(key, v)?;
    if !is_created(c) {
        return Err(missing("c"));
    }
    if !is_count(t) {
        return Err(missing("t"));
    }
    Ok(Header {
        version,
        ttl_ms: digits(t),
        len: end + 1,
        has_writes,
        expires_ms,
    })
}

/// Decodes the metadata JSON of a loaded record.
pub(crate) fn decode_metadata(key: &str, raw: &[u8]) -> Result<Metadata> {
    let invalid = |e: MetadataError| Error::corrupt(key, CorruptRecord::InvalidMetadata(e));
    let text = std::str::from_utf8(raw)
        .map_err(|e| invalid(MetadataError::NotStringMap(e.to_string())))?;
    Metadata::from_json(text).map_err(invalid)
}

/// Where the metadata starts in an `s3` or `s2` record whose header line ends at
/// `from`: after the write list line, which must end within
/// [`write_log::MAX_LEN`] bytes (the update script reads no further).
/// Its content is not checked here: the scripts and lookups read only
/// entry-aligned, well-formed entries from it, so a garbled list can
/// never make a write look applied.
pub(crate) fn skip_writes(key: &str, raw: &[u8], from: usize) -> Result<usize> {
    let window = &raw[from..raw.len().min(from + write_log::MAX_LEN + 1)];
    window
        .iter()
        .position(|&b| b == b'\n')
        .map(|n| from + n + 1)
        .ok_or_else(|| Error::corrupt(key, CorruptRecord::MissingField("w")))
}

/// Decodes a whole record: its header, then the metadata after it.
pub(crate) fn decode(key: &str, raw: &[u8]) -> Result<(Header, Metadata)> {
    let header = decode_header(key, raw)?;
    let start = if header.has_writes {
        skip_writes(key, raw, header.len)?
    } else {
        header.len
    };
    let metadata = decode_metadata(key, &raw[start..])?;
    Ok((header, metadata))
}

/// Encodes an `s3` record (the scripts build the same bytes on the
/// server). `expires_ms` must be below 10^13.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode(
    expires_ms: u64,
    version: Version,
    created_ms: u64,
    ttl_ms: u64,
    writes: &str,
    metadata_json: &str,
) -> Vec<u8> {
    debug_assert!(expires_ms < 10_000_000_000_000);
    let header = format!(
        "s3 {expires_ms:013} {} {created_ms} {ttl_ms}",
        version.get()
    );
    with_body(header, writes, metadata_json)
}

/// Encodes an `s2` record, the layout of the previous release (tests and
/// the fuzz properties: a reader must still take it).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode_v2(
    version: Version,
    created_ms: u64,
    ttl_ms: u64,
    writes: &str,
    metadata_json: &str,
) -> Vec<u8> {
    let header = format!("s2 {} {created_ms} {ttl_ms}", version.get());
    with_body(header, writes, metadata_json)
}

/// A header line, then the write list line and the metadata.
#[cfg(any(test, feature = "fuzzing"))]
fn with_body(header: String, writes: &str, metadata_json: &str) -> Vec<u8> {
    let mut out = header.into_bytes();
    for part in ["\n", writes, "\n", metadata_json] {
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<impl std::fmt::Debug>) -> CorruptRecord {
        match r {
            Err(Error::Corrupt { key, source }) => {
                assert_eq!(key, "k");
                source
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_and_reads_the_header_alone() {
        let raw = encode(
            1_764_300_600_000,
            Version::new(3),
            17,
            600_000,
            "",
            r#"{"a":"b"}"#,
        );
        assert_eq!(raw, b"s3 1764300600000 3 17 600000\n\n{\"a\":\"b\"}");
        let (h, m) = decode("k", &raw).unwrap();
        assert_eq!((h.version, h.ttl_ms, h.len), (Version::new(3), 600_000, 29));
        assert_eq!(h.expires_ms, Some(1_764_300_600_000));
        assert_eq!(m, Metadata::new().with("a", "b").unwrap());
        // The deadline is zero-padded at its fixed offset.
        let raw = encode(42, Version::new(3), 17, 600_000, "", "{}");
        assert_eq!(&raw[EXPIRES_AT..EXPIRES_AT + EXPIRES_LEN], b"0000000000042");
        assert_eq!(decode("k", &raw).unwrap().0.expires_ms, Some(42));
        // Format 2 (no deadline) and format 1 (no write list either) are
        // still read.
        let raw = encode_v2(Version::new(3), 17, 600_000, "", r#"{"a":"b"}"#);
        assert_eq!(raw, b"s2 3 17 600000\n\n{\"a\":\"b\"}");
        let (h, m2) = decode("k", &raw).unwrap();
        assert_eq!(
            (h.version, h.has_writes, h.expires_ms, h.len),
            (Version::new(3), true, None, 15)
        );
        assert_eq!(m2, m);
        let (h, m1) = decode("k", b"s1 3 17 600000\n{\"a\":\"b\"}").unwrap();
        assert_eq!(
            (h.version, h.has_writes, h.expires_ms, m1),
            (Version::new(3), false, None, m)
        );
        // A full write list.
        let w = session_core::WriteId::generate();
        let mut log = String::new();
        for v in 1..=5 {
            log = write_log::push(&log, &w.log_entry(Version::new(v)));
        }
        let raw = encode(1, Version::new(5), 17, 600_000, &log, "{}");
        assert_eq!(decode("k", &raw).unwrap().1, Metadata::new());
        // What GETRANGE 0 79 returns of a longer record is enough.
        let big = encode(
            9_999_999_999_999,
            Version::MAX,
            999_999_999_999_999,
            999_999_999_999_999,
            "",
            &"x".repeat(500),
        );
        assert!(big.iter().position(|&b| b == b'\n').unwrap() < HEADER_MAX);
        assert_eq!(
            decode_header("k", &big[..HEADER_MAX]).unwrap().version,
            Version::MAX
        );
    }

    /// A stored value and the check its error must pass.
    type Case = (&'static [u8], fn(&CorruptRecord) -> bool);

    #[test]
    fn names_the_first_broken_part() {
        let cases: [Case; 12] = [
            (b"not ours", |r| matches!(r, CorruptRecord::WrongType(_))),
            (b"s1 1 1 5", |r| matches!(r, CorruptRecord::WrongType(_))),
            (b"s1  1 5\n{}", |r| {
                matches!(r, CorruptRecord::MissingField("v"))
            }),
            (b"s1   5\n{}", |r| {
                matches!(r, CorruptRecord::MissingField("v"))
            }),
            (
                b"s1 +5 1 5\n{}",
                |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "+5"),
            ),
            (
                b"s1 0 1 5\n{}",
                |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "0"),
            ),
            (
                b"s1 9007199254740992 1 5\n{}",
                |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "9007199254740992"),
            ),
            (b"s1 1 x 5\n{}", |r| {
                matches!(r, CorruptRecord::MissingField("c"))
            }),
            (b"s1 1\n{}", |r| {
                matches!(r, CorruptRecord::MissingField("c"))
            }),
            (b"s1 1 1 0\n{}", |r| {
                matches!(r, CorruptRecord::MissingField("t"))
            }),
            (b"s1 1 1 5 6\n{}", |r| {
                matches!(r, CorruptRecord::MissingField("t"))
            }),
            (b"s1 1 1 5\n[1]", |r| {
                matches!(r, CorruptRecord::InvalidMetadata(_))
            }),
        ];
        for (raw, check) in cases {
            let r = reason(decode("k", raw));
            assert!(check(&r), "{:?}: {r:?}", String::from_utf8_lossy(raw));
        }
        // s3: the deadline must be exactly 13 digits then a space.
        for bad in [
            &b"s3 176430060000 1 1 5\n\n{}"[..],
            b"s3 17643006000001 1 1 5\n\n{}",
            b"s3 176430060000x 1 1 5\n\n{}",
            b"s3 +764300600000 1 1 5\n\n{}",
            b"s3 1764300600000\n\n{}",
            b"s3 \n\n{}",
        ] {
            let r = reason(decode("k", bad));
            assert!(
                matches!(r, CorruptRecord::MissingField("e")),
                "{:?}: {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // ... and the fields after it are checked as in s2.
        assert!(matches!(
            reason(decode("k", b"s3 1764300600000 0 1 5\n\n{}")),
            CorruptRecord::InvalidVersion(v) if v == "0"
        ));
        assert!(matches!(
            reason(decode("k", b"s3 1764300600000 1 1 0\n\n{}")),
            CorruptRecord::MissingField("t")
        ));
        assert!(matches!(
            reason(decode("k", b"s3 1764300600000 1 1 5\n{}")),
            CorruptRecord::MissingField("w")
        ));
        // A header that does not end within HEADER_MAX bytes.
        let long = format!("s1 1 1 {}\n{{}}", "1".repeat(90));
        assert!(matches!(
            reason(decode("k", long.as_bytes())),
            CorruptRecord::WrongType(_)
        ));
        // An s2 record whose write list line does not end in time, or at all.
        let long = format!("s2 1 1 5\n{}\n{{}}", "A".repeat(write_log::MAX_LEN + 1));
        assert!(matches!(
            reason(decode("k", long.as_bytes())),
            CorruptRecord::MissingField("w")
        ));
        assert!(matches!(
            reason(decode("k", b"s2 1 1 5\n{}")),
            CorruptRecord::MissingField("w")
        ));
        // Garbage of the right length in the list: the metadata still reads.
        let odd = format!("s2 1 1 5\n{}\n{{}}", "?".repeat(write_log::MAX_LEN));
        assert_eq!(decode("k", odd.as_bytes()).unwrap().1, Metadata::new());
    }

    proptest::proptest! {
        /// Any valid header and metadata encode to a record that decodes
        /// to the same values, from the whole string and from the first
        /// `HEADER_MAX` bytes alone (what `version` reads).
        #[test]
        fn header_round_trips(
            expires in 0..10_000_000_000_000u64,
            version in 1..=Version::MAX.get(),
            created in 0..=999_999_999_999_999u64,
            ttl in 1..=999_999_999_999_999u64,
            map in proptest::collection::btree_map("[a-z.]{1,12}", "\\PC{0,20}", 0..6),
        ) {
            let md = Metadata::from_map(map).unwrap();
            let raw = encode(expires, Version::new(version), created, ttl, "", md.json());
            let (h, m) = decode("k", &raw).unwrap();
            proptest::prop_assert_eq!((h.version.get(), h.ttl_ms, &m), (version, ttl, &md));
            proptest::prop_assert_eq!(h.expires_ms, Some(expires));
            let head = decode_header("k", &raw[..raw.len().min(HEADER_MAX)]).unwrap();
            proptest::prop_assert_eq!(head, h);
            // An empty write-id line sits between the header and the metadata.
            proptest::prop_assert_eq!(&raw[h.len..=h.len], b"\n");
            proptest::prop_assert_eq!(&raw[h.len + 1..], md.json().as_bytes());
        }

        /// A header with any one byte changed decodes to the same values
        /// or is refused as corrupt, naming the key; never a panic.
        #[test]
        fn a_changed_header_byte_is_refused_or_harmless(
            version in 1..=Version::MAX.get(),
            ttl in 1..=999_999u64,
            at in 0usize..60,
            byte in proptest::prelude::any::<u8>(),
            v2 in proptest::prelude::any::<bool>(),
        ) {
            let mut raw = if v2 {
                encode_v2(Version::new(version), 17, ttl, "", "{}")
            } else {
                encode(1_764_300_600_000, Version::new(version), 17, ttl, "", "{}")
            };
            let at = at % raw.len();
            raw[at] = byte;
            match decode("k", &raw) {
                Ok((h, m)) => {
                    proptest::prop_assert!(h.version.get() >= 1 && h.ttl_ms >= 1);
                    let start = if h.has_writes { skip_writes("k", &raw, h.len).unwrap() } else { h.len };
                    proptest::prop_assert_eq!(m.json().as_bytes(), &raw[start..]);
                }
                Err(Error::Corrupt { key, .. }) => proptest::prop_assert_eq!(key, "k"),
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
