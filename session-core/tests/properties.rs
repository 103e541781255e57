//! Property tests for ids, metadata limits and the vMCP key rules.

use proptest::prelude::*;
use session_core::keys::{self, BACKEND_IDS};
use session_core::{Binding, Metadata, MetadataError, SessionId, WorkloadId, limits};

fn workload() -> impl Strategy<Value = WorkloadId> {
    "[A-Za-z0-9._-]{1,20}".prop_map(|s| WorkloadId::parse(&s).unwrap())
}

fn backend_session() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ -~]{1,40}"]
}

proptest! {
    #[test]
    fn session_id_accepts_exactly_visible_ascii(s in proptest::collection::vec(any::<u8>(), 0..140)) {
        let s = String::from_utf8_lossy(&s).into_owned();
        let valid = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
        prop_assert_eq!(SessionId::parse(&s).is_ok(), valid);
    }

    #[test]
    fn session_id_round_trips(s in "[!-~]{1,128}") {
        let id = SessionId::parse(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
    }

    #[test]
    fn workload_id_accepts_exactly_its_alphabet(s in "[ -~]{0,260}") {
        let valid = !s.is_empty() && s.len() <= 253
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        prop_assert_eq!(WorkloadId::parse(&s).is_ok(), valid);
    }

    #[test]
    fn metadata_limits_are_enforced(
        entries in proptest::collection::btree_map(".{0,300}", ".{0,9000}", 0..8)
    ) {
        let within = entries.iter().all(|(k, v)| {
            !k.is_empty() && k.len() <= limits::MAX_KEY_LEN && !k.chars().any(char::is_control)
                && v.len() <= limits::MAX_VALUE_LEN
        });
        match Metadata::from_map(entries.clone()) {
            Ok(md) => {
                prop_assert!(within);
                prop_assert!(md.json().len() <= limits::MAX_ENCODED_LEN);
                prop_assert_eq!(Metadata::from_json(md.json()).unwrap(), md);
            }
            Err(MetadataError::TooLarge { len, .. }) => {
                prop_assert!(len > limits::MAX_ENCODED_LEN);
            }
            Err(_) => prop_assert!(!within),
        }
    }

    #[test]
    fn helpers_keep_ids_sorted_unique_and_valid(
        ops in proptest::collection::vec((workload(), backend_session(), any::<bool>()), 0..30)
    ) {
        let mut md = Metadata::new().with("other", "kept").unwrap();
        let mut model = std::collections::BTreeMap::new();
        for (w, sess, add) in ops {
            if add {
                md = keys::with_backend(&md, &w, &sess).unwrap();
                model.insert(w.clone(), sess.clone());
            } else {
                md = keys::without_backend(&md, &w).unwrap();
                model.remove(&w);
            }
            keys::validate(&md).unwrap();
            let ids = keys::backend_ids(&md).unwrap();
            prop_assert!(ids.windows(2).all(|p| p[0] < p[1]));
            prop_assert_eq!(&ids, &model.keys().cloned().collect::<Vec<_>>());
            prop_assert!(md.contains_key(BACKEND_IDS));
        }
        for (w, sess) in &model {
            let want = if sess.is_empty() { None } else { Some(sess.as_str()) };
            prop_assert_eq!(keys::backend_session(&md, w), want);
        }
        prop_assert_eq!(md.get("other"), Some("kept"));
    }

    #[test]
    fn without_undoes_with(
        start in proptest::collection::btree_map(workload(), backend_session(), 0..6),
        w in workload(),
        sess in backend_session(),
    ) {
        let mut md = Metadata::new();
        for (b, s) in &start {
            md = keys::with_backend(&md, b, s).unwrap();
        }
        prop_assume!(!start.contains_key(&w));
        let round = keys::without_backend(&keys::with_backend(&md, &w, &sess).unwrap(), &w).unwrap();
        prop_assert_eq!(keys::backend_ids(&round).unwrap(), keys::backend_ids(&md).unwrap());
        prop_assert_eq!(keys::backend_session(&round, &w), None);
        for b in start.keys() {
            prop_assert_eq!(keys::backend_session(&round, b), keys::backend_session(&md, b));
        }
    }

    #[test]
    fn binding_round_trips(issuer in "[^\0]{1,30}", subject in "[^\0]{1,30}") {
        let b = Binding::identity(issuer, subject).unwrap();
        prop_assert_eq!(Binding::decode(&b.encode()), Some(b.clone()));
        let md = keys::with_binding(&Metadata::new(), &b).unwrap();
        keys::validate(&md).unwrap();
        prop_assert_eq!(keys::binding(&md), Some(b));
    }
}

#[test]
fn validate_names_the_broken_invariant() {
    use keys::Invariant;
    let cases = [
        (vec![(BACKEND_IDS, "b,a")], "unsorted"),
        (vec![(BACKEND_IDS, "a,a")], "unsorted"),
        (vec![(BACKEND_IDS, "a,,b")], "invalid"),
        (
            vec![(BACKEND_IDS, "a"), ("vmcp.backend.session.b", "x")],
            "unlisted",
        ),
        (
            vec![(BACKEND_IDS, "a"), ("vmcp.backend.session.a", "")],
            "empty",
        ),
        (vec![(keys::IDENTITY_BINDING, "nobody")], "binding"),
    ];
    for (pairs, want) in cases {
        let md = Metadata::from_pairs(pairs).unwrap();
        let err = keys::validate(&md).unwrap_err();
        let ok = match want {
            "unsorted" => matches!(err, Invariant::BackendIdsUnsorted),
            "invalid" => matches!(err, Invariant::BackendIdInvalid { .. }),
            "unlisted" => matches!(err, Invariant::BackendSessionUnlisted { .. }),
            "empty" => matches!(err, Invariant::BackendSessionEmpty { .. }),
            _ => matches!(err, Invariant::BindingMalformed),
        };
        assert!(ok, "{want}: got {err:?}");
        // helpers refuse to build on a broken list rather than guess
        if want == "unsorted" {
            let w = WorkloadId::parse("c").unwrap();
            assert!(keys::with_backend(&md, &w, "s").is_err());
        }
    }
    assert!(Binding::identity("", "x").is_err());
    assert!(Binding::identity("i", "a\0b").is_err());
}

/// Found by fuzzing (`workload_id`): a workload id of 236..=253 bytes was
/// valid, but its backend-session key (`vmcp.backend.session.` + id) broke
/// the 256-byte key limit, so such a backend could be listed but never
/// given a session id. The key limit now fits the longest workload id.
#[test]
fn the_longest_workload_id_records_a_backend_session() {
    let w = WorkloadId::parse(&"w".repeat(session_core::MAX_WORKLOAD_ID_LEN)).unwrap();
    let md = keys::with_backend(&Metadata::new(), &w, "backend-session").unwrap();
    assert_eq!(keys::backend_session(&md, &w), Some("backend-session"));
    keys::validate(&md).unwrap();
    let stored = Metadata::from_json(md.json()).unwrap();
    assert_eq!(stored, md);
}

/// Generated ids are distinct, 36 characters, lowercase hex with hyphens
/// at 8, 13, 18 and 23, version nibble 4 and an RFC 9562 variant nibble
/// (`8`, `9`, `a` or `b`): the layout whose other 122 bits are random.
#[test]
fn generated_session_ids_are_distinct_uuid_v4_strings() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20_000 {
        let id = SessionId::generate();
        let s = id.as_str();
        assert_eq!(s.len(), 36, "{s}");
        for (i, c) in s.char_indices() {
            match i {
                8 | 13 | 18 | 23 => assert_eq!(c, '-', "{s}"),
                14 => assert_eq!(c, '4', "{s}"),
                19 => assert!(matches!(c, '8' | '9' | 'a' | 'b'), "{s}"),
                _ => assert!(matches!(c, '0'..='9' | 'a'..='f'), "{s}"),
            }
        }
        assert_eq!(SessionId::parse(s).unwrap(), id);
        assert!(seen.insert(s.to_owned()), "a repeated id: {s}");
    }
}
