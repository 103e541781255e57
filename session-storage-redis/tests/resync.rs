//! The change stream survives the server dropping its subscriber
//! connection (`CLIENT KILL ADDR` of this store's subscriber only, so
//! change-stream tests running in parallel on the same server are not
//! disturbed) and signals `Down`, then a resync.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, RedisHarness};
use session_core::testing::Harness;
use session_core::{
    Change, ChangeStream, Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version,
};

async fn expect(stream: &mut ChangeStream, want: Change, what: &str) {
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.recv().await {
                Some(c @ (Change::Resync | Change::Down)) => return Some(c),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await;
    assert_eq!(got, Ok(Some(want.clone())), "no {want:?} {what}");
}

async fn expect_resync(stream: &mut ChangeStream, what: &str) {
    expect(stream, Change::Resync, what).await;
}

/// Ends the watcher's subscription: `Down` first, then `Resync`.
async fn kill_and_expect<B: Backend>(
    store: &session_storage_redis::RedisStore,
    stream: &mut ChangeStream,
    what: &str,
) {
    common::kill_subscriber::<B>(store).await;
    expect(stream, Change::Down, what).await;
    expect_resync(stream, what).await;
}

async fn resync_after_client_kill<B: Backend>(h: Arc<RedisHarness<B>>) {
    let cfg = StoreConfig::new(Duration::from_secs(600)).unwrap();
    let watcher = h.store(cfg).await;
    let writer = h.store(cfg).await;
    let mut stream = watcher.changes().unwrap();
    expect_resync(&mut stream, "when the subscription first went live").await;

    kill_and_expect::<B>(&watcher, &mut stream, "after CLIENT KILL ADDR").await;

    // The re-established subscription delivers again.
    let id = SessionId::generate();
    writer
        .create(&id, &Metadata::new(), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    let applied = writer
        .update(
            &id,
            Version::INITIAL,
            &Metadata::new().with("k", "v").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(applied, Update::Applied(Version::new(2)));
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Change::Written { id: got, version }) = stream.recv().await
                && got == id
                && version == Version::new(2)
            {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "writes after the reconnect are not reported");

    // Killing it repeatedly keeps producing resyncs.
    for _ in 0..2 {
        kill_and_expect::<B>(&watcher, &mut stream, "after a repeated kill").await;
    }
}

#[test]
fn standalone_resync_after_client_kill() {
    session_core::testing::run::<RedisHarness<common::Standalone>, _, _>(
        resync_after_client_kill::<common::Standalone>,
    );
}

#[cfg(feature = "cluster")]
#[test]
fn cluster_resync_after_client_kill() {
    session_core::testing::run::<RedisHarness<common::Cluster>, _, _>(
        resync_after_client_kill::<common::Cluster>,
    );
}
