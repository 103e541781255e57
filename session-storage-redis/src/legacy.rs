//! The hash layout of releases before the string record
//! ([`crate::record`]): one hash per session with fields `v` (version),
//! `m` (metadata JSON), `c` (created, ms) and `t` (own TTL, ms).
//!
//! Kept for one release: every read accepts it (a `WRONGTYPE` reply to the
//! string read sends the operation here), and every script that writes a
//! record found in this layout (`update`, `touch`, a `load` past its slide
//! window) rewrites it as a string: records migrate when touched. Records
//! nobody touches expire with their TTL in the old layout.

use session_core::{CorruptRecord, Error, Record, Result, Version};

use crate::record::{decode_metadata, decode_version, is_count, is_created};

/// `HMGET key v m c t` as raw bytes (a corrupt record need not be UTF-8).
pub(crate) type Fields = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// `HMGET key v c t` as raw bytes (what `version` reads).
pub(crate) type HeaderFields = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The checks of `v`, `c` and `t`, with the same rules as the scripts'
/// legacy branch: the version and the record's own TTL.
pub(crate) fn decode_header(
    key: &str,
    v: Option<&[u8]>,
    c: Option<&[u8]>,
    t: Option<&[u8]>,
) -> Result<(Version, u64)> {
    let missing = |field: &'static str| Error::corrupt(key, CorruptRecord::MissingField(field));
    // A hash without any of our fields (a foreign hash) reports `v` missing.
    let version = decode_version(key, v.ok_or_else(|| missing("v"))?)?;
    if !c.is_some_and(is_created) {
        return Err(missing("c"));
    }
    let ttl_ms = match t {
        Some(t) if is_count(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| missing("t"))?,
        _ => return Err(missing("t")),
    };
    Ok((version, ttl_ms))
}

/// Checks a hash record read with `HMGET key v m c t`: `None` if none of
/// the fields is there and the key is gone (`PTTL` -2), else the record
/// and its own TTL.
pub(crate) fn decode_record(
    key: &str,
    (v, m, c, t): Fields,
    pttl: i64,
) -> Result<Option<(Record, u64)>> {
    if v.is_none() && m.is_none() && c.is_none() && t.is_none() && pttl == -2 {
        return Ok(None);
    }
    let (version, ttl_ms) = decode_header(key, v.as_deref(), c.as_deref(), t.as_deref())?;
    let m = m.ok_or_else(|| Error::corrupt(key, CorruptRecord::MissingField("m")))?;
    let metadata = decode_metadata(key, &m)?;
    Ok(Some((Record { version, metadata }, ttl_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &str, m: &str, c: &str, t: &str) -> Fields {
        let f = |s: &str| (!s.is_empty()).then(|| s.as_bytes().to_vec());
        (f(v), f(m), f(c), f(t))
    }

    fn reason(r: Result<Option<(Record, u64)>>) -> CorruptRecord {
        match r {
            Err(Error::Corrupt { key, source }) => {
                assert_eq!(key, "k");
                source
            }
            Err(other) => panic!("expected corrupt, got {other:?}"),
            Ok(_) => panic!("expected corrupt, got a record"),
        }
    }

    #[test]
    fn decodes_and_checks_like_the_scripts() {
        let (rec, ttl) = decode_record("k", fields("3", r#"{"a":"b"}"#, "17", "600000"), 5000)
            .unwrap()
            .unwrap();
        assert_eq!((rec.version, ttl), (Version::new(3), 600_000));
        assert!(
            decode_record("k", fields("", "", "", ""), -2)
                .unwrap()
                .is_none()
        );
        // A foreign hash (or one of ours without `v`).
        assert!(matches!(
            reason(decode_record("k", fields("", "", "", ""), 100)),
            CorruptRecord::MissingField("v")
        ));
        for bad in ["0", "01", "-1", "+5", "abc", "9007199254740992"] {
            assert!(
                matches!(reason(decode_record("k", fields(bad, "{}", "1", "5"), 9)),
                    CorruptRecord::InvalidVersion(v) if v == bad),
                "{bad}"
            );
        }
        assert!(matches!(
            reason(decode_record("k", fields("1", "{}", "x", "5"), 9)),
            CorruptRecord::MissingField("c")
        ));
        assert!(matches!(
            reason(decode_record("k", fields("1", "{}", "1", "0"), 9)),
            CorruptRecord::MissingField("t")
        ));
        assert!(matches!(
            reason(decode_record("k", fields("1", "", "1", "5"), 9)),
            CorruptRecord::MissingField("m")
        ));
        assert!(matches!(
            reason(decode_record("k", fields("1", "[1]", "1", "5"), 9)),
            CorruptRecord::InvalidMetadata(_)
        ));
    }
}
