//! Redis-specific behaviour beyond the core contract: script reload after
//! `SCRIPT FLUSH`, each kind of corrupt record (in the string layout and
//! in the legacy hash layout), reading and migrating legacy hash records,
//! and prefix isolation. Runs
//! against standalone Redis, and against the cluster with feature `cluster`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Backend, Layout, Raw, RedisHarness, plant, plant_in, plant_legacy, plant_legacy_corrupt,
    raw_dump, record_bytes,
};
use session_core::testing::{Corruption, Harness};
use session_core::{
    Change, ChangeStream, ConfigError, CorruptRecord, Cursor, Error, InvalidInput, Metadata,
    MetadataError, SessionId, SessionStore, StoreConfig, Ttl, Update, Version,
};
use session_storage_redis::{RedisConfig, RedisStore};

fn md(k: &str, v: &str) -> Metadata {
    Metadata::new().with(k, v).unwrap()
}

fn long() -> StoreConfig {
    StoreConfig::new(Duration::from_secs(600)).unwrap()
}

async fn scan_all(s: &RedisStore) -> Vec<SessionId> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = s.scan(cursor.as_ref(), 50).await.unwrap();
        out.extend(page.ids);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Every script still works after the server forgot them all.
async fn noscript_reload<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md("a", "1"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let flush = || async {
        let _: () = h.raw.q(redis::cmd("SCRIPT").arg("FLUSH")).await.unwrap();
    };
    flush().await;
    assert_eq!(s.load(&id).await.unwrap().unwrap().metadata, md("a", "1"));
    flush().await;
    assert_eq!(
        s.update(&id, Version::INITIAL, &md("a", "2"))
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    flush().await;
    assert!(s.touch(&id).await.unwrap());
    flush().await;
    let other = SessionId::generate();
    assert_eq!(
        s.create(&other, &md("b", "1"), Ttl::Default).await.unwrap(),
        Some(Version::INITIAL)
    );
    flush().await;
    assert!(s.delete(&id).await.unwrap());
    assert_eq!(s.version(&other).await.unwrap(), Some(Version::INITIAL));
}

/// A way to plant a corrupt record: the string layout or the legacy hash.
type Planter = for<'a> fn(
    &'a Raw,
    &'a str,
    Corruption,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// One corruption kind, in the string layout and then in the legacy hash
/// layout: the specific error, naming the key, and nothing written by any
/// call that refused it.
async fn corrupt_case<B: Backend>(
    h: &RedisHarness<B>,
    kind: Corruption,
    check: fn(&CorruptRecord) -> bool,
) {
    let planters: [Planter; 4] = [
        |raw, key, kind| Box::pin(plant(raw, key, kind)),
        |raw, key, kind| Box::pin(plant_in(raw, key, kind, Layout::S2)),
        |raw, key, kind| Box::pin(plant_in(raw, key, kind, Layout::S1)),
        |raw, key, kind| Box::pin(plant_legacy_corrupt(raw, key, kind)),
    ];
    for planter in planters {
        corrupt_case_with(h, kind, check, planter).await;
    }
}

async fn corrupt_case_with<B: Backend>(
    h: &RedisHarness<B>,
    kind: Corruption,
    check: fn(&CorruptRecord) -> bool,
    planter: Planter,
) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let key = s.key(&id);
    planter(&h.raw, &key, kind).await;
    let before = raw_dump(&h.raw, &key).await.unwrap();
    let expect = |what: &str, r: Result<String, Error>| match r {
        Err(Error::Corrupt { key: k, source }) => {
            assert_eq!(k, key, "{what}: error names the key");
            assert!(
                check(&source),
                "{what} {kind:?}: unexpected reason {source:?}"
            );
        }
        other => panic!("{what} {kind:?}: expected corrupt, got {other:?}"),
    };
    expect("load", s.load(&id).await.map(|r| format!("{r:?}")));
    if kind.breaks_version() {
        expect("version", s.version(&id).await.map(|r| format!("{r:?}")));
        expect(
            "update",
            s.update(&id, Version::INITIAL, &md("x", "y"))
                .await
                .map(|r| format!("{r:?}")),
        );
    }
    // touch checks the whole record (metadata too) and never slides a corrupt one.
    expect("touch", s.touch(&id).await.map(|r| format!("{r:?}")));
    expect("peek", s.peek(&id).await.map(|r| format!("{r:?}")));
    assert_eq!(
        s.create(&id, &md("x", "y"), Ttl::Default).await.unwrap(),
        None
    );
    assert_eq!(
        raw_dump(&h.raw, &key).await.unwrap(),
        before,
        "{kind:?}: record modified"
    );
    // The corrupt key is still scanned (an operator can find it) and delete removes it.
    assert!(scan_all(&s).await.contains(&id));
    assert!(s.delete(&id).await.unwrap());
    assert!(raw_dump(&h.raw, &key).await.is_none());
}

async fn corrupt_wrong_type<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::WrongType, |r| {
        matches!(r, CorruptRecord::WrongType(_))
    })
    .await;
}

async fn corrupt_missing_version<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::MissingVersion, |r| {
        matches!(r, CorruptRecord::MissingField("v"))
    })
    .await;
}

async fn corrupt_non_numeric_version<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(
        &h,
        Corruption::NonNumericVersion,
        |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "abc"),
    )
    .await;
}

async fn corrupt_metadata_not_json<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::MetadataNotJson, |r| {
        matches!(
            r,
            CorruptRecord::InvalidMetadata(MetadataError::NotStringMap(_))
        )
    })
    .await;
}

async fn corrupt_metadata_not_string_map<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::MetadataNotStringMap, |r| {
        matches!(
            r,
            CorruptRecord::InvalidMetadata(MetadataError::NotStringMap(_))
        )
    })
    .await;
}

async fn corrupt_metadata_oversized<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::MetadataOversized, |r| {
        matches!(
            r,
            CorruptRecord::InvalidMetadata(MetadataError::TooLarge { .. })
        )
    })
    .await;
}

/// Versions that only `version` used to accept (`+5`, 16 digits past
/// 2^53 - 1) and bytes that are not UTF-8 are corrupt for every operation.
async fn corrupt_signed_version<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(
        &h,
        Corruption::SignedVersion,
        |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "+5"),
    )
    .await;
}

async fn corrupt_version_past_max<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(
        &h,
        Corruption::VersionPastMax,
        |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "9007199254740992"),
    )
    .await;
}

async fn corrupt_non_utf8_version<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(
        &h,
        Corruption::NonUtf8Version,
        |r| matches!(r, CorruptRecord::InvalidVersion(v) if v == "\u{fffd}\u{fffd}1"),
    )
    .await;
}

async fn corrupt_no_version_no_created<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::NoVersionNoCreated, |r| {
        matches!(r, CorruptRecord::MissingField("v"))
    })
    .await;
}

async fn corrupt_metadata_not_utf8<B: Backend>(h: Arc<RedisHarness<B>>) {
    corrupt_case(&h, Corruption::MetadataNotUtf8, |r| {
        matches!(r, CorruptRecord::InvalidMetadata(_))
    })
    .await;
}

/// A record whose version is not UTF-8, touched and updated over and
/// over, is reported corrupt each time, and no other session on the same
/// store handle (one shared multiplexed connection) notices: every load
/// of a healthy session succeeds meanwhile. (The scripts used to echo the
/// raw bytes into their error line, which the client could not parse: it
/// dropped the shared connection, and other callers saw broken pipes.)
async fn non_utf8_version_does_not_poison_the_connection<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let bad = SessionId::generate();
    plant(&h.raw, &s.key(&bad), Corruption::NonUtf8Version).await;
    let good = SessionId::generate();
    s.create(&good, &md("a", "1"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        let good = good.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match s.load(&good).await {
                    Ok(Some(_)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    for _ in 0..20 {
        for r in [
            s.touch(&bad).await.map(|_| ()),
            s.update(&bad, Version::INITIAL, &md("x", "y"))
                .await
                .map(|_| ()),
            s.version(&bad).await.map(|_| ()),
            s.load(&bad).await.map(|_| ()),
        ] {
            assert!(
                matches!(
                    r,
                    Err(Error::Corrupt {
                        source: CorruptRecord::InvalidVersion(_),
                        ..
                    })
                ),
                "expected corrupt, got {r:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        let (ok, failed) = r.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} loads of a healthy session failed, e.g. {}",
            failed.len(),
            failed[0]
        );
        total += ok;
    }
    assert!(total > 0, "no load ran");
}

/// Writes `value` as a plain string at a fresh session key and checks that
/// `load`, `peek`, `version`, `touch` and `update` all refuse it as corrupt
/// with a reason `check` accepts, leaving the stored value as it was.
/// Returns the id and the stored value's dump, for the caller's own
/// checks after.
async fn every_operation_refuses<B: Backend>(
    h: &RedisHarness<B>,
    s: &RedisStore,
    value: &[u8],
    check: fn(&CorruptRecord) -> bool,
) -> (SessionId, Option<String>) {
    let id = SessionId::generate();
    let key = s.key(&id);
    let _: () = h
        .raw
        .q(redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(600_000))
        .await
        .unwrap();
    let before = raw_dump(&h.raw, &key).await;
    for (what, r) in [
        ("load", s.load(&id).await.map(|_| ())),
        ("peek", s.peek(&id).await.map(|_| ())),
        ("version", s.version(&id).await.map(|_| ())),
        ("touch", s.touch(&id).await.map(|_| ())),
        (
            "update",
            s.update(&id, Version::INITIAL, &md("x", "y"))
                .await
                .map(|_| ()),
        ),
    ] {
        assert!(
            matches!(&r, Err(Error::Corrupt { source, .. }) if check(source)),
            "{what} of {:?}: {r:?}",
            String::from_utf8_lossy(value)
        );
    }
    assert_eq!(
        raw_dump(&h.raw, &key).await,
        before,
        "{:?} modified",
        String::from_utf8_lossy(value)
    );
    (id, before)
}

/// An `s3` record whose deadline is not 13 digits and a space is corrupt
/// (missing `e`) for every operation: the client's decode (`load`, `peek`,
/// `touch`, `version`) and the scripts' header check (`update`) agree;
/// nothing writes over it.
async fn corrupt_s3_deadline<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    for value in [
        &b"s3 12345 1 1 600000\n\n{}"[..],
        b"s3 176430060000x 1 1 600000\n\n{}",
        b"s3 17643006000000 1 1 600000\n\n{}",
        b"s3 1764300600000\n\n{}",
    ] {
        let (id, _) = every_operation_refuses(&h, &s, value, |r| {
            matches!(r, CorruptRecord::MissingField("e"))
        })
        .await;
        assert!(s.delete(&id).await.unwrap());
    }
}

/// A string someone else wrote at a session key (no `s1` header, or an
/// empty string) is corrupt (wrong type) for every operation that reads
/// it, `version` included; nothing writes over it, and delete removes it.
async fn corrupt_foreign_string<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    for value in ["hello", ""] {
        let (id, before) = every_operation_refuses(&h, &s, value.as_bytes(), |r| {
            matches!(r, CorruptRecord::WrongType(_))
        })
        .await;
        assert_eq!(
            s.create(&id, &md("x", "y"), Ttl::Default).await.unwrap(),
            None
        );
        assert_eq!(
            raw_dump(&h.raw, &s.key(&id)).await,
            before,
            "{value:?} modified"
        );
        assert!(s.delete(&id).await.unwrap());
    }
}

/// The type Redis reports for `key`.
async fn key_type<B: Backend>(h: &RedisHarness<B>, key: &str) -> String {
    h.raw.q(redis::cmd("TYPE").arg(key)).await.unwrap()
}

/// Records in the legacy hash layout (written here with a raw client, as a
/// release before the string layout did) are read by every operation, and
/// rewritten as strings by the first write: an `update`, a `touch`, or a
/// `load` past its slide window. `peek`, `version` and a `load` inside the
/// window leave them as they are.
async fn legacy_hash_records_are_read_and_migrated_on_touch<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let json = md("a", "1").json().to_owned();
    let legacy = |v: &'static [u8]| {
        [
            Some(v),
            Some(json.as_bytes()),
            Some(&b"1700000000000"[..]),
            Some(&b"600000"[..]),
        ]
    };

    // Reads: nothing rewritten.
    let id = SessionId::generate();
    let key = s.key(&id);
    plant_legacy(&h.raw, &key, legacy(b"4"), 590_000).await;
    assert_eq!(s.version(&id).await.unwrap(), Some(Version::new(4)));
    let rec = s.peek(&id).await.unwrap().unwrap();
    assert_eq!((rec.version, rec.metadata), (Version::new(4), md("a", "1")));
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.version, Version::new(4));
    assert_eq!(key_type(&h, &key).await, "hash", "a read migrated");
    // A conflict writes nothing either.
    assert_eq!(
        s.update(&id, Version::new(3), &md("a", "x")).await.unwrap(),
        Update::Conflict {
            current: Version::new(4)
        }
    );
    assert_eq!(key_type(&h, &key).await, "hash", "a conflict migrated");

    // update: applied on the legacy record, which becomes a string.
    assert_eq!(
        s.update(&id, Version::new(4), &md("a", "2")).await.unwrap(),
        Update::Applied(Version::new(5))
    );
    assert_eq!(key_type(&h, &key).await, "string");
    assert_eq!(
        header(&h, &key).await[2..],
        ["5", "1700000000000", "600000"],
        "the creation time is kept"
    );
    assert_eq!(header(&h, &key).await[0], "s3");
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!((rec.version, rec.metadata), (Version::new(5), md("a", "2")));

    // touch: slid and rewritten with the same version, metadata, creation
    // time and ttl.
    let id = SessionId::generate();
    let key = s.key(&id);
    plant_legacy(&h.raw, &key, legacy(b"7"), 300_000).await;
    assert!(s.touch(&id).await.unwrap());
    assert_eq!(key_type(&h, &key).await, "string");
    let fields = header(&h, &key).await;
    assert_eq!(
        fields[..1].iter().chain(&fields[2..]).collect::<Vec<_>>(),
        ["s3", "7", "1700000000000", "600000"]
    );
    assert!(pttl(&h, &key).await > 590_000, "touch did not slide");
    assert_eq!(
        fields[1].parse::<i64>().unwrap(),
        pexpiretime(&h, &key).await
    );
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!((rec.version, rec.metadata), (Version::new(7), md("a", "1")));

    // load past the slide window: the slide rewrites it.
    let id = SessionId::generate();
    let key = s.key(&id);
    plant_legacy(&h.raw, &key, legacy(b"2"), 300_000).await;
    assert_eq!(s.load(&id).await.unwrap().unwrap().version, Version::new(2));
    assert_eq!(key_type(&h, &key).await, "string");
    assert!(pttl(&h, &key).await > 590_000, "load did not slide");

    // A legacy record without metadata is corrupt for touch, untouched.
    let id = SessionId::generate();
    let key = s.key(&id);
    let [v, _, c, t] = legacy(b"1");
    plant_legacy(&h.raw, &key, [v, None, c, t], 300_000).await;
    let before = raw_dump(&h.raw, &key).await;
    assert!(matches!(
        s.touch(&id).await,
        Err(Error::Corrupt {
            source: CorruptRecord::MissingField("m"),
            ..
        })
    ));
    assert_eq!(raw_dump(&h.raw, &key).await, before);
    // ... and the CAS at its version repairs it (into the string layout).
    assert_eq!(
        s.update(&id, Version::INITIAL, &md("r", "1"))
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    assert_eq!(key_type(&h, &key).await, "string");

    // With max_lifetime: a legacy record past its cap is expired by touch
    // (deleted), not migrated.
    let capped = StoreConfig::new(Duration::from_secs(600))
        .unwrap()
        .with_max_lifetime(Duration::from_secs(900))
        .unwrap();
    let s = h.store(capped).await;
    let id = SessionId::generate();
    let key = s.key(&id);
    plant_legacy(&h.raw, &key, legacy(b"1"), 300_000).await;
    assert!(
        !s.touch(&id).await.unwrap(),
        "created in 2023: past its cap"
    );
    assert_eq!(key_type(&h, &key).await, "none");
}

/// Concurrent compare-and-sets on one legacy hash record: exactly one
/// wins (and migrates it), every other sees the winner's version, and
/// the record ends as a string at version 2 with the winner's metadata.
async fn legacy_hash_record_concurrent_cas_has_one_winner<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let key = s.key(&id);
    let json = md("a", "0").json().to_owned();
    plant_legacy(
        &h.raw,
        &key,
        [
            Some(b"1"),
            Some(json.as_bytes()),
            Some(b"1700000000000"),
            Some(b"600000"),
        ],
        600_000,
    )
    .await;
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move {
                let mine = md("a", &i.to_string());
                (s.update(&id, Version::INITIAL, &mine).await.unwrap(), mine)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            (Update::Applied(v), mine) => {
                assert_eq!(v, Version::new(2));
                winners.push(mine);
            }
            (Update::Conflict { current }, _) => assert_eq!(current, Version::new(2)),
            (other, _) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one compare-and-set wins");
    assert_eq!(key_type(&h, &key).await, "string");
    let rec = s.load(&id).await.unwrap().unwrap();
    assert_eq!((rec.version, &rec.metadata), (Version::new(2), &winners[0]));
}

/// A hash holding none of the store's fields is corrupt for every
/// operation, `version` included (as `create` already treats the key as
/// taken).
async fn corrupt_foreign_hash<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    let key = s.key(&id);
    let _: i64 = h
        .raw
        .q(redis::cmd("HSET").arg(&key).arg("other").arg("x"))
        .await
        .unwrap();
    for r in [
        s.load(&id).await.map(|_| ()),
        s.version(&id).await.map(|_| ()),
        s.touch(&id).await.map(|_| ()),
    ] {
        assert!(
            matches!(
                r,
                Err(Error::Corrupt {
                    source: CorruptRecord::MissingField("v"),
                    ..
                })
            ),
            "{r:?}"
        );
    }
    assert_eq!(
        s.create(&id, &md("x", "y"), Ttl::Default).await.unwrap(),
        None
    );
    assert!(s.delete(&id).await.unwrap());
}

/// Two (sibling) prefixes on one server never see each other's sessions.
async fn prefix_isolation<B: Backend>(h: Arc<RedisHarness<B>>) {
    let pa = format!("{}a:", h.prefix);
    let pb = format!("{}b:", h.prefix);
    let a = h.store_with_prefix(&pa, long()).await;
    let b = h.store_with_prefix(&pb, long()).await;
    let id = SessionId::generate();
    a.create(&id, &md("who", "a"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    assert!(b.load(&id).await.unwrap().is_none());
    assert!(b.version(&id).await.unwrap().is_none());
    assert!(!b.touch(&id).await.unwrap());
    assert_eq!(
        b.update(&id, Version::INITIAL, &md("who", "b"))
            .await
            .unwrap(),
        Update::Missing
    );
    assert!(!b.delete(&id).await.unwrap());
    // The same id can live independently under both prefixes.
    b.create(&id, &md("who", "b"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.load(&id).await.unwrap().unwrap().metadata, md("who", "a"));
    assert_eq!(b.load(&id).await.unwrap().unwrap().metadata, md("who", "b"));
    assert!(b.delete(&id).await.unwrap());
    assert_eq!(a.version(&id).await.unwrap(), Some(Version::INITIAL));
    h.clean(&pa).await;
    h.clean(&pb).await;
}

/// Scan under one prefix returns exactly its own sessions.
async fn prefix_isolation_scan<B: Backend>(h: Arc<RedisHarness<B>>) {
    let pa = format!("{}a:", h.prefix);
    let pb = format!("{}b:", h.prefix);
    let a = h.store_with_prefix(&pa, long()).await;
    let b = h.store_with_prefix(&pb, long()).await;
    let mut ids_a = Vec::new();
    let mut ids_b = Vec::new();
    for _ in 0..20 {
        let id = SessionId::generate();
        a.create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        ids_a.push(id);
        let id = SessionId::generate();
        b.create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        ids_b.push(id);
    }
    let mut seen_a = scan_all(&a).await;
    let mut seen_b = scan_all(&b).await;
    for v in [&mut seen_a, &mut seen_b, &mut ids_a, &mut ids_b] {
        v.sort();
        v.dedup();
    }
    assert_eq!(seen_a, ids_a);
    assert_eq!(seen_b, ids_b);
    h.clean(&pa).await;
    h.clean(&pb).await;
}

async fn next_written(stream: &mut ChangeStream, within: Duration) -> Option<Change> {
    tokio::time::timeout(within, async {
        loop {
            match stream.recv().await {
                Some(Change::Resync) => {}
                other => return other,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A change stream reports only its own prefix's writes.
async fn prefix_isolation_change_stream<B: Backend>(h: Arc<RedisHarness<B>>) {
    let pa = format!("{}a:", h.prefix);
    let pb = format!("{}b:", h.prefix);
    let a = h.store_with_prefix(&pa, long()).await;
    let b = h.store_with_prefix(&pb, long()).await;
    let mut stream_a = a.changes().unwrap();
    let mut stream_b = b.changes().unwrap();
    // Wait until both subscriptions are live (each emits a resync then).
    for s in [&mut stream_a, &mut stream_b] {
        let first = tokio::time::timeout(Duration::from_secs(10), s.recv())
            .await
            .unwrap();
        assert_eq!(first, Some(Change::Resync));
    }
    let id_a = SessionId::generate();
    a.create(&id_a, &Metadata::new(), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let _ = a
        .update(&id_a, Version::INITIAL, &md("k", "v"))
        .await
        .unwrap();
    a.delete(&id_a).await.unwrap();
    let id_b = SessionId::generate();
    b.create(&id_b, &Metadata::new(), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    // b's stream: the first event is b's own create, none of a's.
    assert_eq!(
        next_written(&mut stream_b, Duration::from_secs(10)).await,
        Some(Change::Written {
            id: id_b.clone(),
            version: Version::INITIAL
        })
    );
    // a's stream: a's three events in order, then nothing of b's.
    assert_eq!(
        next_written(&mut stream_a, Duration::from_secs(10)).await,
        Some(Change::Written {
            id: id_a.clone(),
            version: Version::INITIAL
        })
    );
    assert_eq!(
        next_written(&mut stream_a, Duration::from_secs(10)).await,
        Some(Change::Written {
            id: id_a.clone(),
            version: Version::new(2)
        })
    );
    assert_eq!(
        next_written(&mut stream_a, Duration::from_secs(10)).await,
        Some(Change::Deleted { id: id_a })
    );
    assert_eq!(
        next_written(&mut stream_a, Duration::from_millis(300)).await,
        None,
        "a saw b's write"
    );
    h.clean(&pa).await;
    h.clean(&pb).await;
}

/// Every method, scan and the change stream at once, with the same id in
/// both prefixes (`session_core::testing::isolation`).
async fn prefix_isolation_every_method<B: Backend>(h: Arc<RedisHarness<B>>) {
    let pa = format!("{}a:", h.prefix);
    let pb = format!("{}b:", h.prefix);
    let a = h.store_with_prefix(&pa, long()).await;
    let b = h.store_with_prefix(&pb, long()).await;
    session_core::testing::isolation::assert_isolated(&a, &b).await;
    h.clean(&pa).await;
    h.clean(&pb).await;
}

/// The header of the record string at `key`, split at its spaces:
/// `["s3", deadline, version, created, ttl]`.
async fn header<B: Backend>(h: &RedisHarness<B>, key: &str) -> Vec<String> {
    let value: Vec<u8> = h.raw.q(redis::cmd("GET").arg(key)).await.unwrap();
    let text = String::from_utf8(value).unwrap();
    let (header, _) = text.split_once('\n').expect("a header line");
    header.split(' ').map(str::to_owned).collect()
}

/// Expiry is set on the server from the record's own ttl and creation time.
async fn expiry_fields_on_the_server<B: Backend>(h: Arc<RedisHarness<B>>) {
    let cfg = StoreConfig::new(Duration::from_secs(60))
        .unwrap()
        .with_max_lifetime(Duration::from_secs(90))
        .unwrap();
    let s = h.store(cfg).await;
    let id = SessionId::generate();
    s.create(&id, &md("a", "b"), Ttl::Custom(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    let key = s.key(&id);
    let pttl: i64 = h.raw.q(redis::cmd("PTTL").arg(&key)).await.unwrap();
    assert!((1..=5000).contains(&pttl), "custom ttl: {pttl}");
    assert_eq!(header(&h, &key).await[4], "5000");
    // The header's deadline is the key's own expiry.
    assert_eq!(
        header(&h, &key).await[1].parse::<i64>().unwrap(),
        pexpiretime(&h, &key).await
    );
    let _ = s
        .update(&id, Version::INITIAL, &md("a", "c"))
        .await
        .unwrap();
    let pttl: i64 = h.raw.q(redis::cmd("PTTL").arg(&key)).await.unwrap();
    assert!(
        (50_000..=60_000).contains(&pttl),
        "store ttl after update: {pttl}"
    );
    let fields = header(&h, &key).await;
    assert_eq!((fields[0].as_str(), fields[2].as_str()), ("s3", "2"));
    assert_eq!(fields[4], "60000");
    assert_eq!(fields[1].len(), 13);
    assert_eq!(
        fields[1].parse::<i64>().unwrap(),
        pexpiretime(&h, &key).await
    );
    // version does not slide.
    let _: i64 = h
        .raw
        .q(redis::cmd("PEXPIRE").arg(&key).arg(30_000))
        .await
        .unwrap();
    s.version(&id).await.unwrap().unwrap();
    let pttl: i64 = h.raw.q(redis::cmd("PTTL").arg(&key)).await.unwrap();
    assert!(pttl <= 30_000, "version slid: {pttl}");
    // load slides, capped at created + max_lifetime (90 s).
    let c = header(&h, &key).await[3].clone();
    s.load(&id).await.unwrap().unwrap();
    let at: i64 = h
        .raw
        .q(redis::cmd("PEXPIRETIME").arg(&key))
        .await
        .unwrap_or(-3);
    if at != -3 {
        assert!(
            at <= c.parse::<i64>().unwrap() + 90_000,
            "slide passed max_lifetime"
        );
    }
}

/// A header deadline `e` written from the client's lower bound of the
/// server's clock (no `max_lifetime`, an s3 record): never after the key's
/// real expiry `at`, and close to it.
fn assert_deadline_from_estimate(e: i64, at: i64) {
    assert!(e <= at, "header deadline {e} after the key's expiry {at}");
    assert!(at - e <= 50, "header deadline {e} too far before {at}");
}

/// The header deadline `e` and the key's `PEXPIRETIME`.
async fn deadlines<B: Backend>(h: &RedisHarness<B>, key: &str) -> (i64, i64) {
    let e = header(h, key).await[1].parse::<i64>().unwrap();
    (e, pexpiretime(h, key).await)
}

/// Without max_lifetime, `update` and `touch` send their script the
/// client's lower bound of the server's clock and the script writes `e`
/// from it without `TIME`: `e` is never later than the key's real expiry
/// (`PEXPIRETIME`) and close to it. With max_lifetime the script reads
/// `TIME` and `e` is the key's expiry exactly.
async fn header_deadline_never_passes_the_key_expiry<B: Backend>(h: Arc<RedisHarness<B>>) {
    const TOLERANCE_MS: i64 = 50;
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md("a", "0"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let key = s.key(&id);
    let mut version = Version::INITIAL;
    for i in 0..40 {
        version = match s.update(&id, version, &md("a", &i.to_string())).await {
            Ok(Update::Applied(v)) => v,
            other => panic!("update {i}: {other:?}"),
        };
        let (e, at) = deadlines(&h, &key).await;
        assert!(
            e <= at,
            "update {i}: header deadline {e} after the key's expiry {at}"
        );
        assert!(
            at - e <= TOLERANCE_MS,
            "update {i}: {e} too far before {at}"
        );
        // Moved off the key's expiry so the touch visibly rewrites both.
        pexpire(&h, &key, 300_000).await;
        assert!(s.touch(&id).await.unwrap());
        let (e2, at2) = deadlines(&h, &key).await;
        assert!(
            e2 <= at2,
            "touch {i}: header deadline {e2} after the key's expiry {at2}"
        );
        assert!(
            at2 - e2 <= TOLERANCE_MS,
            "touch {i}: {e2} too far before {at2}"
        );
        assert!(
            at2 >= at,
            "touch {i} slid by the record's ttl: {at2} < {at}"
        );
    }

    // With max_lifetime: exact, for update and touch alike.
    let capped = StoreConfig::new(Duration::from_secs(600))
        .unwrap()
        .with_max_lifetime(Duration::from_secs(3600))
        .unwrap();
    let s = h.store(capped).await;
    let id = SessionId::generate();
    s.create(&id, &md("a", "0"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let key = s.key(&id);
    let mut version = Version::INITIAL;
    for i in 0..10 {
        version = match s.update(&id, version, &md("a", &i.to_string())).await {
            Ok(Update::Applied(v)) => v,
            other => panic!("capped update {i}: {other:?}"),
        };
        let (e, at) = deadlines(&h, &key).await;
        assert_eq!(e, at, "capped update {i}");
        pexpire(&h, &key, 300_000).await;
        assert!(s.touch(&id).await.unwrap());
        let (e, at) = deadlines(&h, &key).await;
        assert_eq!(e, at, "capped touch {i}");
    }
}

/// A store on the harness prefix with slide throttle `fraction`.
async fn store_with_fraction<B: Backend>(
    h: &RedisHarness<B>,
    config: StoreConfig,
    fraction: f64,
) -> RedisStore {
    let cfg = B::config()
        .prefix(&h.prefix)
        .store(config)
        .slide_fraction(fraction);
    RedisStore::connect(cfg).await.unwrap()
}

async fn pttl<B: Backend>(h: &RedisHarness<B>, key: &str) -> i64 {
    h.raw.q(redis::cmd("PTTL").arg(key)).await.unwrap()
}

async fn pexpire<B: Backend>(h: &RedisHarness<B>, key: &str, ms: i64) {
    let set: i64 = h
        .raw
        .q(redis::cmd("PEXPIRE").arg(key).arg(ms))
        .await
        .unwrap();
    assert_eq!(set, 1);
}

/// The key's absolute expiry, ms on the server's clock (`PEXPIRETIME`,
/// Redis 7).
async fn pexpiretime<B: Backend>(h: &RedisHarness<B>, key: &str) -> i64 {
    h.raw.q(redis::cmd("PEXPIRETIME").arg(key)).await.unwrap()
}

/// The server's clock, ms.
async fn server_ms<B: Backend>(h: &RedisHarness<B>) -> i64 {
    let (s, us): (i64, i64) = h.raw.q(&redis::cmd("TIME")).await.unwrap();
    s * 1000 + us / 1000
}

/// Sets an s3 record's header deadline to `header_at` (in place, as the
/// touch script does) and the key's own expiry to `key_at` (ms on the
/// server's clock): the two agree unless a test splits them.
async fn set_deadline<B: Backend>(h: &RedisHarness<B>, key: &str, header_at: i64, key_at: i64) {
    let _: i64 = h
        .raw
        .q(redis::cmd("SETRANGE")
            .arg(key)
            .arg(3)
            .arg(format!("{header_at:013}")))
        .await
        .unwrap();
    let set: i64 = h
        .raw
        .q(redis::cmd("PEXPIREAT").arg(key).arg(key_at))
        .await
        .unwrap();
    assert_eq!(set, 1);
    assert_eq!(header(h, key).await[1].parse::<i64>().unwrap(), header_at);
}

/// `load` slides only once more than `slide_fraction` of the record's TTL
/// has passed since the last slide, judged by the deadline in the record's
/// header (not the key's PTTL, which `load` no longer reads); within the
/// window it writes nothing.
async fn load_slide_is_throttled<B: Backend>(h: Arc<RedisHarness<B>>) {
    // TTL 600 s, default fraction 0.1: the window is 60 s.
    let s = h.store(long()).await;
    assert!((s.slide_fraction() - RedisConfig::DEFAULT_SLIDE_FRACTION).abs() < f64::EPSILON);
    let id = SessionId::generate();
    s.create(&id, &md("a", "1"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let key = s.key(&id);
    // 40 s "elapsed": inside the window, so loads do not slide.
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now + 560_000, now + 560_000).await;
    for _ in 0..5 {
        assert_eq!(s.load(&id).await.unwrap().unwrap().metadata, md("a", "1"));
        assert_eq!(
            pexpiretime(&h, &key).await,
            now + 560_000,
            "load inside the window slid"
        );
    }
    // 70 s "elapsed": past the window, the next load slides to the full TTL.
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now + 530_000, now + 530_000).await;
    s.load(&id).await.unwrap().unwrap();
    let slid = pttl(&h, &key).await;
    assert!(slid > 590_000, "load past the window did not slide: {slid}");
    let at = pexpiretime(&h, &key).await;
    assert_deadline_from_estimate(header(&h, &key).await[1].parse::<i64>().unwrap(), at);
    // ... and the loads right after it do not slide again.
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now + 580_000, now + 580_000).await;
    s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        pexpiretime(&h, &key).await,
        now + 580_000,
        "slid again inside the window"
    );

    // The header decides, not the key's expiry: a near header deadline on
    // a key that still has most of its TTL slides ...
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now + 500_000, now + 599_000).await;
    s.load(&id).await.unwrap().unwrap();
    let at = pexpiretime(&h, &key).await;
    assert!(
        at > now + 599_000,
        "a near header deadline did not slide: {}",
        at - now
    );
    assert_deadline_from_estimate(header(&h, &key).await[1].parse::<i64>().unwrap(), at);
    // ... and a far one on a key about to expire does not.
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now + 595_000, now + 100_000).await;
    s.load(&id).await.unwrap().unwrap();
    assert_eq!(
        pexpiretime(&h, &key).await,
        now + 100_000,
        "a far header deadline slid"
    );

    // A placeholder's shorter `t` decides its own window: TTL 10 s, window 1 s.
    let p = SessionId::generate();
    s.create(&p, &Metadata::new(), Ttl::Custom(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let pkey = s.key(&p);
    let now = server_ms(&h).await;
    set_deadline(&h, &pkey, now + 9_500, now + 9_500).await;
    s.load(&p).await.unwrap().unwrap();
    assert_eq!(
        pexpiretime(&h, &pkey).await,
        now + 9_500,
        "placeholder slid inside its window"
    );
    let now = server_ms(&h).await;
    set_deadline(&h, &pkey, now + 8_500, now + 8_500).await;
    s.load(&p).await.unwrap().unwrap();
    let slid = pttl(&h, &pkey).await;
    assert!(
        (9_000..=10_000).contains(&slid),
        "placeholder slid by its own ttl: {slid}"
    );
}

/// In real time: TTL 2 s, fraction 0.1 (a 200 ms window): a load 500 ms
/// after the create slides. With fraction 0.0 every load slides.
async fn load_slides_after_the_window_in_real_time<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = store_with_fraction(&h, StoreConfig::new(Duration::from_secs(2)).unwrap(), 0.1).await;
    let id = SessionId::generate();
    s.create(&id, &md("a", "1"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let key = s.key(&id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pttl(&h, &key).await;
    assert!(before <= 1_500, "{before}");
    s.load(&id).await.unwrap().unwrap();
    let after = pttl(&h, &key).await;
    assert!(
        after > before,
        "load past the window did not slide: {before} -> {after}"
    );
    // Fraction 0.0: every load slides.
    let every = store_with_fraction(&h, long(), 0.0).await;
    pexpire(&h, &key, 599_000).await;
    every.load(&id).await.unwrap().unwrap();
    let now = pttl(&h, &key).await;
    assert!(
        (1_000..=2_000).contains(&now),
        "fraction 0.0 slides by the record's ttl: {now}"
    );
}

/// A key of ours without an expiry (`PERSIST` by hand) was not written by
/// this store. `load` no longer reads the key's expiry: while the header's
/// deadline lies ahead it returns the record, and its next slide repairs
/// the key (the touch script sets the expiry again); once the deadline has
/// passed (only a key without its expiry can still be read then), `load`
/// and `touch` run the touch script, which finds no expiry and refuses it
/// as corrupt, writing nothing.
async fn load_of_a_key_without_expiry_is_corrupt<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let id = SessionId::generate();
    s.create(&id, &md("a", "1"), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let key = s.key(&id);

    // Deadline ahead, inside the window: read as it is.
    let _: i64 = h.raw.q(redis::cmd("PERSIST").arg(&key)).await.unwrap();
    assert_eq!(s.load(&id).await.unwrap().unwrap().metadata, md("a", "1"));
    assert_eq!(pttl(&h, &key).await, -1);
    // Deadline ahead, past the window: the slide repairs the expiry.
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now + 100_000, now + 100_000).await;
    let _: i64 = h.raw.q(redis::cmd("PERSIST").arg(&key)).await.unwrap();
    assert_eq!(s.load(&id).await.unwrap().unwrap().metadata, md("a", "1"));
    let at = pexpiretime(&h, &key).await;
    assert!(
        at > now + 590_000,
        "the slide did not repair the expiry: {at}"
    );
    assert_deadline_from_estimate(header(&h, &key).await[1].parse::<i64>().unwrap(), at);

    // Deadline passed: corrupt for load and touch, nothing written.
    let now = server_ms(&h).await;
    set_deadline(&h, &key, now - 1_000, now + 100_000).await;
    let _: i64 = h.raw.q(redis::cmd("PERSIST").arg(&key)).await.unwrap();
    let before = raw_dump(&h.raw, &key).await;
    for (what, r) in [
        ("load", s.load(&id).await.map(|r| format!("{r:?}"))),
        ("touch", s.touch(&id).await.map(|r| format!("{r:?}"))),
    ] {
        match r {
            Err(Error::Corrupt { key: k, source }) => {
                assert_eq!(k, key);
                assert!(
                    matches!(&source, CorruptRecord::WrongType(w) if w == "record without an expiry"),
                    "{what}: {source:?}"
                );
            }
            other => panic!("{what}: expected corrupt, got {other:?}"),
        }
    }
    assert_eq!(raw_dump(&h.raw, &key).await, before);
    assert_eq!(pttl(&h, &key).await, -1, "load wrote an expiry");
    // peek and version do not look at the expiry.
    assert!(s.peek(&id).await.unwrap().is_some());
    assert_eq!(s.version(&id).await.unwrap(), Some(Version::INITIAL));

    // An s2 record without an expiry: the migrating slide checks it too.
    let id = SessionId::generate();
    let key = s.key(&id);
    let json = md("a", "1").json().to_owned();
    let _: () = h
        .raw
        .q(redis::cmd("SET").arg(&key).arg(record_bytes(
            b"3",
            b"1764300000000",
            b"600000",
            json.as_bytes(),
            Layout::S2,
        )))
        .await
        .unwrap();
    let before = raw_dump(&h.raw, &key).await;
    assert!(matches!(
        s.load(&id).await,
        Err(Error::Corrupt {
            source: CorruptRecord::WrongType(_),
            ..
        })
    ));
    assert_eq!(raw_dump(&h.raw, &key).await, before);
    assert!(s.delete(&id).await.unwrap());
}

/// Records an earlier release wrote in the string layouts `s2` and `s1`
/// (planted here by hand) are read by every operation; every `load` of one
/// runs the touch script, which slides it and rewrites it as `s3` with the
/// same version, creation time, ttl, write list and metadata. `version`,
/// `update` and `delete` work on them too.
async fn earlier_string_layouts_migrate_on_load<B: Backend>(h: Arc<RedisHarness<B>>) {
    let s = h.store(long()).await;
    let json = md("a", "1").json().to_owned();
    let write = session_core::WriteId::generate();
    let entry = write.log_entry(Version::new(4));
    let plant_layout = |layout: Layout, key: String| {
        let h = h.clone();
        let json = json.clone();
        let entry = entry.clone();
        async move {
            let mut value =
                record_bytes(b"4", b"1764300000000", b"600000", json.as_bytes(), layout);
            if layout == Layout::S2 {
                // A write list line: `s2 ...\n<entry>\n<json>`.
                let at = value.iter().position(|&b| b == b'\n').unwrap() + 1;
                value.splice(at..at, entry.bytes());
            }
            let _: () = h
                .raw
                .q(redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(300_000))
                .await
                .unwrap();
        }
    };
    for layout in [Layout::S2, Layout::S1] {
        // load: slid and rewritten as s3.
        let id = SessionId::generate();
        let key = s.key(&id);
        plant_layout(layout, key.clone()).await;
        assert_eq!(s.version(&id).await.unwrap(), Some(Version::new(4)));
        assert_eq!(s.peek(&id).await.unwrap().unwrap().metadata, md("a", "1"));
        assert_eq!(
            header(&h, &key).await[0],
            if layout == Layout::S2 { "s2" } else { "s1" }
        );
        let rec = s.load(&id).await.unwrap().unwrap();
        assert_eq!((rec.version, rec.metadata), (Version::new(4), md("a", "1")));
        let fields = header(&h, &key).await;
        assert_eq!(
            fields[..1].iter().chain(&fields[2..]).collect::<Vec<_>>(),
            ["s3", "4", "1764300000000", "600000"],
            "{layout:?}"
        );
        let at = pexpiretime(&h, &key).await;
        assert_eq!(fields[1].parse::<i64>().unwrap(), at);
        assert!(
            pttl(&h, &key).await > 590_000,
            "{layout:?}: load did not slide"
        );
        let value: Vec<u8> = h.raw.q(redis::cmd("GET").arg(&key)).await.unwrap();
        let writes = if layout == Layout::S2 {
            entry.as_str()
        } else {
            ""
        };
        assert_eq!(
            value,
            format!("s3 {at:013} 4 1764300000000 600000\n{writes}\n{json}").into_bytes(),
            "{layout:?}: the write list and metadata are kept"
        );
        // The kept write list still answers a retry of that write.
        if layout == Layout::S2 {
            assert_eq!(
                s.update_once(&id, Version::new(3), &md("a", "x"), &write)
                    .await
                    .unwrap(),
                Update::Applied(Version::new(4))
            );
        }
        assert!(s.delete(&id).await.unwrap());

        // version, update, delete on a record still in the old layout.
        let id = SessionId::generate();
        let key = s.key(&id);
        plant_layout(layout, key.clone()).await;
        assert_eq!(
            s.update(&id, Version::new(3), &md("a", "2")).await.unwrap(),
            Update::Conflict {
                current: Version::new(4)
            }
        );
        assert_eq!(
            s.update(&id, Version::new(4), &md("a", "2")).await.unwrap(),
            Update::Applied(Version::new(5))
        );
        assert_eq!(header(&h, &key).await[0], "s3");
        assert_eq!(s.version(&id).await.unwrap(), Some(Version::new(5)));
        let id = SessionId::generate();
        plant_layout(layout, s.key(&id)).await;
        assert!(s.delete(&id).await.unwrap());
        assert_eq!(s.version(&id).await.unwrap(), None);
        // touch migrates too.
        let id = SessionId::generate();
        let key = s.key(&id);
        plant_layout(layout, key.clone()).await;
        assert!(s.touch(&id).await.unwrap());
        assert_eq!(header(&h, &key).await[0], "s3");
        assert!(pttl(&h, &key).await > 590_000);
    }
}

/// What `connect` does with `cfg` (pointed at a listener that accepts
/// and never answers): the setting it rejects with the typed config error,
/// or `None` if it got past validation; and whether it dialled.
fn connect_outcome(cfg: impl FnOnce(RedisConfig) -> RedisConfig) -> (Option<&'static str>, bool) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let cfg = cfg(RedisConfig::new(url)
        .connect_timeout(Duration::from_millis(200))
        .reconnect_retries(0)
        .reconnect_max_delay(Duration::from_millis(50)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rejected = match rt.block_on(RedisStore::connect(cfg)) {
        Err(Error::InvalidInput(InvalidInput::Config(ConfigError::Invalid {
            setting, ..
        }))) => Some(setting),
        Err(Error::Timeout(_) | Error::Unavailable(_)) => None,
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("connected to a silent listener"),
    };
    // A dial, even one given up on, leaves a connection in the backlog.
    let dialled = match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    };
    (rejected, dialled)
}

#[test]
fn connect_rejects_a_slide_fraction_outside_0_and_1_before_dialling() {
    for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
        assert_eq!(
            connect_outcome(|c| c.slide_fraction(bad)),
            (Some("slide_fraction"), false),
            "{bad}"
        );
    }
    for good in [0.0, 0.1, 1.0] {
        assert_eq!(
            connect_outcome(|c| c.slide_fraction(good)),
            (None, true),
            "{good}"
        );
    }
}

#[test]
fn connect_rejects_a_prefix_without_colon_or_with_glob_before_dialling() {
    for bad in [
        "", "vmcp", "vmcp:*:", "vmcp?:", "a[1]:", "a\\b:", "a b:", "{vmcp}:", "vmcp:{x:",
    ] {
        assert_eq!(
            connect_outcome(|c| c.prefix(bad)),
            (Some("key prefix"), false),
            "{bad:?}"
        );
    }
    assert_eq!(
        connect_outcome(|c| c.prefix("tenant-1:vmcp:")),
        (None, true)
    );
}

/// The change stream ends once the last store handle is gone (the
/// subscriber task stops with it).
async fn change_stream_ends_with_the_store<B: Backend>(h: Arc<RedisHarness<B>>) {
    let store = h.store(long()).await;
    let clone = store.clone();
    let mut stream = store.changes().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .unwrap();
    assert_eq!(first, Some(Change::Resync));
    drop(store);
    // A clone keeps it alive.
    let id = SessionId::generate();
    clone
        .create(&id, &Metadata::new(), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next_written(&mut stream, Duration::from_secs(10)).await,
        Some(Change::Written {
            id,
            version: Version::INITIAL
        })
    );
    drop(clone);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if stream.recv().await.is_none() {
                return;
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "change stream still open after the store was dropped"
    );
}

macro_rules! cases {
    ($backend:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                session_core::testing::run::<RedisHarness<$backend>, _, _>(super::$case::<$backend>);
            }
        )*
    };
}

macro_rules! all_cases {
    ($backend:ty) => {
        cases!($backend;
            noscript_reload,
            corrupt_wrong_type,
            corrupt_missing_version,
            corrupt_non_numeric_version,
            corrupt_metadata_not_json,
            corrupt_metadata_not_string_map,
            corrupt_metadata_oversized,
            corrupt_foreign_hash,
            corrupt_foreign_string,
            corrupt_s3_deadline,
            legacy_hash_records_are_read_and_migrated_on_touch,
            legacy_hash_record_concurrent_cas_has_one_winner,
            corrupt_signed_version,
            corrupt_version_past_max,
            corrupt_non_utf8_version,
            corrupt_no_version_no_created,
            corrupt_metadata_not_utf8,
            non_utf8_version_does_not_poison_the_connection,
            prefix_isolation,
            prefix_isolation_scan,
            prefix_isolation_change_stream,
            prefix_isolation_every_method,
            expiry_fields_on_the_server,
            header_deadline_never_passes_the_key_expiry,
            change_stream_ends_with_the_store,
            load_slide_is_throttled,
            load_slides_after_the_window_in_real_time,
            load_of_a_key_without_expiry_is_corrupt,
            earlier_string_layouts_migrate_on_load,
        );
    };
}

mod standalone {
    use super::*;
    all_cases!(common::Standalone);
}

#[cfg(feature = "cluster")]
mod cluster {
    use super::*;
    all_cases!(common::Cluster);
}
