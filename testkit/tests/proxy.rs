//! The proxy's own faults, against small in-process upstreams: each test
//! would fail if its fault were a no-op (bytes would flow, connections would
//! stay open, the listener would accept).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_testkit::FaultProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Catches hangs only.
const HANG: Duration = Duration::from_secs(10);

/// An upstream that echoes every chunk and records what it received.
async fn echo() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                    if conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn round_trip(client: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    client.write_all(msg).await?;
    let mut reply = vec![0u8; msg.len()];
    client.read_exact(&mut reply).await?;
    Ok(reply)
}

/// `true` if nothing (no byte, no close, no error) arrives within `wait`.
async fn silent(client: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(wait, client.read(&mut buf))
        .await
        .is_err()
}

/// Waits until the proxy has accepted `n` connections (a connect returns
/// once the kernel completed the handshake, before the proxy accepted).
async fn accepted(proxy: &FaultProxy, n: u64) {
    let deadline = Instant::now() + HANG;
    while proxy.stats().accepted < n {
        assert!(Instant::now() < deadline, "the proxy does not accept");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A read that ends the connection: an error (reset) or end of stream.
async fn closed(client: &mut TcpStream) -> Option<ErrorKind> {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(HANG, client.read(&mut buf))
        .await
        .expect("the connection was neither closed nor reset")
    {
        Ok(0) => None,
        Ok(n) => panic!("{n} bytes arrived on a connection that should be closed"),
        Err(e) => Some(e.kind()),
    }
}

#[tokio::test]
async fn forwards_both_ways_and_counts() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"hello").await.unwrap(), b"hello");
    assert_eq!(&*seen.lock().unwrap(), b"hello");
    let s = proxy.stats();
    assert_eq!((s.accepted, s.live, s.bytes_up, s.bytes_down), (1, 1, 5, 5));
    assert_eq!(proxy.upstream(), up);
    drop(c);
    let deadline = Instant::now() + HANG;
    while proxy.stats().live != 0 {
        assert!(Instant::now() < deadline, "a closed connection stays live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    round_trip(&mut c, b"x").await.unwrap();
    // A lower bound only: a slow machine makes it longer, never shorter.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    proxy.set_latency(Duration::ZERO);
    round_trip(&mut c, b"y").await.unwrap();
}

#[tokio::test]
async fn pause_holds_bytes_without_closing_and_resume_delivers_them() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut old, b"a").await.unwrap(), b"a");
    proxy.pause();
    old.write_all(b"b").await.unwrap();
    // A connection opened during the blackhole is accepted, then held.
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    new.write_all(b"c").await.unwrap();
    assert!(silent(&mut old, Duration::from_millis(300)).await);
    assert!(silent(&mut new, Duration::from_millis(100)).await);
    assert_eq!(&*seen.lock().unwrap(), b"a", "bytes leaked upstream");
    proxy.resume();
    let mut buf = [0u8; 1];
    tokio::time::timeout(HANG, old.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"b");
    tokio::time::timeout(HANG, new.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"c");
}

#[tokio::test]
async fn reset_all_resets_live_connections_only() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut a, b"1").await.unwrap();
    round_trip(&mut b, b"2").await.unwrap();
    proxy.reset_all();
    assert_eq!(closed(&mut a).await, Some(ErrorKind::ConnectionReset));
    assert_eq!(closed(&mut b).await, Some(ErrorKind::ConnectionReset));
    assert_eq!(proxy.stats().resets, 2);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"3").await.unwrap(), b"3");
}

#[tokio::test]
async fn a_paused_connection_can_still_be_reset() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.pause();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"x").await.unwrap();
    accepted(&proxy, 1).await;
    proxy.reset_all();
    assert_eq!(closed(&mut c).await, Some(ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn dropped_reply_is_applied_upstream_then_the_client_is_reset() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.drop_replies(1);
    assert_eq!(proxy.replies_to_drop(), 1);
    c.write_all(b"write-1").await.unwrap();
    assert_eq!(closed(&mut c).await, Some(ErrorKind::ConnectionReset));
    assert_eq!(
        &*seen.lock().unwrap(),
        b"write-1",
        "the request was not applied"
    );
    let s = proxy.stats();
    assert_eq!((s.replies_dropped, s.resets, s.bytes_down), (1, 1, 0));
    assert_eq!(proxy.replies_to_drop(), 0);
    // The budget is spent: the next request gets its reply.
    let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut d, b"write-2").await.unwrap(), b"write-2");
}

#[tokio::test]
async fn drop_replies_to_counts_only_matching_requests() {
    let (up, seen) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.drop_replies_to(1, "id-42");
    // Not matching: answered, budget kept.
    assert_eq!(round_trip(&mut c, b"ping").await.unwrap(), b"ping");
    assert_eq!(proxy.replies_to_drop(), 1);
    c.write_all(b"set id-42").await.unwrap();
    assert_eq!(closed(&mut c).await, Some(ErrorKind::ConnectionReset));
    assert_eq!(&*seen.lock().unwrap(), b"pingset id-42");
    assert_eq!(proxy.stats().replies_dropped, 1);
}

#[tokio::test]
async fn refuse_closes_the_port_and_admit_reopens_it() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
    accepted(&proxy, 1).await;
    proxy.refuse().await;
    let err = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // A live connection is not touched by a refusal.
    assert_eq!(round_trip(&mut live, b"k").await.unwrap(), b"k");
    proxy.admit().unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut c, b"z").await.unwrap(), b"z");
}

#[tokio::test]
async fn heal_clears_every_fault() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    proxy.pause();
    proxy.set_latency(Duration::from_secs(60));
    proxy.drop_replies(5);
    proxy.refuse().await;
    proxy.heal().unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let reply = tokio::time::timeout(HANG, round_trip(&mut c, b"ok")).await;
    assert_eq!(reply.unwrap().unwrap(), b"ok");
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections() {
    let (up, _) = echo().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut c, b"q").await.unwrap();
    drop(proxy);
    assert_eq!(closed(&mut c).await, None);
}

#[tokio::test]
async fn only_loopback_upstreams() {
    let err = FaultProxy::start("192.0.2.1:6379".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
