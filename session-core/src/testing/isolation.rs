//! Two namespaces of one store (two Redis key prefixes, two Postgres
//! schemas, two tables) must be fully isolated: what one writes, deletes,
//! scans or streams never shows in the other. [`assert_isolated`] checks
//! every method and the change stream; the store crates run it on their
//! namespaces.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{Change, ChangeStream, Metadata, SessionId, SessionStore, Ttl, Update, Version};

/// How long a barrier write may take to show on its own stream.
const BARRIER_WITHIN: Duration = Duration::from_secs(20);

fn md(who: &str) -> Metadata {
    Metadata::new().with("namespace", who).expect("small map")
}

/// Writes `sentinel` in `store` (created on the first call, else updated)
/// until its own stream reports the write, and returns every other change
/// seen before it. Once this returns, the stream is live. (It does not
/// prove that every earlier change has arrived: Redis Cluster delivers
/// publishes made on different nodes in no set order; see [`observe`].)
async fn barrier(
    store: &dyn SessionStore,
    stream: &mut ChangeStream,
    sentinel: &SessionId,
) -> Vec<Change> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + BARRIER_WITHIN;
    loop {
        let version = match store.version(sentinel).await.expect("version") {
            None => store
                .create(sentinel, &Metadata::new(), Ttl::Default)
                .await
                .expect("create")
                .expect("a fresh sentinel id"),
            Some(v) => match store
                .update(sentinel, v, &Metadata::new())
                .await
                .expect("update")
            {
                Update::Applied(next) => next,
                other => panic!("sentinel update: {other:?}"),
            },
        };
        let retry_at = tokio::time::Instant::now() + Duration::from_millis(250);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a write never showed on its own change stream"
            );
            match tokio::time::timeout_at(retry_at, stream.recv()).await {
                Err(_) => break, // not subscribed yet: write again
                Ok(None) => panic!("the change stream ended"),
                Ok(Some(Change::Written { id, version: v })) if id == *sentinel && v == version => {
                    return seen;
                }
                Ok(Some(Change::Resync | Change::Down)) => {}
                // An earlier barrier write, reported late.
                Ok(Some(Change::Written { id, .. } | Change::Deleted { id }))
                    if id == *sentinel => {}
                Ok(Some(change)) => seen.push(change),
            }
        }
    }
}

/// Every change `stream` reports until all of `expected` have arrived,
/// then for a quiet period more, so that anything another namespace's
/// writes leaked into it has had time to arrive too.
async fn observe(
    store: &dyn SessionStore,
    stream: &mut ChangeStream,
    sentinel: &SessionId,
    expected: &[Change],
) -> Vec<Change> {
    let deadline = tokio::time::Instant::now() + BARRIER_WITHIN;
    let mut seen = Vec::new();
    while !expected.iter().all(|e| seen.contains(e)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "changes never arrived: expected {expected:?}, seen {seen:?}"
        );
        seen.extend(barrier(store, stream, sentinel).await);
    }
    let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(change)) = tokio::time::timeout_at(quiet, stream.recv()).await {
        match change {
            Change::Resync | Change::Down => {}
            Change::Written { ref id, .. } | Change::Deleted { ref id } if id == sentinel => {}
            change => seen.push(change),
        }
    }
    seen
}

async fn scan_all(store: &dyn SessionStore) -> BTreeSet<SessionId> {
    let mut ids = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = store.scan(cursor.as_ref(), 7).await.expect("scan");
        ids.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// A session of the other namespace is invisible and untouchable here.
async fn absent(store: &dyn SessionStore, id: &SessionId, name: &str) {
    assert!(store.load(id).await.unwrap().is_none(), "{name} loads it");
    assert!(store.peek(id).await.unwrap().is_none(), "{name} peeks it");
    assert_eq!(
        store.version(id).await.unwrap(),
        None,
        "{name} has its version"
    );
    assert!(!store.touch(id).await.unwrap(), "{name} touches it");
    assert_eq!(
        store.update(id, Version::INITIAL, &md(name)).await.unwrap(),
        Update::Missing,
        "{name} updates it"
    );
    assert!(!store.delete(id).await.unwrap(), "{name} deletes it");
}

/// Checks that `a` and `b`, two namespaces of one store on the same server
/// (both empty when called), are fully isolated:
///
/// - a session created in one is invisible to every method of the other
///   (`load`, `peek`, `version`, `touch`, `update`, `delete`), and those
///   calls change nothing;
/// - the same id lives independently in both: an update in `a` leaves
///   `b`'s record as it was, a delete in `b` leaves `a`'s;
/// - `scan` of each returns exactly its own sessions;
/// - each change stream (when the store has one) reports only its own
///   namespace's writes and deletes: not the other's ids, not `b`'s delete
///   of the shared id, not `a`'s second version of it.
///
/// Removes what it created. Panics, naming the leak, otherwise.
pub async fn assert_isolated(a: &dyn SessionStore, b: &dyn SessionStore) {
    let mut streams = match (a.changes(), b.changes()) {
        (Some(sa), Some(sb)) => Some((sa, sb)),
        (None, None) => None,
        _ => panic!("one namespace has a change stream and the other not"),
    };
    let (sentinel_a, sentinel_b) = (SessionId::generate(), SessionId::generate());
    if let Some((sa, sb)) = &mut streams {
        barrier(a, sa, &sentinel_a).await;
        barrier(b, sb, &sentinel_b).await;
    }

    let only_a = SessionId::generate();
    let only_b = SessionId::generate();
    let shared = SessionId::generate();
    assert!(
        a.create(&only_a, &md("a"), Ttl::Default)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        b.create(&only_b, &md("b"), Ttl::Default)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        a.create(&shared, &md("a"), Ttl::Default)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        b.create(&shared, &md("b"), Ttl::Default).await.unwrap(),
        Some(Version::INITIAL),
        "b cannot create an id that exists only in a"
    );
    absent(a, &only_b, "a").await;
    absent(b, &only_a, "b").await;
    assert_eq!(b.load(&only_b).await.unwrap().unwrap().metadata, md("b"));
    assert_eq!(a.load(&only_a).await.unwrap().unwrap().metadata, md("a"));

    // The shared id: a's update does not reach b, b's delete does not reach a.
    let updated = a
        .update(&shared, Version::INITIAL, &md("a2"))
        .await
        .unwrap();
    assert_eq!(updated, Update::Applied(Version::new(2)));
    let in_b = b.load(&shared).await.unwrap().expect("b's record");
    assert_eq!((in_b.version, in_b.metadata), (Version::INITIAL, md("b")));
    assert!(b.delete(&shared).await.unwrap());
    let in_a = a
        .load(&shared)
        .await
        .unwrap()
        .expect("a's record survives b's delete");
    assert_eq!((in_a.version, in_a.metadata), (Version::new(2), md("a2")));

    // Scan.
    let mut expect_a: BTreeSet<SessionId> = [only_a.clone(), shared.clone()].into();
    let mut expect_b: BTreeSet<SessionId> = [only_b.clone()].into();
    if streams.is_some() {
        expect_a.insert(sentinel_a.clone());
        expect_b.insert(sentinel_b.clone());
    }
    assert_eq!(scan_all(a).await, expect_a, "a's scan");
    assert_eq!(scan_all(b).await, expect_b, "b's scan");

    // Change streams: everything each published since its first barrier.
    if let Some((sa, sb)) = &mut streams {
        let written = |id: &SessionId, v: u64| Change::Written {
            id: id.clone(),
            version: Version::new(v),
        };
        let want_a = [written(&only_a, 1), written(&shared, 2)];
        let want_b = [written(&only_b, 1), Change::Deleted { id: shared.clone() }];
        let seen_a = observe(a, sa, &sentinel_a, &want_a).await;
        let seen_b = observe(b, sb, &sentinel_b, &want_b).await;
        for change in &seen_a {
            match change {
                Change::Written { id, version } => {
                    assert!(
                        *id == only_a || (*id == shared && version.get() <= 2),
                        "a's stream shows {change:?}"
                    );
                }
                Change::Deleted { .. } => panic!("a's stream shows b's delete: {change:?}"),
                _ => {}
            }
        }
        for change in &seen_b {
            match change {
                Change::Written { id, version } => {
                    assert!(
                        *id == only_b || (*id == shared && *version == Version::INITIAL),
                        "b's stream shows {change:?}"
                    );
                }
                Change::Deleted { id } => assert_eq!(*id, shared, "b's stream shows {change:?}"),
                _ => {}
            }
        }
    }

    for id in [&only_a, &shared, &sentinel_a] {
        a.delete(id).await.unwrap();
    }
    for id in [&only_b, &sentinel_b] {
        b.delete(id).await.unwrap();
    }
}
