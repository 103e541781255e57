//! Properties the `redis_record` fuzz target checks, written once: the
//! fuzz target calls them on libFuzzer's inputs and the unit test below
//! replays the committed seed corpus (`fuzz/corpus/redis_record/`).
//!
//! **Not part of the API** (feature `fuzzing`, for the repository's
//! `fuzz/` package only); it may change in any release.

use session_core::{CorruptRecord, Error, Metadata, Version};

use crate::{legacy, record};

/// The key the decoders are given; every error must name it.
const KEY: &str = "fuzz:key";

/// The corrupt-record reason of `result`, which must be an error naming
/// [`KEY`] (a stored value is never an outage, never another key).
fn reason<T: std::fmt::Debug>(result: &session_core::Result<T>) -> &CorruptRecord {
    match result {
        Err(Error::Corrupt { key, source }) => {
            assert_eq!(key, KEY);
            source
        }
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
}

/// The three header numbers and the metadata JSON drawn from `data` for
/// the encode round trip: each number forced into its valid range.
fn drawn(data: &[u8]) -> (Version, u64, u64, &[u8]) {
    const MAX15: u64 = 999_999_999_999_999;
    let next = |at: usize| {
        let mut word = [0u8; 8];
        let end = data.len().min(at + 8);
        if at < end {
            word[..end - at].copy_from_slice(&data[at..end]);
        }
        u64::from_le_bytes(word)
    };
    let version = Version::new(next(0) % Version::MAX.get() + 1);
    let created = next(8) % (MAX15 + 1);
    let ttl = next(16) % MAX15 + 1;
    (version, created, ttl, data.get(24..).unwrap_or_default())
}

/// The Redis record decoders on arbitrary bytes:
///
/// 1. `decode` of the bytes as a stored string: a record, or a typed
///    corrupt error naming the key; a record's header decodes the same
///    from the first `HEADER_MAX` (80) bytes alone (what `version`
///    reads with `GETRANGE`), it has a deadline exactly when it is `s3`,
///    and re-encoding what was decoded (as `s3`) decodes to the same.
/// 2. `encode` then `decode` of values drawn from the bytes (valid
///    version, creation time, TTL, and a 13-digit deadline mixed from the
///    last two; the rest as metadata JSON), in the `s3` layout and in the
///    previous `s2`, gives them back exactly when the JSON is valid
///    metadata, and `InvalidMetadata` otherwise.
/// 3. The legacy hash decoder on the bytes split at `0xFF` into the
///    fields `v`, `m`, `c`, `t` agrees with the string decoder on the same
///    fields: both accept, with the same version, TTL and metadata, or both
///    refuse.
pub fn redis_record(data: &[u8]) {
    // 1. As a stored string.
    let decoded = record::decode(KEY, data);
    match &decoded {
        Ok((header, md)) => {
            let v3 = data.starts_with(record::MAGIC);
            let v2 = data.starts_with(record::MAGIC_V2);
            assert!(v3 || v2 || data.starts_with(record::MAGIC_V1));
            assert_eq!(header.has_writes, v3 || v2);
            assert_eq!(header.expires_ms.is_some(), v3);
            if let Some(e) = header.expires_ms {
                let digits = &data[record::EXPIRES_AT..record::EXPIRES_AT + record::EXPIRES_LEN];
                assert_eq!(
                    std::str::from_utf8(digits).unwrap().parse::<u64>().unwrap(),
                    e
                );
            }
            assert!(header.len <= record::HEADER_MAX && data[header.len - 1] == b'\n');
            let head = &data[..data.len().min(record::HEADER_MAX)];
            assert_eq!(record::decode_header(KEY, head).unwrap(), *header);
            assert_eq!(Metadata::from_json(md.json()).unwrap(), *md);
            // Formats 3 and 2 keep a write-id line between the header and
            // the metadata; format 1 has none.
            let start = if header.has_writes {
                record::skip_writes(KEY, data, header.len).expect("decoded, so the line ends")
            } else {
                header.len
            };
            assert_eq!(md.json().as_bytes(), &data[start..]);
            let e = header.expires_ms.unwrap_or(1);
            let again = record::encode(e, header.version, 1, header.ttl_ms, "", md.json());
            let (h2, md2) = record::decode(KEY, &again).expect("re-encoded record decodes");
            assert_eq!(
                (h2.version, h2.ttl_ms, h2.expires_ms, &md2),
                (header.version, header.ttl_ms, Some(e), md)
            );
        }
        Err(_) => {
            let _ = reason(&decoded);
        }
    }

    // 2. Encode, then decode.
    let (version, created, ttl, json) = drawn(data);
    if let Ok(json) = std::str::from_utf8(json) {
        encoded(version, created, ttl, json);
    }

    // 3. The legacy hash layout against the string layout.
    legacy_agrees(data);
}

/// Property 2 of [`redis_record`].
fn encoded(version: Version, created: u64, ttl: u64, json: &str) {
    // The deadline: the input's numbers mixed, within 13 digits.
    let e = (created ^ ttl.rotate_left(23)) % 10_000_000_000_000;
    let raw = record::encode(e, version, created, ttl, "", json);
    encoded_as(&raw, version, Some(e), ttl, json);
    let raw = record::encode_v2(version, created, ttl, "", json);
    encoded_as(&raw, version, None, ttl, json);
}

/// Property 2 on one layout's bytes `raw`.
fn encoded_as(raw: &[u8], version: Version, expires: Option<u64>, ttl: u64, json: &str) {
    let md = Metadata::from_json(json).ok();
    let back = record::decode(KEY, raw);
    match (md, &back) {
        (Some(md), Ok((h, m))) => {
            assert_eq!(
                (h.version, h.ttl_ms, h.expires_ms, m),
                (version, ttl, expires, &md)
            );
            assert_eq!(
                record::decode_header(KEY, &raw[..raw.len().min(record::HEADER_MAX)]).unwrap(),
                *h
            );
        }
        (None, Err(_)) => {
            assert!(
                matches!(reason(&back), CorruptRecord::InvalidMetadata(_)),
                "{back:?}"
            );
        }
        (md, back) => panic!("metadata {md:?} but decode gave {back:?}"),
    }
}

/// Property 3 of [`redis_record`].
fn legacy_agrees(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xFF);
    let mut field = || parts.next().filter(|f| !f.is_empty()).map(<[u8]>::to_vec);
    let (v, m, c, t) = (field(), field(), field(), field());
    let plain = |f: &Option<Vec<u8>>| {
        f.as_ref()
            .is_some_and(|f| !f.iter().any(|&b| b == b' ' || b == b'\n'))
    };
    let legacy = legacy::decode_record(KEY, (v.clone(), m.clone(), c.clone(), t.clone()), 1000);
    if legacy.is_err() {
        let _ = reason(&legacy);
    }
    if let Ok(found) = &legacy {
        let (rec, _) = found
            .as_ref()
            .expect("a key with a TTL is never reported gone");
        assert!(rec.version.get() >= 1);
    }
    if let (true, Some(m)) = ([&v, &c, &t].into_iter().all(plain), &m) {
        let mut string = b"s1 ".to_vec();
        for (i, f) in [&v, &c, &t].into_iter().enumerate() {
            if i > 0 {
                string.push(b' ');
            }
            string.extend_from_slice(f.as_ref().unwrap());
        }
        string.push(b'\n');
        string.extend_from_slice(m);
        match (&legacy, record::decode(KEY, &string)) {
            (Ok(Some((rec, ttl))), Ok((h, md))) => {
                assert_eq!(
                    (rec.version, *ttl, &rec.metadata),
                    (h.version, h.ttl_ms, &md)
                );
            }
            (Err(_), Err(_)) => {}
            (legacy, string) => panic!("layouts disagree: hash {legacy:?}, string {string:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_record_corpus_holds_the_properties() {
        assert!(session_core::__fuzz::replay("redis_record", redis_record) >= 5);
    }
}
