//! Properties the `sql_row` fuzz target checks, written once: the fuzz
//! target calls them on libFuzzer's inputs and the unit test below replays
//! the committed seed corpus (`fuzz/corpus/sql_row/`).
//!
//! **Not part of the API** (feature `fuzzing`, for the repository's
//! `fuzz/` package only); it may change in any release.

use session_core::{CorruptRecord, Error, Metadata, Version};

/// The row id the decoder is given; every error must name it.
const ID: &str = "fuzz-row";

/// The row decode both SQL stores use (`load`, `peek`, `touch` of Postgres
/// and SQLite): the first 8 bytes are the `version` column (a `bigint`,
/// little-endian; short input is zero-padded), the rest the `metadata`
/// column's bytes (SQLite's TEXT may hold any bytes).
///
/// The row decodes if and only if the version is in `1..=Version::MAX`
/// and the bytes are UTF-8 metadata JSON within the limits; then the
/// record holds exactly that version and metadata. Otherwise the error is
/// `Corrupt` naming the row: `InvalidVersion` (with the column's value)
/// when the version is bad, whatever the metadata, else
/// `InvalidMetadata`. The same version written as text decodes the same
/// under the Redis rule (`Version::from_stored_text`): one rule for every
/// store.
pub fn sql_row(data: &[u8]) {
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let raw_version = i64::from_le_bytes(word);
    let metadata = &data[n..];
    // Small versions are the interesting ones; fold the input's top bits
    // away half the time so they come up often.
    for raw_version in [raw_version, raw_version & 0xFF] {
        check_row(raw_version, metadata);
    }
}

fn check_row(raw_version: i64, metadata: &[u8]) {
    let version_ok =
        u64::try_from(raw_version).is_ok_and(|v| (1..=Version::MAX.get()).contains(&v));
    let expected_md = std::str::from_utf8(metadata)
        .ok()
        .and_then(|t| Metadata::from_json(t).ok());
    let as_text = Version::from_stored_text(raw_version.to_string().as_bytes());
    assert_eq!(
        as_text.is_some(),
        version_ok,
        "{raw_version}: the stores' rules differ"
    );
    match crate::error::record(ID, raw_version, metadata) {
        Ok(record) => {
            assert!(version_ok);
            assert_eq!(Some(record.version), as_text);
            assert_eq!(Some(&record.metadata), expected_md.as_ref());
            assert_eq!(record.metadata.json().as_bytes(), metadata);
        }
        Err(Error::Corrupt { key, source }) => {
            assert_eq!(key, ID);
            match source {
                CorruptRecord::InvalidVersion(shown) => {
                    assert!(!version_ok);
                    assert_eq!(shown, raw_version.to_string());
                }
                CorruptRecord::InvalidMetadata(_) => {
                    assert!(version_ok && expected_md.is_none());
                }
                other => panic!("unexpected reason {other:?}"),
            }
        }
        Err(other) => panic!("a stored row is never {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_row_corpus_holds_the_properties() {
        assert!(session_core::__fuzz::replay("sql_row", sql_row) >= 5);
    }
}
