//! Properties the fuzz targets check, written once: `fuzz/fuzz_targets/*`
//! calls them on libFuzzer's inputs, and the unit tests below replay the
//! committed seed corpus (`fuzz/corpus/<target>/`) through the same
//! functions, so `cargo test` checks every seed without a nightly
//! toolchain.
//!
//! **Not part of the API.** Compiled only for this crate's tests and with
//! the `fuzzing` feature (which exists for the `fuzz/` package); it may
//! change or disappear in any release.
//!
//! Every property function takes arbitrary bytes and panics (failing the
//! fuzz run or the test) if a property breaks: parsing is checked against
//! an independent statement of the rule, successful parses round-trip,
//! and errors are the typed variant the rule names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{InvalidInput, MetadataError};
use crate::id::{MAX_SESSION_ID_LEN, MAX_WORKLOAD_ID_LEN, SessionId, WorkloadId};
use crate::keys;
use crate::metadata::{Metadata, limits};

/// The workspace's `fuzz/corpus/<target>/` files, sorted by name, with
/// their bytes. Panics if the directory is missing or empty (a replay
/// test that found nothing to replay would pass for nothing).
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "fuzz", "corpus", target]
        .iter()
        .collect();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {} cannot be read: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{} cannot be read: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "seed corpus {} is empty", dir.display());
    files
}

/// Runs `property` on every seed of `target`, naming the seed that fails.
/// Returns how many seeds ran.
pub fn replay(target: &str, property: fn(&[u8])) -> usize {
    let seeds = corpus(target);
    for (name, bytes) in &seeds {
        let outcome = std::panic::catch_unwind(|| property(bytes));
        assert!(outcome.is_ok(), "seed {target}/{name} breaks a property");
    }
    seeds.len()
}

/// The session-id rule, stated independently of [`SessionId::parse`].
fn session_id_rule(s: &str) -> bool {
    (1..=MAX_SESSION_ID_LEN).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// `SessionId::parse`: accepts exactly what the rule accepts; an accepted
/// id displays as its input and parses back equal; a rejected one names
/// the length or the first bad byte and its position. Also checks a
/// generated id against the same rule.
pub fn session_id(data: &[u8]) {
    // Header values that are not UTF-8 never reach `parse` (it takes
    // `&str`); their lossy form is checked like any other text.
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    match SessionId::parse(s) {
        Ok(id) => {
            assert!(session_id_rule(s), "accepted {s:?}");
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), s);
            let shown = id.to_string();
            assert_eq!(SessionId::parse(&shown).unwrap(), id);
            assert_eq!(s.parse::<SessionId>().unwrap(), id);
        }
        Err(InvalidInput::SessionIdLength { len }) => {
            assert_eq!(len, s.len());
            assert!(len == 0 || len > MAX_SESSION_ID_LEN);
        }
        Err(InvalidInput::SessionIdByte { byte, pos }) => {
            assert!((1..=MAX_SESSION_ID_LEN).contains(&s.len()));
            assert_eq!(s.as_bytes()[pos], byte);
            assert!(!(0x21..=0x7E).contains(&byte));
            assert!(
                s.as_bytes()[..pos]
                    .iter()
                    .all(|b| (0x21..=0x7E).contains(b))
            );
        }
        Err(other) => panic!("{s:?}: unexpected error {other:?}"),
    }
}

/// The workload-id rule, stated independently of [`WorkloadId::parse`].
fn workload_rule(s: &str) -> bool {
    (1..=MAX_WORKLOAD_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `WorkloadId::parse`, and the backend list it feeds: accepts exactly
/// the rule; accepted ids round-trip, are valid `vmcp.backend.ids`
/// entries, and adding then removing one restores the list. The input is
/// also read as a comma-joined `vmcp.backend.ids` value: the list parses
/// if and only if every entry does and the entries are strictly sorted.
pub fn workload_id(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match WorkloadId::parse(&s) {
        Ok(w) => {
            assert!(workload_rule(&s), "accepted {s:?}");
            assert_eq!(w.to_string(), s);
            assert_eq!(WorkloadId::parse(w.as_str()).unwrap(), w);
            assert_eq!(s.parse::<WorkloadId>().unwrap(), w);
            let md = keys::with_backend(&Metadata::new(), &w, "hint").expect("one backend fits");
            assert_eq!(keys::backend_ids(&md).unwrap(), vec![w.clone()]);
            assert_eq!(keys::backend_session(&md, &w), Some("hint"));
            keys::validate(&md).expect("with_backend keeps the invariants");
            let md = keys::without_backend(&md, &w).unwrap();
            assert!(keys::backend_ids(&md).unwrap().is_empty());
            assert_eq!(md.len(), 1, "only the (empty) list is left");
        }
        Err(InvalidInput::WorkloadIdLength { len }) => {
            assert_eq!(len, s.len());
            assert!(len == 0 || len > MAX_WORKLOAD_ID_LEN);
        }
        Err(InvalidInput::WorkloadIdByte { byte, pos }) => {
            assert!((1..=MAX_WORKLOAD_ID_LEN).contains(&s.len()));
            assert_eq!(s.as_bytes()[pos], byte);
            assert!(!workload_rule(&s));
        }
        Err(other) => panic!("{s:?}: unexpected error {other:?}"),
    }
    // The same text as a stored backend list.
    let Ok(md) = Metadata::new().with(keys::BACKEND_IDS, s.as_ref()) else {
        return;
    };
    let entries: Vec<&str> = if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').collect()
    };
    let expect_ok =
        entries.iter().all(|e| workload_rule(e)) && entries.windows(2).all(|w| w[0] < w[1]);
    match keys::backend_ids(&md) {
        Ok(ids) => {
            assert!(expect_ok, "accepted list {s:?}");
            let joined: Vec<&str> = ids.iter().map(WorkloadId::as_str).collect();
            assert_eq!(joined, entries);
            keys::validate(&md).expect("a valid list and nothing else is valid");
        }
        Err(keys::Invariant::BackendIdInvalid { entry, .. }) => {
            assert!(!expect_ok);
            assert!(!workload_rule(&entry) && entries.contains(&entry.as_str()));
        }
        Err(keys::Invariant::BackendIdsUnsorted) => {
            assert!(!expect_ok && entries.iter().all(|e| workload_rule(e)));
        }
        Err(other) => panic!("{s:?}: unexpected invariant {other:?}"),
    }
}

/// The first limit `map` breaks, in the order [`Metadata::from_map`]
/// checks them, stated independently.
fn first_broken_limit(map: &BTreeMap<String, String>) -> Option<&'static str> {
    if map.len() > limits::MAX_ENTRIES {
        return Some("entries");
    }
    for (k, v) in map {
        if k.is_empty() || k.len() > limits::MAX_KEY_LEN || k.chars().any(char::is_control) {
            return Some("key");
        }
        if v.len() > limits::MAX_VALUE_LEN {
            return Some("value");
        }
    }
    None
}

/// `Metadata::from_json` (what every store decodes a record's metadata
/// with): it accepts exactly the JSON objects of strings within the
/// limits; an accepted map keeps its input as its encoding, re-encodes
/// canonically to an equal map, and survives the vMCP key helpers
/// (`validate` never panics; a valid map's backends can each be removed
/// and re-added). A rejection is the typed error of the limit broken, or
/// `NotStringMap` exactly when serde rejects the text as a string map.
pub fn metadata(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = serde_json::from_str::<BTreeMap<String, String>>(text);
    match Metadata::from_json(text) {
        Ok(md) => {
            assert!(text.len() <= limits::MAX_ENCODED_LEN);
            let map = parsed.expect("accepted JSON is a string map");
            assert_eq!(first_broken_limit(&map), None);
            assert_eq!(md.to_map(), map);
            assert_eq!(md.json(), text, "the input is kept as the encoding");
            let canonical = Metadata::from_map(map).expect("the same map is within limits");
            assert_eq!(canonical, md);
            assert_eq!(Metadata::from_json(canonical.json()).unwrap(), md);
            let via_serde: Metadata = serde_json::from_str(canonical.json()).unwrap();
            assert_eq!(via_serde, md);
            // Debug shows the keys and never a value.
            let keys: std::collections::BTreeSet<&str> = md.iter().map(|(k, _)| k).collect();
            assert_eq!(format!("{md:?}"), format!("{keys:?}"));
            key_rules(&md);
        }
        Err(MetadataError::TooLarge { len, max }) => {
            assert_eq!((len, max), (text.len(), limits::MAX_ENCODED_LEN));
            assert!(len > max);
        }
        Err(MetadataError::NotStringMap(_)) => assert!(parsed.is_err(), "{text:?}"),
        Err(err) => {
            let map = parsed.expect("a limit error is for a string map");
            let broken = first_broken_limit(&map).expect("a limit error names a broken limit");
            let expected = match &err {
                MetadataError::TooManyEntries { count, .. } => {
                    assert_eq!(*count, map.len());
                    "entries"
                }
                MetadataError::EmptyKey
                | MetadataError::KeyTooLong { .. }
                | MetadataError::KeyControlChar { .. } => "key",
                MetadataError::ValueTooLong { .. } => "value",
                other => panic!("unexpected error {other:?}"),
            };
            assert_eq!(broken, expected, "{err:?}");
        }
    }
}

/// The vMCP helpers on a decoded map: never a panic, and on a valid map
/// every backend can be removed and put back with its session id.
fn key_rules(md: &Metadata) {
    let _ = keys::binding(md);
    let Ok(()) = keys::validate(md) else {
        return;
    };
    let ids = keys::backend_ids(md).expect("validate checked the list");
    for w in &ids {
        let hint = keys::backend_session(md, w).unwrap_or("").to_owned();
        let Ok(without) = keys::without_backend(md, w) else {
            continue;
        };
        assert!(!keys::backend_ids(&without).unwrap().contains(w));
        assert_eq!(keys::backend_session(&without, w), None);
        keys::validate(&without).expect("removing a backend keeps the invariants");
        if let Ok(back) = keys::with_backend(&without, w, &hint) {
            assert_eq!(keys::backend_ids(&back).unwrap(), ids);
            assert_eq!(back, *md, "remove then re-add is the identity");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_corpus_holds_the_properties() {
        assert!(replay("session_id", session_id) >= 5);
    }

    #[test]
    fn workload_id_corpus_holds_the_properties() {
        assert!(replay("workload_id", workload_id) >= 5);
    }

    #[test]
    fn metadata_corpus_holds_the_properties() {
        assert!(replay("metadata", metadata) >= 5);
    }

    #[test]
    #[should_panic(expected = "breaks a property")]
    fn replay_fails_on_a_broken_property() {
        replay("session_id", |_| panic!("broken"));
    }
}
