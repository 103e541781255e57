//! Outages map to typed errors: a refused connection is `Unavailable`, a
//! server that stops answering is `Timeout`, and the store recovers when it
//! answers again.

mod common;

use std::time::Duration;

use session_core::{Error, Metadata, SessionId, SessionStore, StoreConfig, Ttl};
use session_storage_redis::{RedisConfig, RedisStore};
use session_testkit::{FaultProxy, url};
use tokio::net::TcpListener;

fn config(url: &str) -> RedisConfig {
    RedisConfig::new(url)
        .prefix(common::unique_prefix(""))
        .store(StoreConfig::new(Duration::from_secs(60)).unwrap())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(300))
        .reconnect_retries(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = RedisStore::connect(config(&format!("redis://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_a_timeout_at_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let err = RedisStore::connect(config(&format!("redis://{addr}")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_replies_time_out_and_the_store_recovers() {
    let server = common::standalone_url();
    let proxy = FaultProxy::start(url::upstream_of(&server).unwrap())
        .await
        .unwrap();
    let store = RedisStore::connect(config(&url::through(&server, proxy.addr()).unwrap()))
        .await
        .unwrap();
    let id = SessionId::generate();
    store
        .create(&id, &Metadata::new(), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    proxy.pause();
    let err = store.version(&id).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    let err = store.load(&id).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    proxy.resume();
    let mut recovered = false;
    for _ in 0..50 {
        if let Ok(Some(_)) = store.version(&id).await {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "store did not recover after the server answered again"
    );
    assert!(store.delete(&id).await.unwrap());
}
