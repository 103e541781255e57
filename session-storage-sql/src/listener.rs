//! The Postgres change listener: a background task on its own connection
//! that `LISTEN`s on the store's channel and feeds a [`ChangeHub`].
//!
//! Payloads are `w:<version>:<id>` (created or updated), `d:<id>`
//! (deleted), and the after-commit notifiers' batch markers
//! `b:<epoch>:<seq>` and goodbyes `e:<epoch>` (see [`crate::notifier`]).
//! As soon as the task notices that its connection is gone (dropped,
//! terminated), it publishes [`Change::Down`], before it reconnects:
//! consumers probe from then on. It re-establishes `LISTEN` first
//! (retrying with backoff) and then publishes [`Change::Resync`], so a
//! subscriber re-validates everything it caches and misses nothing written
//! after the resync. (sqlx's own reconnect inside `try_recv` is turned
//! off: it would re-`LISTEN` before the task could say "down".)
//!
//! While connected, the listener also publishes [`Change::Resync`] when an
//! after-commit notifier shows a gap: a marker that skips a sequence
//! number (events dropped or a batch not sent), or a notifier that falls
//! silent for longer than [`SILENCE`] without saying goodbye (its process
//! died, perhaps between a commit and its batch). One more resync follows
//! [`SILENCE`] after each (re)connect, for a notifier that died before the
//! listener heard of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use session_core::{Change, ChangeHub, SessionId, Version};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

use crate::notifier::{HEARTBEAT, SILENCE};

/// Aborts the tasks it holds when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What the listener knows of the after-commit notifiers it hears.
#[derive(Debug)]
pub(crate) struct Notifiers {
    /// Whether `LISTEN` is established (gaps are only reported then).
    up: bool,
    /// Per notifier epoch: the last sequence number and when it came.
    seen: HashMap<u64, (u64, Instant)>,
    /// When the connection was (re)established, until the resync that
    /// follows it by [`SILENCE`] has been published.
    connected: Option<Instant>,
}

impl Notifiers {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            up: true,
            seen: HashMap::new(),
            connected: Some(now),
        }
    }

    /// The connection is lost: nothing is tracked until it is back.
    fn down(&mut self) {
        self.up = false;
        self.seen.clear();
        self.connected = None;
    }

    /// The connection is back (and `Resync` published).
    fn reconnected(&mut self, now: Instant) {
        *self = Self::new(now);
    }

    /// A marker arrived; whether it shows a gap.
    pub(crate) fn marker(&mut self, epoch: u64, seq: u64, now: Instant) -> bool {
        match self.seen.insert(epoch, (seq, now)) {
            // Not heard before (new notifier, or this listener is new): a
            // notifier's first batches are covered by its own first marker
            // (sent before its store returns) or by this listener's
            // connect-time resyncs.
            None => false,
            Some((last, _)) => seq != last.wrapping_add(1),
        }
    }

    /// A notifier said goodbye: its silence is no gap.
    pub(crate) fn goodbye(&mut self, epoch: u64) {
        self.seen.remove(&epoch);
    }

    /// Whether a resync is due now: a notifier silent for longer than
    /// [`SILENCE`] (forgotten), or the second resync after a connect.
    pub(crate) fn check(&mut self, now: Instant) -> bool {
        if !self.up {
            return false;
        }
        let before = self.seen.len();
        self.seen
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= SILENCE);
        let silent = self.seen.len() < before;
        let settled = self
            .connected
            .is_some_and(|at| now.saturating_duration_since(at) > SILENCE);
        if settled {
            self.connected = None;
        }
        silent || settled
    }
}

type Shared = Arc<Mutex<Notifiers>>;

fn lock(n: &Shared) -> std::sync::MutexGuard<'_, Notifiers> {
    n.lock().unwrap_or_else(PoisonError::into_inner)
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
    let notifiers = Arc::new(Mutex::new(Notifiers::new(Instant::now())));
    let watchdog = tokio::spawn(watch(notifiers.clone(), hub.clone()));
    let task = tokio::spawn(run(pool, listener, channel, hub, notifiers));
    Ok(AbortOnDrop(vec![task, watchdog]))
}

/// Publishes a resync whenever [`Notifiers::check`] says one is due.
async fn watch(notifiers: Shared, hub: ChangeHub) {
    let mut tick = tokio::time::interval(HEARTBEAT / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if lock(&notifiers).check(Instant::now()) {
            tracing::warn!(
                "change notifier gap (silent notifier or post-connect check); publishing resync"
            );
            hub.publish(Change::Resync);
        }
    }
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Report a loss to `run` instead of reconnecting inside `try_recv`.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

async fn run(
    pool: PgPool,
    mut listener: PgListener,
    channel: String,
    hub: ChangeHub,
    notifiers: Shared,
) {
    loop {
        let lost = loop {
            match listener.try_recv().await {
                Ok(Some(n)) => dispatch(&hub, &notifiers, n.payload()),
                Ok(None) => break "connection closed".to_owned(),
                Err(error) => break error.to_string(),
            }
        };
        // Before reconnecting: changes may be missed from now on.
        lock(&notifiers).down();
        hub.publish(Change::Down);
        tracing::warn!(%channel, reason = %lost, "change listener lost its connection; reconnecting");
        drop(listener);
        listener = reconnect(&pool, &channel).await;
        tracing::info!(%channel, "change listener reconnected; publishing resync");
        lock(&notifiers).reconnected(Instant::now());
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

/// Parses one payload and publishes it; a marker that shows a gap becomes
/// a resync; an unknown payload is logged and turned into a resync
/// (something wrote that this version does not know).
pub(crate) fn dispatch(hub: &ChangeHub, notifiers: &Shared, payload: &str) {
    match parse(payload) {
        Some(Payload::Change(change)) => hub.publish(change),
        Some(Payload::Marker { epoch, seq }) => {
            if lock(notifiers).marker(epoch, seq, Instant::now()) {
                tracing::warn!(
                    epoch,
                    seq,
                    "change notifier skipped a batch; publishing resync"
                );
                hub.publish(Change::Resync);
            }
        }
        Some(Payload::Goodbye { epoch }) => lock(notifiers).goodbye(epoch),
        None => {
            tracing::warn!(payload, "unrecognised change payload; publishing resync");
            hub.publish(Change::Resync);
        }
    }
}

/// One parsed notification payload.
#[derive(Debug, PartialEq)]
enum Payload {
    Change(Change),
    Marker { epoch: u64, seq: u64 },
    Goodbye { epoch: u64 },
}

fn parse(payload: &str) -> Option<Payload> {
    if let Some(rest) = payload.strip_prefix("w:") {
        let (version, id) = rest.split_once(':')?;
        let version = version.parse::<u64>().ok().filter(|v| *v > 0)?;
        Some(Payload::Change(Change::Written {
            id: SessionId::parse(id).ok()?,
            version: Version::new(version),
        }))
    } else if let Some(rest) = payload.strip_prefix("b:") {
        let (epoch, seq) = rest.split_once(':')?;
        Some(Payload::Marker {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    } else if let Some(epoch) = payload.strip_prefix("e:") {
        Some(Payload::Goodbye {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
        })
    } else {
        let id = payload.strip_prefix("d:")?;
        Some(Payload::Change(Change::Deleted {
            id: SessionId::parse(id).ok()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::{goodbye, marker};

    fn change(payload: &str) -> Option<Change> {
        match parse(payload)? {
            Payload::Change(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(
            change("w:3:a:b"),
            Some(Change::Written {
                id: SessionId::parse("a:b").unwrap(),
                version: Version::new(3)
            })
        );
        assert_eq!(
            change("d:x"),
            Some(Change::Deleted {
                id: SessionId::parse("x").unwrap()
            })
        );
        assert_eq!(parse("w:0:x"), None);
        assert_eq!(parse("w:x"), None);
        assert_eq!(parse("z:x"), None);
        assert_eq!(parse("d:"), None);
        assert_eq!(parse("b:zz:1"), None);
        assert_eq!(parse("b:1f"), None);
        assert_eq!(parse("e:"), None);
        assert_eq!(
            parse(&marker(0xabc, 7)),
            Some(Payload::Marker {
                epoch: 0xabc,
                seq: 7
            })
        );
        assert_eq!(
            parse(&goodbye(u64::MAX)),
            Some(Payload::Goodbye { epoch: u64::MAX })
        );
    }

    #[test]
    fn a_skipped_sequence_number_is_a_gap() {
        let t0 = Instant::now();
        let mut n = Notifiers::new(t0);
        assert!(!n.marker(1, 5, t0), "first marker of a notifier: adopted");
        assert!(!n.marker(1, 6, t0));
        assert!(n.marker(1, 8, t0), "7 is missing");
        assert!(!n.marker(1, 9, t0), "tracking goes on from the gap");
        assert!(!n.marker(2, 0, t0), "another notifier is tracked apart");
        assert!(n.marker(2, 2, t0));
    }

    #[test]
    fn silence_without_goodbye_is_a_gap_once() {
        let t0 = Instant::now();
        let mut n = Notifiers::new(t0);
        n.connected = None; // past the connect-time resync
        n.marker(1, 0, t0);
        n.marker(2, 0, t0);
        n.goodbye(2);
        assert!(
            !n.check(t0 + SILENCE),
            "not yet silent for longer than SILENCE"
        );
        n.marker(1, 1, t0 + SILENCE);
        assert!(
            !n.check(t0 + SILENCE * 2),
            "heartbeat kept it alive; 2 said goodbye"
        );
        assert!(n.check(t0 + SILENCE * 2 + HEARTBEAT), "1 fell silent");
        assert!(!n.check(t0 + SILENCE * 3), "reported once, then forgotten");
    }

    #[test]
    fn one_more_resync_follows_a_connect_and_none_while_down() {
        let t0 = Instant::now();
        let mut n = Notifiers::new(t0);
        assert!(!n.check(t0 + SILENCE));
        assert!(n.check(t0 + SILENCE + HEARTBEAT));
        assert!(!n.check(t0 + SILENCE * 2));
        n.marker(1, 0, t0 + SILENCE * 2);
        n.down();
        assert!(!n.check(t0 + SILENCE * 9), "no resync while down");
        n.reconnected(t0 + SILENCE * 9);
        assert!(n.check(t0 + SILENCE * 10 + HEARTBEAT));
    }
}
