//! The Postgres change listener: a background task on its own connection
//! that `LISTEN`s on the store's channel and feeds a [`ChangeHub`].
//!
//! Payloads are `w:<version>:<id>` (created or updated) and `d:<id>`
//! (deleted). As soon as the task notices that its connection is gone
//! (dropped, terminated), it publishes [`Change::Down`], before it
//! reconnects: consumers probe from then on. It re-establishes `LISTEN`
//! first (retrying with backoff) and then publishes [`Change::Resync`], so
//! a subscriber re-validates everything it caches and misses nothing
//! written after the resync. (sqlx's own reconnect inside `try_recv` is
//! turned off: it would re-`LISTEN` before the task could say "down".)

use std::time::Duration;

use session_core::{Change, ChangeHub, SessionId, Version};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

/// Aborts the task it holds when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Connects, runs `LISTEN`, and only then spawns the receive loop, so a
/// store returned from connect sees every change committed afterwards.
pub(crate) async fn start(
    options: PgConnectOptions,
    channel: String,
    hub: ChangeHub,
) -> Result<AbortOnDrop, sqlx::Error> {
    // A pool of one, only used to (re)connect; it pings before reuse so a
    // terminated connection is replaced rather than handed back.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(true)
        .connect_lazy_with(options);
    let listener = connect(&pool, &channel).await?;
    Ok(AbortOnDrop(tokio::spawn(run(pool, listener, channel, hub))))
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Report a loss to `run` instead of reconnecting inside `try_recv`.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

async fn run(pool: PgPool, mut listener: PgListener, channel: String, hub: ChangeHub) {
    loop {
        let lost = loop {
            match listener.try_recv().await {
                Ok(Some(n)) => dispatch(&hub, n.payload()),
                Ok(None) => break "connection closed".to_owned(),
                Err(error) => break error.to_string(),
            }
        };
        // Before reconnecting: changes may be missed from now on.
        hub.publish(Change::Down);
        tracing::warn!(%channel, reason = %lost, "change listener lost its connection; reconnecting");
        drop(listener);
        listener = reconnect(&pool, &channel).await;
        tracing::info!(%channel, "change listener reconnected; publishing resync");
        hub.publish(Change::Resync);
    }
}

async fn reconnect(pool: &PgPool, channel: &str) -> PgListener {
    let mut backoff = Duration::from_millis(50);
    loop {
        tokio::time::sleep(backoff).await;
        match connect(pool, channel).await {
            Ok(listener) => return listener,
            Err(error) => {
                tracing::warn!(%channel, %error, ?backoff, "change listener reconnect failed");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Parses one payload and publishes it; an unknown payload is logged and
/// turned into a resync (something wrote that this version does not know).
pub(crate) fn dispatch(hub: &ChangeHub, payload: &str) {
    if let Some(change) = parse(payload) {
        hub.publish(change);
    } else {
        tracing::warn!(payload, "unrecognised change payload; publishing resync");
        hub.publish(Change::Resync);
    }
}

fn parse(payload: &str) -> Option<Change> {
    if let Some(rest) = payload.strip_prefix("w:") {
        let (version, id) = rest.split_once(':')?;
        let version = version.parse::<u64>().ok().filter(|v| *v > 0)?;
        Some(Change::Written {
            id: SessionId::parse(id).ok()?,
            version: Version::new(version),
        })
    } else {
        let id = payload.strip_prefix("d:")?;
        Some(Change::Deleted {
            id: SessionId::parse(id).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(
            parse("w:3:a:b"),
            Some(Change::Written {
                id: SessionId::parse("a:b").unwrap(),
                version: Version::new(3)
            })
        );
        assert_eq!(
            parse("d:x"),
            Some(Change::Deleted {
                id: SessionId::parse("x").unwrap()
            })
        );
        assert_eq!(parse("w:0:x"), None);
        assert_eq!(parse("w:x"), None);
        assert_eq!(parse("z:x"), None);
        assert_eq!(parse("d:"), None);
    }
}
