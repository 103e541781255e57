//! The change subscriber: a background task on its own pub/sub connection
//! that turns messages on the prefix's channel into [`Change`]s.
//!
//! Payloads (published by the scripts): `w:<version>:<id>` after a create or
//! an applied update, `d:<id>` after a delete. Expiry is not reported.
//!
//! The task publishes [`Change::Down`] as soon as it notices that its
//! connection is gone (the server closed it, or a ping went unanswered),
//! before it waits to re-dial: from then on changes may be missed, and
//! consumers must probe. It re-dials with exponential backoff (rotating
//! through the seed nodes of a cluster; its own settings,
//! [`RedisConfig::subscriber_backoff`](crate::RedisConfig::subscriber_backoff))
//! and publishes [`Change::Resync`] each time a subscription becomes live:
//! anything published while it was not may have been missed. `Down` is sent
//! once per gap (also if the very first dial fails), however many re-dials
//! the gap takes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;
use redis::{Client, ConnectionAddr, Msg, RedisError, RedisResult};
use session_core::{Change, ChangeHub, SessionId, Version};
use tokio::task::JoinHandle;

/// Decodes one payload.
pub(crate) fn parse_payload(payload: &[u8]) -> Option<Change> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(rest) = text.strip_prefix("w:") {
        let (version, id) = rest.split_once(':')?;
        return Some(Change::Written {
            id: SessionId::parse(id).ok()?,
            version: Version::new(version.parse().ok()?),
        });
    }
    let id = text.strip_prefix("d:")?;
    Some(Change::Deleted {
        id: SessionId::parse(id).ok()?,
    })
}

/// What the subscriber task needs.
pub(crate) struct Subscriber {
    pub clients: Vec<Client>,
    pub channel: String,
    pub hub: ChangeHub,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub ping_every: Duration,
    pub backoff: crate::config::Backoff,
    /// The local address of the live subscription's connection (plain TCP
    /// only), `None` while there is none.
    pub addr: SubscriberAddr,
}

/// Where the live subscription's connection is, shared with the store.
pub(crate) type SubscriberAddr = Arc<Mutex<Option<SocketAddr>>>;

/// Dials one pub/sub connection. A plain TCP address is dialled here, so
/// the subscriber knows its local address (what the server shows as the
/// client's `addr` in `CLIENT LIST` and accepts in `CLIENT KILL ADDR`);
/// other addresses (TLS, Unix sockets) are dialled by the client.
async fn dial(client: &Client) -> RedisResult<(PubSub, Option<SocketAddr>)> {
    let info = client.get_connection_info();
    if let ConnectionAddr::Tcp(host, port) = info.addr() {
        let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr().ok();
        let pubsub = PubSub::new(info.redis_settings(), stream).await?;
        return Ok((pubsub, local));
    }
    Ok((client.get_async_pubsub().await?, None))
}

/// Why a subscription ended.
#[derive(Debug)]
enum Ended {
    Redis(RedisError),
    Timeout(&'static str),
    Closed,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Redis(e) => write!(f, "{e}"),
            Ended::Timeout(step) => write!(f, "{step} timed out"),
            Ended::Closed => f.write_str("connection closed"),
        }
    }
}

impl Subscriber {
    /// Starts the task on the current runtime; it runs until aborted.
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut failures: u32 = 0;
        let mut node = 0usize;
        // Whether consumers were told the stream is down since it was last
        // live (one `Down` per gap, however many re-dials it takes).
        let mut down_sent = false;
        loop {
            let client = &self.clients[node % self.clients.len()];
            let ended = self.session(client, &mut failures, &mut down_sent).await;
            self.set_addr(None);
            if !down_sent {
                // Before any waiting: consumers probe from now on.
                self.hub.publish(Change::Down);
                down_sent = true;
            }
            tracing::warn!(channel = %self.channel, reason = %ended, "change subscription lost; reconnecting");
            failures = failures.saturating_add(1);
            node = node.wrapping_add(1);
            tokio::time::sleep(self.backoff.delay(failures)).await;
        }
    }

    fn set_addr(&self, addr: Option<SocketAddr>) {
        *self.addr.lock().unwrap_or_else(PoisonError::into_inner) = addr;
    }

    /// One subscription: dial, subscribe, signal resync, then relay
    /// messages until the connection ends or a ping fails.
    async fn session(&self, client: &Client, failures: &mut u32, down_sent: &mut bool) -> Ended {
        let (pubsub, local) = match tokio::time::timeout(self.connect_timeout, dial(client)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Ended::Redis(e),
            Err(_) => return Ended::Timeout("connect"),
        };
        let (mut sink, mut stream) = pubsub.split();
        match tokio::time::timeout(self.response_timeout, sink.subscribe(&self.channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ended::Redis(e),
            Err(_) => return Ended::Timeout("subscribe"),
        }
        *failures = 0;
        *down_sent = false;
        self.set_addr(local);
        tracing::debug!(channel = %self.channel, "change subscription live");
        self.hub.publish(Change::Resync);
        let mut ping = tokio::time::interval(self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.relay(&msg),
                    None => return Ended::Closed,
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(self.response_timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Ended::Redis(e),
                        Err(_) => return Ended::Timeout("ping"),
                    }
                }
            }
        }
    }

    fn relay(&self, msg: &Msg) {
        if let Some(change) = parse_payload(msg.get_payload_bytes()) {
            self.hub.publish(change);
        } else {
            tracing::debug!(channel = %self.channel, "ignoring malformed change payload");
        }
    }
}

/// Aborts the subscriber task when the last store handle goes away.
pub(crate) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = crate::config::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let waits: Vec<_> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
        assert!(b.check("b").is_ok());
        for bad in [
            crate::config::Backoff {
                initial: Duration::ZERO,
                max: Duration::from_secs(1),
            },
            crate::config::Backoff {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1),
            },
        ] {
            assert!(bad.check("b").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_payloads() {
        let id = SessionId::parse("a:b").unwrap();
        assert_eq!(
            parse_payload(b"w:7:a:b"),
            Some(Change::Written {
                id: id.clone(),
                version: Version::new(7)
            })
        );
        assert_eq!(parse_payload(b"d:a:b"), Some(Change::Deleted { id }));
        for bad in [&b"x:1"[..], b"w:x:a", b"w:1:", b"d:", b"\xff", b"w:1"] {
            assert_eq!(parse_payload(bad), None, "{bad:?}");
        }
    }
}
