//! Outages map to typed errors: a refused connection is `Unavailable`, a
//! server that stops answering is `Timeout`, and the store recovers when it
//! answers again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use session_core::{Error, Metadata, SessionId, SessionStore, StoreConfig, Ttl};
use session_storage_redis::{RedisConfig, RedisStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(url: &str) -> RedisConfig {
    RedisConfig::new(url)
        .prefix(common::unique_prefix(""))
        .store(StoreConfig::new(Duration::from_secs(60)).unwrap())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(300))
        .reconnect_retries(0)
}

/// A TCP proxy to the test server whose server-to-client direction can be
/// paused (replies are held back, as from a stalled server).
async fn pausable_proxy(upstream: String) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let paused = Arc::new(AtomicBool::new(false));
    let p = paused.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let p = p.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let Ok(n) = sr.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    while p.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("redis://{addr}"), paused)
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hp = rest.split('/').next().unwrap();
    if hp.contains(':') {
        hp.to_owned()
    } else {
        format!("{hp}:6379")
    }
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
    let (url, paused) = pausable_proxy(host_port(&common::standalone_url())).await;
    let store = RedisStore::connect(config(&url)).await.unwrap();
    let id = SessionId::generate();
    store
        .create(&id, &Metadata::new(), Ttl::Default)
        .await
        .unwrap()
        .unwrap();
    paused.store(true, Ordering::Relaxed);
    let err = store.version(&id).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    let err = store.load(&id).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    paused.store(false, Ordering::Relaxed);
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
