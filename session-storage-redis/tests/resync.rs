//! The change stream survives the server dropping its subscriber
//! connection (`CLIENT KILL TYPE pubsub`) and signals a resync.
//!
//! Its own test binary: killing every pub/sub client on the server would
//! disturb change-stream tests running in parallel in the same process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, RedisHarness};
use session_core::testing::Harness;
use session_core::{
    Change, ChangeStream, Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version,
};

async fn expect_resync(stream: &mut ChangeStream, what: &str) {
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.recv().await {
                Some(Change::Resync) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(got, Ok(true), "no resync {what}");
}

/// `CLIENT KILL TYPE pubsub` on every node of the backend.
async fn kill_pubsub<B: Backend>() -> i64 {
    let mut killed = 0;
    for url in B::node_urls() {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        killed += n;
    }
    killed
}

async fn resync_after_client_kill<B: Backend>(h: Arc<RedisHarness<B>>) {
    let cfg = StoreConfig::new(Duration::from_secs(600)).unwrap();
    let watcher = h.store(cfg).await;
    let writer = h.store(cfg).await;
    let mut stream = watcher.changes().unwrap();
    expect_resync(&mut stream, "when the subscription first went live").await;

    let killed = kill_pubsub::<B>().await;
    assert!(killed >= 1, "no pub/sub client to kill");
    expect_resync(&mut stream, "after CLIENT KILL TYPE pubsub").await;

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
        kill_pubsub::<B>().await;
        expect_resync(&mut stream, "after a repeated kill").await;
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
