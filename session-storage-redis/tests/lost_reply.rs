//! A real lost reply: the test kit's fault proxy passes the script call to
//! the standalone Redis, which runs it, then drops the reply and closes the
//! connection. The retry with the same write id reports the original
//! outcome and the record holds the write once. (Cluster is not proxied:
//! its nodes announce their own addresses, so redirects would bypass the
//! forwarder; the scripts are the same.)

mod common;

use std::time::Duration;

use session_core::{Metadata, SessionId, SessionStore, Ttl, Update, Version, WriteId};
use session_storage_redis::{RedisConfig, RedisStore};
use session_testkit::{FaultProxy, url};

fn md(k: &str, v: &str) -> Metadata {
    Metadata::new().with(k, v).unwrap()
}

/// Retries `op` while it fails transiently (the connection is being
/// re-established), at most 50 times.
async fn retried<T, F: std::future::Future<Output = session_core::Result<T>>>(
    mut op: impl FnMut() -> F,
) -> T {
    for _ in 0..50 {
        match op().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("not transient: {e:?}"),
        }
    }
    panic!("still failing after 50 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_are_retried_to_their_original_outcome() {
    let url = common::standalone_url();
    let proxy = FaultProxy::start(url::upstream_of(&url).unwrap())
        .await
        .unwrap();
    let proxied = url::through(&url, proxy.addr()).unwrap();
    let prefix = format!("vmcp:test:lost:{}:", uuid::Uuid::new_v4().simple());
    let direct = RedisStore::connect(RedisConfig::new(url.clone()).prefix(prefix.clone()))
        .await
        .unwrap();
    let s = RedisStore::connect(
        RedisConfig::new(proxied)
            .prefix(prefix.clone())
            .response_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    // Warm up: the scripts are loaded, so the armed call runs its script
    // (a NOSCRIPT reply lost would prove nothing).
    let warm = SessionId::generate();
    s.create(&warm, &md("k", "v"), Ttl::Default).await.unwrap();
    let _ = s
        .update(&warm, Version::INITIAL, &md("k", "w"))
        .await
        .unwrap();

    // A create whose reply is lost: the retry reports it, not "taken".
    let id = SessionId::generate();
    let c = WriteId::generate();
    proxy.drop_replies_to(1, c.to_string());
    let first = s.create_once(&id, &md("who", "me"), Ttl::Default, &c).await;
    assert!(first.is_err(), "the reply was not lost: {first:?}");
    assert_eq!(proxy.stats().replies_dropped, 1);
    assert_eq!(
        direct.version(&id).await.unwrap(),
        Some(Version::INITIAL),
        "the server did not run the create"
    );
    let me = md("who", "me");
    let again = retried(|| s.create_once(&id, &me, Ttl::Default, &c)).await;
    assert_eq!(again, Some(Version::INITIAL));

    // An update whose reply is lost, then another writer: the retry
    // reports the update's own version and writes nothing.
    let w = WriteId::generate();
    proxy.drop_replies_to(1, w.to_string());
    let first = s
        .update_once(&id, Version::INITIAL, &md("who", "update"), &w)
        .await;
    assert!(first.is_err(), "the reply was not lost: {first:?}");
    assert_eq!(proxy.stats().replies_dropped, 2);
    assert_eq!(direct.version(&id).await.unwrap(), Some(Version::new(2)));
    assert_eq!(
        direct
            .update(&id, Version::new(2), &md("who", "other"))
            .await
            .unwrap(),
        Update::Applied(Version::new(3))
    );
    let mine = md("who", "update");
    let again = retried(|| s.update_once(&id, Version::INITIAL, &mine, &w)).await;
    assert_eq!(again, Update::Applied(Version::new(2)));
    let rec = direct.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.version, rec.metadata.get("who")),
        (Version::new(3), Some("other")),
        "the retry wrote again"
    );
    // Without the write id, the same retry could only report a conflict.
    assert_eq!(
        s.update(&id, Version::INITIAL, &md("who", "update"))
            .await
            .unwrap(),
        Update::Conflict {
            current: Version::new(3)
        }
    );
    for k in [&id, &warm] {
        direct.delete(k).await.unwrap();
    }
}

/// A write line someone else garbled never makes a write look applied
/// (only entry-aligned, well-formed entries count), an update naming the
/// right version writes a well-formed list over it, and an `s2` record
/// without the end of its write line is corrupt to every reader and to
/// `update`, and left as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_write_lines_are_harmless_or_reported() {
    let url = common::standalone_url();
    let prefix = format!("vmcp:test:wline:{}:", uuid::Uuid::new_v4().simple());
    let s = RedisStore::connect(RedisConfig::new(url.clone()).prefix(prefix.clone()))
        .await
        .unwrap();
    let raw = redis::Client::open(url.as_str()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let w = WriteId::generate();
    // The id, once shifted off the entry grid and once with a bad version.
    let garbled = format!("x{w}:0000000000000002 {w}:00000000000000zz");
    let id = SessionId::generate();
    let key = s.key(&id);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(format!("s2 1 1700000000000 600000\n{garbled}\n{{}}"))
        .arg("PX")
        .arg(600_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        s.update_once(&id, Version::new(7), &md("a", "b"), &w)
            .await
            .unwrap(),
        Update::Conflict {
            current: Version::INITIAL
        }
    );
    assert_eq!(
        s.update_once(&id, Version::INITIAL, &md("a", "b"), &w)
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    assert_eq!(
        s.update_once(&id, Version::INITIAL, &md("a", "b"), &w)
            .await
            .unwrap(),
        Update::Applied(Version::new(2))
    );
    // No end of the write line: corrupt, and left intact.
    let broken = SessionId::generate();
    let bkey = s.key(&broken);
    let value = format!("s2 1 1700000000000 600000\n{}{{}}", "A".repeat(300));
    let _: () = redis::cmd("SET")
        .arg(&bkey)
        .arg(&value)
        .arg("PX")
        .arg(600_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    for r in [
        s.load(&broken).await.map(|_| ()),
        s.update(&broken, Version::INITIAL, &md("a", "b"))
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(
                &r,
                Err(session_core::Error::Corrupt {
                    source: session_core::CorruptRecord::MissingField("w"),
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let after: String = redis::cmd("GET")
        .arg(&bkey)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(after, value, "a failing call changed the record");
    for k in [&id, &broken] {
        s.delete(k).await.unwrap();
    }
}
