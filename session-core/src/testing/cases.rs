//! The contract cases. Each takes a fresh [`Harness`] and panics on a
//! broken contract. Expiry cases only assert lower bounds on time: where a
//! slow machine could make an observation meaningless (the record might have
//! expired because the test itself was delayed), the attempt is marked
//! inconclusive and retried; a case whose every attempt was inconclusive
//! fails with a message saying so (it never passes having checked nothing).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Corruption, Harness};
use crate::change::Change;
use crate::config::{StoreConfig, Ttl};
use crate::error::{Error, InvalidInput, MetadataError};
use crate::id::SessionId;
use crate::metadata::{Metadata, limits};
use crate::record::{Cursor, Update};
use crate::store::SessionStore;
use crate::version::Version;
use crate::write_id::WriteId;

const ATTEMPTS: usize = 4;

fn md(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::from_pairs(pairs.iter().copied()).expect("valid test metadata")
}

fn cfg(ttl: Duration) -> StoreConfig {
    StoreConfig::new(ttl).expect("valid test config")
}

fn long() -> StoreConfig {
    cfg(Duration::from_secs(600))
}

/// Create, load, version agree; metadata survives the round trip.
pub async fn round_trip<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let m = md(&[
        ("vmcp.backend.ids", "a,b"),
        ("unicode", "héllo \u{1F600} \"quoted\" \\ \n"),
    ]);
    assert_eq!(
        s.create(&id, &m, Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
    let rec = s.load(&id).await.unwrap().expect("created record loads");
    assert_eq!(rec.version, Version::INITIAL);
    assert_eq!(rec.metadata, m);
    assert_eq!(s.version(&id).await.unwrap(), Some(Version::INITIAL));
    assert_eq!(
        s.peek(&id).await.unwrap(),
        Some(rec),
        "peek and load disagree"
    );
    let empty = SessionId::generate();
    assert_eq!(
        s.create(&empty, &Metadata::new(), Ttl::Default)
            .await
            .unwrap(),
        Some(Version::INITIAL)
    );
    assert_eq!(
        s.load(&empty).await.unwrap().unwrap().metadata,
        Metadata::new()
    );
    // ids at the edge of what parsing accepts are stored as they are.
    let odd = SessionId::parse(&"~!#$%&'()*+,-./:;<=>?@[]^_`{|}".repeat(4)).unwrap();
    assert_eq!(
        s.create(&odd, &m, Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
    assert_eq!(s.load(&odd).await.unwrap().unwrap().metadata, m);
}

/// A second create of a live id returns `None` and changes nothing.
pub async fn create_never_overwrites<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let first = md(&[("who", "first")]);
    assert!(s.create(&id, &first, Ttl::Default).await.unwrap().is_some());
    let second = md(&[("who", "second")]);
    let upd = s
        .update(&id, Version::INITIAL, &md(&[("who", "updated")]))
        .await
        .unwrap();
    assert_eq!(upd, Update::Applied(Version::new(2)));
    assert_eq!(s.create(&id, &second, Ttl::Default).await.unwrap(), None);
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        rec.version,
        Version::new(2),
        "create must not reset the version"
    );
    assert_eq!(rec.metadata.get("who"), Some("updated"));
}

/// 32 concurrent creates of one id: exactly one wins, and its metadata is stored.
pub async fn concurrent_create_has_one_winner<H: Harness>(h: Arc<H>) {
    let id = SessionId::generate();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = h.store(long()).await;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let m = md(&[("winner", &i.to_string())]);
            (i, s.create(&id, &m, Ttl::Default).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, outcome) = t.await.unwrap();
        if let Some(v) = outcome {
            assert_eq!(v, Version::INITIAL);
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins, got {winners:?}");
    let s = h.store(long()).await;
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        rec.metadata.get("winner"),
        Some(winners[0].to_string().as_str())
    );
    assert_eq!(rec.version, Version::INITIAL);
}

/// Every method on an id that was never created reports it missing.
pub async fn missing_id_everywhere<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    assert!(s.load(&id).await.unwrap().is_none());
    assert!(s.peek(&id).await.unwrap().is_none());
    assert!(s.version(&id).await.unwrap().is_none());
    assert_eq!(
        s.update(&id, Version::INITIAL, &Metadata::new())
            .await
            .unwrap(),
        Update::Missing
    );
    assert!(!s.touch(&id).await.unwrap());
    assert!(!s.delete(&id).await.unwrap());
    assert!(
        s.load(&id).await.unwrap().is_none(),
        "probes must not create"
    );
}

/// Update: applied at the expected version, conflict (with the current
/// version) otherwise, missing when absent.
pub async fn update_applied_conflict_missing<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.update(&id, Version::INITIAL, &md(&[("n", "1")]))
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    assert_eq!(
        s.update(&id, Version::new(2), &md(&[("n", "2")]))
            .await
            .unwrap(),
        Update::Applied(Version::new(3))
    );
    for stale in [
        Version::INITIAL,
        Version::new(2),
        Version::new(4),
        Version::new(99),
    ] {
        assert_eq!(
            s.update(&id, stale, &md(&[("n", "lost")])).await.unwrap(),
            Update::Conflict {
                current: Version::new(3)
            },
            "expected {stale}"
        );
    }
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.version, rec.metadata.get("n")),
        (Version::new(3), Some("2"))
    );
    assert_eq!(s.version(&id).await.unwrap(), Some(Version::new(3)));
    let other = SessionId::generate();
    assert_eq!(
        s.update(&other, Version::INITIAL, &md(&[])).await.unwrap(),
        Update::Missing
    );
}

/// Update never creates: not for a never-created id, not right after a
/// delete, not after expiry.
pub async fn update_never_creates<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md(&[("a", "1")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    assert!(s.delete(&id).await.unwrap());
    for v in [Version::INITIAL, Version::new(2)] {
        assert_eq!(
            s.update(&id, v, &md(&[("a", "2")])).await.unwrap(),
            Update::Missing
        );
    }
    assert!(
        s.load(&id).await.unwrap().is_none(),
        "update after delete resurrected the session"
    );
    assert!(s.version(&id).await.unwrap().is_none());

    let unit = h.ttl_unit();
    let s = h.store(cfg(unit)).await;
    let id = SessionId::generate();
    s.create(&id, &md(&[("a", "1")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    h.sleep(unit * 2).await;
    assert_eq!(
        s.update(&id, Version::INITIAL, &md(&[("a", "2")]))
            .await
            .unwrap(),
        Update::Missing
    );
    assert!(
        s.load(&id).await.unwrap().is_none(),
        "update after expiry resurrected the session"
    );
    // an expired id can be created afresh.
    assert_eq!(
        s.create(&id, &md(&[("a", "3")]), Ttl::Default)
            .await
            .unwrap(),
        Some(Version::INITIAL)
    );
    assert_eq!(
        s.load(&id).await.unwrap().unwrap().metadata.get("a"),
        Some("3")
    );
}

/// Delete reports whether it removed a live record; repeating it is fine.
pub async fn delete_is_idempotent<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let keep = SessionId::generate();
    let id = SessionId::generate();
    s.create(&keep, &md(&[]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    s.create(&id, &md(&[]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    assert!(s.delete(&id).await.unwrap());
    assert!(!s.delete(&id).await.unwrap());
    assert!(!s.delete(&id).await.unwrap());
    assert!(s.load(&id).await.unwrap().is_none());
    assert!(
        s.load(&keep).await.unwrap().is_some(),
        "delete touched another session"
    );
    assert_eq!(
        s.create(&id, &md(&[]), Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
}

/// Runs `attempt` until it is conclusive (returns `true`); a slow machine
/// can make an attempt inconclusive. If every attempt was, the case fails:
/// it must not pass having asserted nothing.
async fn until_conclusive<F, Fut>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..ATTEMPTS {
        if attempt().await {
            return;
        }
    }
    panic!(
        "{what}: all {ATTEMPTS} attempts were inconclusive (machine too slow); nothing was checked"
    );
}

/// The call that should slide a record's expiry.
#[derive(Clone, Copy, Debug)]
enum Slide {
    Load,
    Touch,
}

/// Creates a record, slides it with `how` at 0.6 ttl, and checks at 1.2 ttl
/// (past its original expiry) that it is still there.
async fn assert_slides<H: Harness>(h: &H, s: &H::Store, t: Duration, how: Slide) {
    until_conclusive(&format!("{how:?} slides"), || async {
        let id = SessionId::generate();
        s.create(&id, &md(&[]), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        let created = h.now();
        h.sleep(t * 6 / 10).await;
        let before_slide = h.now();
        let live = match how {
            Slide::Load => s.load(&id).await.unwrap().is_some(),
            Slide::Touch => s.touch(&id).await.unwrap(),
        };
        assert!(live, "{how:?}: record expired before its ttl");
        h.sleep(t * 6 / 10).await;
        let before_check = h.now();
        let present = s.version(&id).await.unwrap().is_some();
        let after_check = h.now();
        // Conclusive only if the original expiry had surely passed and the
        // slid one surely had not.
        if before_check <= created + t + t / 20 || after_check >= before_slide + t {
            return false;
        }
        assert!(present, "{how:?} did not slide the expiry");
        true
    })
    .await;
}

/// `load` slides expiry; `version` does not.
pub async fn load_slides_expiry_version_does_not<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    let s = h.store(cfg(t)).await;
    // version does not slide: probing at 0.6t does not keep it past t.
    let id = SessionId::generate();
    s.create(&id, &md(&[]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    h.sleep(t * 6 / 10).await;
    let _ = s.version(&id).await.unwrap();
    h.sleep(t * 6 / 10).await;
    assert!(
        s.version(&id).await.unwrap().is_none(),
        "version slid the expiry"
    );
    assert!(s.load(&id).await.unwrap().is_none());

    assert_slides(&*h, &s, t, Slide::Load).await;
}

/// `touch` slides expiry and reports whether the record was live.
pub async fn touch_slides_expiry<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    let s = h.store(cfg(t)).await;
    assert_slides(&*h, &s, t, Slide::Touch).await;
    let id = SessionId::generate();
    s.create(&id, &md(&[]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    h.sleep(t * 2).await;
    assert!(!s.touch(&id).await.unwrap(), "touch of an expired record");
    assert!(
        s.version(&id).await.unwrap().is_none(),
        "touch revived an expired record"
    );
}

/// `peek` reads what `load` reads but never slides: a record peeked
/// again and again still expires at its original deadline.
///
/// The record is peeked at 0.3, 0.6 and 0.9 ttl and checked at 1.2 ttl.
/// "Gone at 1.2 ttl" holds however slow the machine is (time only moves
/// forward); an attempt counts only if a slide by the last peek would
/// still have kept the record alive at the check, so a peek that slid
/// cannot pass unnoticed. The case fails, not passes, if no attempt
/// could tell.
pub async fn peek_does_not_slide_expiry<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    let s = h.store(cfg(t)).await;
    let m = md(&[("peeked", "yes")]);
    for _ in 0..ATTEMPTS {
        let id = SessionId::generate();
        let before_create = h.now();
        s.create(&id, &m, Ttl::Default).await.unwrap().unwrap();
        let mut last_peek = before_create;
        for step in 1..=3u32 {
            h.sleep(t * 3 / 10).await;
            last_peek = h.now();
            let got = s.peek(&id).await.unwrap();
            let after_peek = h.now();
            // Surely live: the record was created after `before_create`.
            if after_peek < before_create + t {
                let rec = got.unwrap_or_else(|| panic!("peek {step} missed a live record"));
                assert_eq!(rec.version, Version::INITIAL);
                assert_eq!(rec.metadata, m);
            }
        }
        h.sleep(t * 3 / 10).await;
        let gone = s.version(&id).await.unwrap().is_none();
        let after_check = h.now();
        assert!(
            gone,
            "peek slid the expiry: the record outlived its original deadline"
        );
        assert!(
            s.peek(&id).await.unwrap().is_none(),
            "peek sees an expired record"
        );
        // Had the last peek slid, the record would have lived until at
        // least `last_peek + t`: the check was decisive if it ended before.
        if after_check + t / 20 < last_peek + t {
            return;
        }
    }
    panic!(
        "peek_does_not_slide_expiry: no attempt was decisive in {ATTEMPTS} tries (machine too slow)"
    );
}

/// Sliding never keeps a record past `max_lifetime` from creation, and
/// (the other half) does keep it past its TTL until then.
///
/// The record is touched every 0.3 ttl until 2.6 ttl (max_lifetime is 2
/// ttl). Gone at the end holds however slow the machine is. The slide half
/// counts only a touch that found the record live after its original
/// expiry had surely passed; an attempt without one is inconclusive and
/// retried, and the case fails if no attempt saw it.
pub async fn max_lifetime_caps_sliding<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    let s = h.store(cfg(t).with_max_lifetime(t * 2).unwrap()).await;
    until_conclusive("max_lifetime slides until the cap", || async {
        let id = SessionId::generate();
        s.create(&id, &md(&[]), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        let created = h.now();
        let mut alive_past_ttl = false;
        // Slide every 0.3t until 2.6t: without the cap it would never expire.
        while h.now() < created + t * 26 / 10 {
            let before = h.now();
            let live = s.touch(&id).await.unwrap();
            // The record was created before `created`, so without the
            // slides it was gone by `created + t`.
            if live && before > created + t + t / 20 {
                alive_past_ttl = true;
            }
            let _ = s.load(&id).await.unwrap();
            h.sleep(t * 3 / 10).await;
        }
        assert!(
            s.load(&id).await.unwrap().is_none(),
            "slides kept the record past max_lifetime"
        );
        assert!(!s.touch(&id).await.unwrap());
        assert_eq!(
            s.update(&id, Version::INITIAL, &md(&[])).await.unwrap(),
            Update::Missing
        );
        alive_past_ttl
    })
    .await;
}

/// Once expired, a record is invisible to every method at once.
pub async fn expired_record_invisible_to_every_method<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    let s = h.store(cfg(t)).await;
    let id = SessionId::generate();
    let id2 = SessionId::generate();
    let other = SessionId::generate();
    s.create(&id, &md(&[("a", "b")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    s.create(&id2, &md(&[("a", "b")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    s.create(&other, &md(&[]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    // keep `other` alive while the two others expire
    h.sleep(t * 6 / 10).await;
    s.touch(&other).await.unwrap();
    h.sleep(t * 6 / 10).await;
    s.touch(&other).await.unwrap();
    // Each method is the first to look at an expired record in turn, so
    // none can rely on another having cleaned it up.
    let ids = scan_all(&s, 100).await;
    assert!(
        !ids.contains(&id) && !ids.contains(&id2),
        "scan returned an expired record"
    );
    assert!(
        !s.delete(&id).await.unwrap(),
        "delete reported removing an expired record"
    );
    assert!(
        s.version(&id2).await.unwrap().is_none(),
        "version sees an expired record"
    );
    assert!(
        s.peek(&id2).await.unwrap().is_none(),
        "peek sees an expired record"
    );
    assert!(
        s.load(&id2).await.unwrap().is_none(),
        "load sees an expired record"
    );
    assert!(
        !s.touch(&id2).await.unwrap(),
        "touch sees an expired record"
    );
    assert_eq!(
        s.update(&id2, Version::INITIAL, &md(&[])).await.unwrap(),
        Update::Missing
    );
    assert!(ids.contains(&other), "scan missed a live record");
    assert_eq!(
        s.create(&id, &md(&[]), Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
}

/// A record created with a custom (shorter) TTL slides by it until its
/// first applied update, which switches it to the store TTL.
pub async fn custom_ttl_until_first_update<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    let s = h.store(cfg(t * 4)).await;
    let short = Ttl::Custom(t);
    // Abandoned placeholder: touched at 0.6t it still expires by 1.6t + margin,
    // well before the store TTL of 4t.
    let id = SessionId::generate();
    s.create(&id, &md(&[]), short).await.unwrap().unwrap();
    h.sleep(t * 6 / 10).await;
    assert!(s.load(&id).await.unwrap().is_some());
    h.sleep(t * 12 / 10).await;
    assert!(
        s.version(&id).await.unwrap().is_none(),
        "custom ttl not honoured on slide"
    );
    // Activated placeholder: after the update it lives by the store TTL.
    let id = SessionId::generate();
    s.create(&id, &md(&[]), short).await.unwrap().unwrap();
    assert_eq!(
        s.update(&id, Version::INITIAL, &md(&[("active", "1")]))
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    h.sleep(t * 15 / 10).await;
    // 1.5t after activation: past the short ttl, well within the store ttl.
    assert!(
        s.load(&id).await.unwrap().is_some(),
        "update did not switch to the store ttl"
    );
}

/// 16 writers doing read-modify-CAS loops on one session lose no update.
pub async fn concurrent_cas_writers_lose_nothing<H: Harness>(h: Arc<H>) {
    const WRITERS: usize = 16;
    const EACH: usize = 8;
    let id = SessionId::generate();
    h.store(long())
        .await
        .create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = h.store(long()).await;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            let mut applied = 0usize;
            while applied < EACH {
                let rec = s.load(&id).await.unwrap().expect("session stays live");
                let n: usize = rec.metadata.get("n").unwrap().parse().unwrap();
                let key = format!("w{w}");
                let mine: usize = rec.metadata.get(&key).map_or(0, |v| v.parse().unwrap());
                let next = rec
                    .metadata
                    .with("n", (n + 1).to_string())
                    .unwrap()
                    .with(key, (mine + 1).to_string())
                    .unwrap();
                match s.update(&id, rec.version, &next).await.unwrap() {
                    Update::Applied(v) => {
                        assert!(v > rec.version);
                        applied += 1;
                    }
                    Update::Conflict { current } => {
                        assert_ne!(current, rec.version);
                        conflicts += 1;
                    }
                    Update::Missing => panic!("session vanished"),
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rec = h.store(long()).await.load(&id).await.unwrap().unwrap();
    let total = WRITERS * EACH;
    assert_eq!(
        rec.version,
        Version::new(1 + total as u64),
        "final version = 1 + applied updates"
    );
    assert_eq!(
        rec.metadata.get("n"),
        Some(total.to_string().as_str()),
        "an increment was lost"
    );
    for w in 0..WRITERS {
        assert_eq!(
            rec.metadata.get(&format!("w{w}")),
            Some(EACH.to_string().as_str())
        );
    }
}

/// Metadata at the limits round-trips; beyond them it cannot be built, so
/// nothing reaches storage; invalid ids are rejected at parse.
pub async fn metadata_limits_hold_in_storage<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    // A map at the encoded-size limit.
    let mut map = BTreeMap::new();
    let value = "v".repeat(limits::MAX_VALUE_LEN);
    let mut i = 0;
    loop {
        let mut next = map.clone();
        next.insert(format!("{i:0>250}"), value.clone());
        if Metadata::from_map(next.clone()).is_err() {
            break;
        }
        map = next;
        i += 1;
    }
    let big = Metadata::from_map(map.clone()).unwrap();
    assert!(big.json().len() > limits::MAX_ENCODED_LEN - limits::MAX_VALUE_LEN - 300);
    let id = SessionId::generate();
    assert!(s.create(&id, &big, Ttl::Default).await.unwrap().is_some());
    assert_eq!(s.load(&id).await.unwrap().unwrap().metadata, big);
    // One more entry is refused before any store sees it; the record is unchanged.
    let err = big.with("one-more", value.clone()).unwrap_err();
    assert!(matches!(err, MetadataError::TooLarge { .. }), "{err:?}");
    assert!(matches!(
        Metadata::new().with("k", "v".repeat(limits::MAX_VALUE_LEN + 1)),
        Err(MetadataError::ValueTooLong { .. })
    ));
    assert!(matches!(
        Metadata::new().with("k".repeat(limits::MAX_KEY_LEN + 1), ""),
        Err(MetadataError::KeyTooLong { .. })
    ));
    let many =
        Metadata::from_pairs((0..=limits::MAX_ENTRIES).map(|i| (i.to_string(), String::new())));
    assert!(matches!(many, Err(MetadataError::TooManyEntries { .. })));
    assert_eq!(
        s.load(&id).await.unwrap().unwrap().version,
        Version::INITIAL
    );
    assert!(matches!(
        SessionId::parse("bad id"),
        Err(InvalidInput::SessionIdByte { .. })
    ));
    assert!(matches!(
        SessionId::parse(&"x".repeat(129)),
        Err(InvalidInput::SessionIdLength { .. })
    ));
    // Maximum entry count with small values round-trips too.
    let wide =
        Metadata::from_pairs((0..limits::MAX_ENTRIES).map(|i| (format!("k{i}"), i.to_string())))
            .unwrap();
    let id = SessionId::generate();
    s.create(&id, &wide, Ttl::Default).await.unwrap().unwrap();
    assert_eq!(s.load(&id).await.unwrap().unwrap().metadata, wide);
}

fn assert_corrupt(what: &str, r: Result<impl std::fmt::Debug, Error>) {
    match r {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("{what}: expected a corrupt-record error, got {other:?}"),
    }
}

/// A record written by someone else that does not decode gives a
/// corrupt-record error from every operation that reads the broken part
/// (`touch` included: it never slides a corrupt record), and the failing
/// calls leave it intact. `version` reads only the version and reports a
/// record with broken metadata at its version; an update naming another
/// version is a conflict.
pub async fn corrupt_record_reported_and_left_intact<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let mut planted = 0;
    for kind in Corruption::ALL {
        let id = SessionId::generate();
        if !h.plant(&id, kind).await {
            continue;
        }
        planted += 1;
        let before = h.raw(&id).await.expect("planted record is readable raw");
        assert_corrupt(&format!("load {kind:?}"), s.load(&id).await);
        assert_corrupt(&format!("peek {kind:?}"), s.peek(&id).await);
        assert_corrupt(&format!("touch {kind:?}"), s.touch(&id).await);
        if kind.breaks_version() {
            assert_corrupt(&format!("version {kind:?}"), s.version(&id).await);
            assert_corrupt(
                &format!("update {kind:?}"),
                s.update(&id, Version::INITIAL, &md(&[("x", "y")])).await,
            );
        } else {
            assert_eq!(
                s.version(&id).await.unwrap(),
                Some(Version::INITIAL),
                "version of a record with corrupt metadata {kind:?}"
            );
            assert_eq!(
                s.update(&id, Version::new(7), &md(&[("x", "y")]))
                    .await
                    .unwrap(),
                Update::Conflict {
                    current: Version::INITIAL
                },
                "update naming another version {kind:?}"
            );
        }
        assert_eq!(
            s.create(&id, &md(&[("x", "y")]), Ttl::Default)
                .await
                .ok()
                .flatten(),
            None,
            "create over a corrupt record {kind:?}"
        );
        assert_eq!(
            h.raw(&id).await.as_deref(),
            Some(before.as_str()),
            "{kind:?} record was modified"
        );
        // The error names the key or row.
        if let Err(Error::Corrupt { key, .. }) = s.load(&id).await {
            assert!(
                key.contains(id.as_str()),
                "corrupt error names {key:?}, not the session"
            );
        }
    }
    if planted == 0 {
        eprintln!(
            "corrupt records: this store holds typed values and cannot be corrupted from outside"
        );
    }
}

/// The repair paths for a corrupt record: a compare-and-set naming the
/// record's (valid) version replaces corrupt metadata, like any update;
/// a record whose version itself is broken can only be deleted, after
/// which the id can be created afresh.
pub async fn corrupt_metadata_repaired_by_cas<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    for kind in Corruption::ALL {
        let id = SessionId::generate();
        if !h.plant(&id, kind).await {
            continue;
        }
        let good = md(&[("repaired", "yes")]);
        if kind.breaks_version() {
            assert!(s.delete(&id).await.unwrap(), "delete of corrupt {kind:?}");
            assert_eq!(
                s.create(&id, &good, Ttl::Default).await.unwrap(),
                Some(Version::INITIAL),
                "create after deleting corrupt {kind:?}"
            );
        } else {
            assert_eq!(
                s.update(&id, Version::INITIAL, &good).await.unwrap(),
                Update::Applied(Version::new(2)),
                "a CAS at the right version replaces corrupt metadata {kind:?}"
            );
        }
        let rec = s.load(&id).await.unwrap().expect("repaired record loads");
        assert_eq!(rec.metadata, good, "{kind:?}");
        assert!(s.touch(&id).await.unwrap());
    }
}

/// Versions stop at [`Version::MAX`] (2^53 - 1): the update that reaches
/// it is applied, the next one is refused with [`Error::VersionLimit`] and
/// writes nothing; conflicts are still conflicts.
pub async fn version_ceiling_is_a_typed_error<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let below = Version::new(Version::MAX.get() - 1);
    h.set_version(&id, below).await;
    assert_eq!(s.version(&id).await.unwrap(), Some(below));
    assert_eq!(
        s.update(&id, below, &md(&[("n", "max")])).await.unwrap(),
        Update::Applied(Version::MAX)
    );
    let rec = s.load(&id).await.unwrap().expect("record at MAX loads");
    assert_eq!(rec.version, Version::MAX);
    let before = h.raw(&id).await;
    match s.update(&id, Version::MAX, &md(&[("n", "past")])).await {
        Err(Error::VersionLimit { key }) => assert!(key.contains(id.as_str()), "{key}"),
        other => panic!("update past the maximum version: {other:?}"),
    }
    assert!(
        !s.update(&id, Version::MAX, &md(&[]))
            .await
            .unwrap_err()
            .is_transient(),
        "the version limit is permanent"
    );
    assert_eq!(h.raw(&id).await, before, "a refused update wrote");
    assert_eq!(
        s.update(&id, below, &md(&[("n", "stale")])).await.unwrap(),
        Update::Conflict {
            current: Version::MAX
        }
    );
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.version, rec.metadata.get("n")),
        (Version::MAX, Some("max"))
    );
    assert!(s.touch(&id).await.unwrap());
    assert!(s.delete(&id).await.unwrap());
    assert_eq!(
        s.create(&id, &md(&[]), Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
}

/// A record whose capped deadline (`created + max_lifetime`) is already
/// past when a write would slide it (max_lifetime lowered since it was
/// created, or a server clock that jumped) is expired: `update` reports
/// it missing, `touch` false, it is deleted and the delete is published.
pub async fn past_deadline_is_expired<H: Harness>(h: Arc<H>) {
    let t = h.ttl_unit();
    // Written under a long TTL and no cap...
    let old = h.store(long()).await;
    let mut stream = old.changes().expect("store has a change stream");
    let probe = SessionId::generate();
    old.create(&probe, &md(&[]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    write_until_seen(&old, &mut stream, &probe, Version::INITIAL).await;
    let by_update = SessionId::generate();
    let by_touch = SessionId::generate();
    for id in [&by_update, &by_touch] {
        old.create(id, &md(&[("a", "b")]), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
    }
    // ...then read by a deployment whose max_lifetime has already passed.
    h.sleep(t * 3 / 2).await;
    let new = h.store(cfg(t).with_max_lifetime(t).unwrap()).await;
    assert_eq!(
        new.update(&by_update, Version::INITIAL, &md(&[("a", "c")]))
            .await
            .unwrap(),
        Update::Missing,
        "update of a record past its capped deadline"
    );
    assert!(
        !new.touch(&by_touch).await.unwrap(),
        "touch of a record past its capped deadline"
    );
    for id in [&by_update, &by_touch] {
        loop {
            match next_change_for(&mut stream, id, Duration::from_secs(10)).await {
                Some(Change::Deleted { .. }) => break,
                Some(Change::Written { .. }) => {}
                other => panic!("expected a delete event for {id}, got {other:?}"),
            }
        }
        assert!(
            old.version(id).await.unwrap().is_none(),
            "an expired record is still stored"
        );
        assert!(old.peek(id).await.unwrap().is_none());
    }
    assert!(
        old.load(&probe).await.unwrap().is_some(),
        "another session was touched"
    );
}

/// Scan skips stored entries whose id is not a valid session id, counts
/// them in [`Page::skipped`](crate::Page::skipped), and goes on: one bad
/// entry never hides the sessions after it.
pub async fn scan_skips_and_counts_bad_ids<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let mut good = HashSet::new();
    for _ in 0..5 {
        let id = SessionId::generate();
        s.create(&id, &md(&[]), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        good.insert(id);
    }
    let planted = h.plant_bad_id().await && h.plant_bad_id().await;
    for limit in [1, 2, 100] {
        let mut seen = HashSet::new();
        let mut skipped = 0;
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = s.scan(cursor.as_ref(), limit).await.unwrap();
            seen.extend(page.ids);
            skipped += page.skipped;
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, good, "limit {limit}: the scan lost sessions");
        if planted {
            assert!(
                skipped >= 2,
                "limit {limit}: {skipped} bad entries counted, 2 planted"
            );
        } else {
            assert_eq!(skipped, 0, "limit {limit}");
        }
    }
    if !planted {
        eprintln!("scan: this store cannot hold an invalid id; only the count of 0 was checked");
    }
}

async fn scan_all<S: SessionStore>(s: &S, limit: usize) -> Vec<SessionId> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = s.scan(cursor.as_ref(), limit).await.unwrap();
        out.extend(page.ids);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Scan returns every session live for the whole scan and none deleted
/// before it began, while others are created and deleted concurrently.
pub async fn scan_sees_every_live_session_under_churn<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let mut stable = HashSet::new();
    for _ in 0..150 {
        let id = SessionId::generate();
        s.create(&id, &md(&[]), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        stable.insert(id);
    }
    let mut gone = HashSet::new();
    for _ in 0..50 {
        let id = SessionId::generate();
        s.create(&id, &md(&[]), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        s.delete(&id).await.unwrap();
        gone.insert(id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let s = h.store(long()).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = SessionId::generate();
                s.create(&id, &md(&[]), Ttl::Default)
                    .await
                    .unwrap()
                    .unwrap();
                if n % 2 == 0 {
                    s.delete(&id).await.unwrap();
                }
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let seen = scan_all(&s, 7).await;
    stop.store(true, Ordering::Relaxed);
    let churned = churn.await.unwrap();
    let unique: HashSet<_> = seen.iter().cloned().collect();
    if !H::SCAN_MAY_REPEAT {
        assert_eq!(unique.len(), seen.len(), "scan repeated a session");
    }
    let missed: Vec<_> = stable.difference(&unique).collect();
    assert!(
        missed.is_empty(),
        "scan missed {} live sessions (churn: {churned})",
        missed.len()
    );
    assert!(
        unique.is_disjoint(&gone),
        "scan returned a session deleted before it began"
    );
}

/// A zero page size is invalid input.
pub async fn scan_rejects_zero_limit<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    assert!(matches!(
        s.scan(None, 0).await,
        Err(Error::InvalidInput(InvalidInput::ScanLimit))
    ));
    assert!(
        scan_all(&s, 1).await.is_empty(),
        "fresh storage scans empty"
    );
}

async fn next_change_for(
    stream: &mut crate::change::ChangeStream,
    id: &SessionId,
    within: Duration,
) -> Option<Change> {
    tokio::time::timeout(within, async {
        loop {
            match stream.recv().await {
                Some(Change::Written { id: got, version }) if &got == id => {
                    return Some(Change::Written { id: got, version });
                }
                Some(Change::Deleted { id: got }) if &got == id => {
                    return Some(Change::Deleted { id: got });
                }
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// The change stream reports creates, updates and deletes made through
/// another handle on the same storage.
pub async fn change_stream_reports_other_handles_writes<H: Harness>(h: Arc<H>) {
    let watcher = h.store(long()).await;
    let writer = h.store(long()).await;
    let mut stream = watcher.changes().expect("store has a change stream");
    let id = SessionId::generate();
    writer
        .create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    // A subscription may take a moment to be live: write until seen.
    let mut version = Version::INITIAL;
    let mut seen = None;
    for n in 1..=40 {
        version = match writer
            .update(&id, version, &md(&[("n", &n.to_string())]))
            .await
            .unwrap()
        {
            Update::Applied(v) => v,
            other => panic!("{other:?}"),
        };
        if let Some(c) = next_change_for(&mut stream, &id, Duration::from_millis(250)).await {
            seen = Some(c);
            break;
        }
    }
    let Some(Change::Written { version: got, .. }) = seen else {
        panic!("no change event for updates through another handle");
    };
    assert!(got <= version, "event from the future: {got} > {version}");
    // Now the stream is live: each further write is reported.
    let v = writer
        .update(&id, version, &md(&[("n", "last")]))
        .await
        .unwrap();
    let Update::Applied(v) = v else {
        panic!("{v:?}")
    };
    loop {
        match next_change_for(&mut stream, &id, Duration::from_secs(10)).await {
            Some(Change::Written { version: got, .. }) if got == v => break,
            Some(Change::Written { .. }) => {}
            other => panic!("expected the update at {v}, got {other:?}"),
        }
    }
    assert!(writer.delete(&id).await.unwrap());
    assert_eq!(
        next_change_for(&mut stream, &id, Duration::from_secs(10)).await,
        Some(Change::Deleted { id: id.clone() }),
        "delete through another handle not reported"
    );
}

/// Writes through `writer` until `stream` reports one (a subscription may
/// take a moment to be live); returns the version last written.
async fn write_until_seen<S: SessionStore>(
    writer: &S,
    stream: &mut crate::change::ChangeStream,
    id: &SessionId,
    mut version: Version,
) -> Version {
    for n in 1..=40 {
        version = match writer
            .update(id, version, &md(&[("n", &n.to_string())]))
            .await
            .unwrap()
        {
            Update::Applied(v) => v,
            other => panic!("{other:?}"),
        };
        if next_change_for(stream, id, Duration::from_millis(250))
            .await
            .is_some()
        {
            return version;
        }
    }
    panic!("the change stream never reported a write");
}

/// Waits for `want` (`Down` or `Resync`), skipping write events; panics
/// on the other signal first, on the end of the stream, or after `within`.
async fn expect_signal(
    stream: &mut crate::change::ChangeStream,
    want: &Change,
    within: Duration,
    what: &str,
) {
    let got = tokio::time::timeout(within, async {
        loop {
            match stream.recv().await {
                Some(c @ (Change::Down | Change::Resync)) => return Some(c),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await;
    match got {
        Ok(Some(c)) if &c == want => {}
        Ok(Some(c)) => panic!("{what}: expected {want:?}, got {c:?} first"),
        Ok(None) => panic!("{what}: the change stream ended"),
        Err(elapsed) => panic!("{what}: no {want:?} within {within:?} ({elapsed})"),
    }
}

/// When the connection behind a change stream is cut, the stream says
/// [`Change::Down`] first (as soon as the store notices, before it
/// reconnects), then [`Change::Resync`] once it listens again, and a write
/// made after the resync is delivered. Twice, so each gap gets its own
/// `Down`. Stores whose stream cannot lose a connection (the harness's
/// `interrupt_changes` says `false`) skip the case.
pub async fn change_stream_signals_down_then_resync<H: Harness>(h: Arc<H>) {
    let watcher = h.store(long()).await;
    let writer = h.store(long()).await;
    let mut stream = watcher.changes().expect("store has a change stream");
    let id = SessionId::generate();
    writer
        .create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let mut version = write_until_seen(&writer, &mut stream, &id, Version::INITIAL).await;
    for round in 1..=2 {
        // Drain what the live stream already delivered (an initial
        // `Resync`, write events) so only the interruption's signals count.
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), stream.recv()).await
        {}
        if !h.interrupt_changes(&watcher).await {
            eprintln!("change stream loss: this store's stream cannot be interrupted; skipped");
            return;
        }
        expect_signal(
            &mut stream,
            &Change::Down,
            Duration::from_secs(10),
            &format!("round {round}: after the connection was cut"),
        )
        .await;
        expect_signal(
            &mut stream,
            &Change::Resync,
            Duration::from_secs(20),
            &format!("round {round}: after the Down"),
        )
        .await;
        // Listening again: the next write is delivered without retries.
        version = match writer
            .update(&id, version, &md(&[("round", &round.to_string())]))
            .await
            .unwrap()
        {
            Update::Applied(v) => v,
            other => panic!("{other:?}"),
        };
        loop {
            match next_change_for(&mut stream, &id, Duration::from_secs(10)).await {
                Some(Change::Written { version: got, .. }) if got == version => break,
                Some(Change::Written { .. }) => {}
                other => panic!(
                    "round {round}: the write at {version} after the resync was not delivered: {other:?}"
                ),
            }
        }
    }
}

/// A retried update (same [`WriteId`]) returns its original
/// `Applied(v)` and writes nothing, also after 1 to 3 later writes by
/// others; a different write at the stale version is a `Conflict`.
pub async fn retried_update_returns_its_original_outcome<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .expect("created");
    let w = WriteId::generate();
    let mine = md(&[("n", "mine")]);
    assert_eq!(
        s.update_once(&id, Version::INITIAL, &mine, &w)
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    // The reply was "lost": the same write again, even with other metadata
    // (it must not be written, whatever it holds).
    for _ in 0..2 {
        assert_eq!(
            s.update_once(&id, Version::INITIAL, &md(&[("n", "again")]), &w)
                .await
                .unwrap(),
            Update::Applied(Version::new(2)),
            "a retried update must report its original outcome"
        );
    }
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.version, rec.metadata.get("n")),
        (Version::new(2), Some("mine")),
        "a retried update must not write again"
    );
    // A different write at the stale version is a genuine conflict.
    assert_eq!(
        s.update_once(&id, Version::INITIAL, &mine, &WriteId::generate())
            .await
            .unwrap(),
        Update::Conflict {
            current: Version::new(2)
        }
    );
    // Others write 1, 2, 3 times after it: the retry still reports it.
    let mut others = Vec::new();
    for k in 1..=3u64 {
        let other = WriteId::generate();
        let at = Version::new(1 + k);
        let theirs = md(&[("n", &format!("other {k}"))]);
        assert_eq!(
            s.update_once(&id, at, &theirs, &other).await.unwrap(),
            Update::Applied(at.next())
        );
        others.push((other, at, theirs));
        assert_eq!(
            s.update_once(&id, Version::INITIAL, &mine, &w)
                .await
                .unwrap(),
            Update::Applied(Version::new(2)),
            "retry after {k} later write(s) by others"
        );
        for (o, at, m) in &others {
            assert_eq!(
                s.update_once(&id, *at, m, o).await.unwrap(),
                Update::Applied(at.next()),
                "every recent write is remembered with its own version"
            );
        }
        let rec = s.load(&id).await.unwrap().unwrap();
        assert_eq!(rec.version, at.next(), "a retry wrote after {k} writes");
        assert_eq!(rec.metadata, others.last().unwrap().2);
    }
    // `update` (a fresh id each call) at a stale version still conflicts.
    assert_eq!(
        s.update(&id, Version::INITIAL, &mine).await.unwrap(),
        Update::Conflict {
            current: Version::new(5)
        }
    );
}

/// A retried update reports its outcome without publishing it again:
/// other nodes see one change event per applied write.
pub async fn retried_write_publishes_nothing<H: Harness>(h: Arc<H>) {
    let watcher = h.store(long()).await;
    let s = h.store(long()).await;
    let mut stream = watcher.changes().expect("store has a change stream");
    let id = SessionId::generate();
    s.create(&id, &md(&[("n", "0")]), Ttl::Default)
        .await
        .unwrap()
        .expect("created");
    let at = write_until_seen(&s, &mut stream, &id, Version::INITIAL).await;
    let w = WriteId::generate();
    let mine = md(&[("n", "mine")]);
    let Update::Applied(v) = s.update_once(&id, at, &mine, &w).await.unwrap() else {
        panic!("not applied")
    };
    loop {
        match next_change_for(&mut stream, &id, Duration::from_secs(10)).await {
            Some(Change::Written { version, .. }) if version == v => break,
            Some(Change::Written { version, .. }) if version < v => {}
            other => panic!("expected the write at {v}, got {other:?}"),
        }
    }
    for _ in 0..2 {
        assert_eq!(
            s.update_once(&id, at, &mine, &w).await.unwrap(),
            Update::Applied(v)
        );
    }
    // A marker write: the next event must be it, not a replay's.
    let Update::Applied(marker) = s.update(&id, v, &md(&[("n", "marker")])).await.unwrap() else {
        panic!("marker not applied")
    };
    assert_eq!(
        next_change_for(&mut stream, &id, Duration::from_secs(10)).await,
        Some(Change::Written {
            id: id.clone(),
            version: marker
        }),
        "a retried write was published again"
    );
}

/// A retried create (same [`WriteId`]) returns the version it created,
/// not `None`, and writes nothing; another create of the id is `None`.
pub async fn retried_create_returns_its_version<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let w = WriteId::generate();
    let first = md(&[("who", "first")]);
    assert_eq!(
        s.create_once(&id, &first, Ttl::Default, &w).await.unwrap(),
        Some(Version::INITIAL)
    );
    assert_eq!(
        s.create_once(&id, &md(&[("who", "retry")]), Ttl::Default, &w)
            .await
            .unwrap(),
        Some(Version::INITIAL),
        "a retried create must report the version it created"
    );
    assert_eq!(
        s.create_once(
            &id,
            &md(&[("who", "other")]),
            Ttl::Default,
            &WriteId::generate()
        )
        .await
        .unwrap(),
        None,
        "another create of a taken id"
    );
    assert_eq!(s.create(&id, &first, Ttl::Default).await.unwrap(), None);
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.version, rec.metadata.get("who")),
        (Version::INITIAL, Some("first"))
    );
    // Still recognised after a later update by someone else.
    let uw = WriteId::generate();
    let u = s
        .update_once(&id, Version::INITIAL, &md(&[("who", "updated")]), &uw)
        .await
        .unwrap();
    assert_eq!(u, Update::Applied(Version::new(2)));
    assert_eq!(
        s.create_once(&id, &first, Ttl::Default, &uw).await.unwrap(),
        None,
        "an update's write id does not make a create look applied"
    );
    assert_eq!(
        s.create_once(&id, &first, Ttl::Default, &w).await.unwrap(),
        Some(Version::INITIAL)
    );
    assert_eq!(
        s.load(&id).await.unwrap().unwrap().metadata.get("who"),
        Some("updated"),
        "a retried create must not overwrite"
    );
}

/// A retry after the record was deleted: an update reports `Missing`
/// (the record and its write list are gone), and never recreates it.
pub async fn retried_write_after_delete_is_missing<H: Harness>(h: Arc<H>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let (c, u) = (WriteId::generate(), WriteId::generate());
    let m = md(&[("k", "v")]);
    assert_eq!(
        s.create_once(&id, &m, Ttl::Default, &c).await.unwrap(),
        Some(Version::INITIAL)
    );
    assert_eq!(
        s.update_once(&id, Version::INITIAL, &m, &u).await.unwrap(),
        Update::Applied(Version::new(2))
    );
    assert!(s.delete(&id).await.unwrap());
    assert_eq!(
        s.update_once(&id, Version::INITIAL, &m, &u).await.unwrap(),
        Update::Missing
    );
    assert!(s.load(&id).await.unwrap().is_none(), "a retry recreated it");
}

/// Write ids in text form are checked: a wrong length or a byte outside
/// the alphabet is a typed [`InvalidInput`] error, never a panic, and a
/// valid one round-trips into a write every store honours.
pub async fn write_id_text_is_checked<H: Harness>(h: Arc<H>) {
    for bad in [
        String::new(),
        "A".repeat(21),
        "A".repeat(23),
        "A".repeat(4096),
        format!("{}=", "A".repeat(21)),
        format!("{} ", "A".repeat(21)),
        format!("{}\n", "A".repeat(21)),
        format!("{}:", "A".repeat(21)),
        // Bits past the 128th.
        format!("{}B", "A".repeat(21)),
        "\u{e9}".repeat(11),
    ] {
        match WriteId::parse(&bad) {
            Err(InvalidInput::WriteIdLength { .. } | InvalidInput::WriteIdByte { .. }) => {}
            other => panic!("{bad:?} parsed as {other:?}"),
        }
    }
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let w = WriteId::parse(&WriteId::generate().to_string()).unwrap();
    assert_eq!(
        s.create_once(&id, &Metadata::new(), Ttl::Default, &w)
            .await
            .unwrap(),
        Some(Version::INITIAL)
    );
    let again = WriteId::parse(&w.to_string()).unwrap();
    assert_eq!(
        s.create_once(&id, &Metadata::new(), Ttl::Default, &again)
            .await
            .unwrap(),
        Some(Version::INITIAL)
    );
}
