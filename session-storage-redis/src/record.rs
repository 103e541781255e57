//! The stored record: one Redis string per session, a short text header
//! followed by the metadata JSON.
//!
//! ```text
//! s2 <version> <created> <ttl>\n<recent writes>\n<metadata JSON>
//! s1 <version> <created> <ttl>\n<metadata JSON>
//! ```
//!
//! - `s2 ` names the layout (format 2, what every script writes); `s1 `
//!   (format 1, written by earlier releases, without the write list) is
//!   still read, and becomes `s2` on its next update. A string with
//!   neither was not written by this store.
//! - `version`: the record's version, 1..=2^53-1 in plain decimal digits
//!   (the rule of [`Version::from_stored_text`]).
//! - `created`: the server's clock (`TIME`) in ms when the record was
//!   created, 1 to 15 digits: the base of the `max_lifetime` cap.
//! - `ttl`: the record's own sliding TTL in ms, 1 to 15 digits, no leading
//!   zero (a placeholder created with a shorter TTL slides by it).
//! - one `\n`; in `s2`, then the record's last applied writes, newest
//!   first, each `<write id>:<16-digit version>`, separated by spaces, at
//!   most [`write_log::MAX_LEN`] bytes (see
//!   [`session_core::write_log`]), empty for a record no write id has
//!   written, and another `\n`;
//! - then the metadata JSON exactly as written.
//!
//! The header is at most [`HEADER_MAX`] bytes, so `version` reads it with
//! one `GETRANGE key 0 63` and never transfers the metadata; `load` reads
//! the whole string with `GET` (and `PTTL` for the slide decision). The
//! key's expiry is the record's expiry, on the server's clock. The Lua
//! scripts (`lua/*.lua`) parse and check the header with the same rules.

use session_core::{CorruptRecord, Error, Metadata, MetadataError, Result, Version, write_log};

/// The layout tag of the records every script writes.
pub(crate) const MAGIC: &[u8] = b"s2 ";
/// The layout tag of records written by earlier releases (no write list).
pub(crate) const MAGIC_V1: &[u8] = b"s1 ";

/// The longest header, `\n` included (`s1 ` + 16 + 1 + 15 + 1 + 15 + 1 =
/// 52, rounded up): what `version` reads with `GETRANGE key 0 63`.
pub(crate) const HEADER_MAX: usize = 64;

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
    /// Whether the record has the `s2` layout (a write list line).
    pub has_writes: bool,
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
/// (wrong type), then `v`, `c`, `t`.
pub(crate) fn decode_header(key: &str, raw: &[u8]) -> Result<Header> {
    let wrong = |what: &str| Error::corrupt(key, CorruptRecord::WrongType(what.to_owned()));
    let missing = |field: &'static str| Error::corrupt(key, CorruptRecord::MissingField(field));
    let has_writes = raw.starts_with(MAGIC);
    if !has_writes && !raw.starts_with(MAGIC_V1) {
        return Err(wrong("string without the s2 or s1 record header"));
    }
    let window = &raw[..raw.len().min(HEADER_MAX)];
    let end = window
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| wrong("record header without its end"))?;
    let mut fields = window[MAGIC.len()..end].splitn(3, |&b| b == b' ');
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
    })
}

/// Decodes the metadata JSON of a loaded record.
pub(crate) fn decode_metadata(key: &str, raw: &[u8]) -> Result<Metadata> {
    let invalid = |e: MetadataError| Error::corrupt(key, CorruptRecord::InvalidMetadata(e));
    let text = std::str::from_utf8(raw)
        .map_err(|e| invalid(MetadataError::NotStringMap(e.to_string())))?;
    Metadata::from_json(text).map_err(invalid)
}

/// Where the metadata starts in an `s2` record whose header line ends at
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

/// Encodes a record (the scripts build the same bytes on the server).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode(
    version: Version,
    created_ms: u64,
    ttl_ms: u64,
    writes: &str,
    metadata_json: &str,
) -> Vec<u8> {
    let mut out = format!("s2 {} {created_ms} {ttl_ms}\n{writes}\n", version.get()).into_bytes();
    out.extend_from_slice(metadata_json.as_bytes());
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
        let raw = encode(Version::new(3), 17, 600_000, "", r#"{"a":"b"}"#);
        assert_eq!(raw, b"s2 3 17 600000\n\n{\"a\":\"b\"}");
        let (h, m) = decode("k", &raw).unwrap();
        assert_eq!((h.version, h.ttl_ms, h.len), (Version::new(3), 600_000, 15));
        assert_eq!(m, Metadata::new().with("a", "b").unwrap());
        // Format 1 (no write list) is still read.
        let (h, m1) = decode("k", b"s1 3 17 600000\n{\"a\":\"b\"}").unwrap();
        assert_eq!((h.version, h.has_writes, m1), (Version::new(3), false, m));
        // A full write list.
        let w = session_core::WriteId::generate();
        let mut log = String::new();
        for v in 1..=5 {
            log = write_log::push(&log, &w.log_entry(Version::new(v)));
        }
        let raw = encode(Version::new(5), 17, 600_000, &log, "{}");
        assert_eq!(decode("k", &raw).unwrap().1, Metadata::new());
        // What GETRANGE 0 63 returns of a longer record is enough.
        let big = encode(
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
        // A header that does not end within HEADER_MAX bytes.
        let long = format!("s1 1 1 {}\n{{}}", "1".repeat(70));
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
            version in 1..=Version::MAX.get(),
            created in 0..=999_999_999_999_999u64,
            ttl in 1..=999_999_999_999_999u64,
            map in proptest::collection::btree_map("[a-z.]{1,12}", "\\PC{0,20}", 0..6),
        ) {
            let md = Metadata::from_map(map).unwrap();
            let raw = encode(Version::new(version), created, ttl, "", md.json());
            let (h, m) = decode("k", &raw).unwrap();
            proptest::prop_assert_eq!((h.version.get(), h.ttl_ms, &m), (version, ttl, &md));
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
            at in 0usize..40,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut raw = encode(Version::new(version), 17, ttl, "", "{}");
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
