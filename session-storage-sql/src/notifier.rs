//! The after-commit notifier of [`crate::NotifyMode::AfterCommit`] (the
//! default): writes queue their payload once committed, and one background
//! task sends whatever has queued up in a single `pg_notify` statement per
//! batch, on its own connection.
//!
//! A notify-only transaction writes no WAL of its own and commits without
//! waiting for a flush, and batching makes them few, so writes keep group
//! commit (see the README's benchmark).
//!
//! An event can still be lost: the queue is full, a batch fails three
//! times, or the process dies between a write's commit and its batch. Each
//! of these is made visible to every listener as a gap (see
//! [`crate::listener`]):
//!
//! - every batch starts with a marker `b:<epoch>:<seq>`: `epoch` is random
//!   per notifier, `seq` counts batches; a dropped event or a batch that
//!   could not be sent skips a number, so the next marker shows a gap;
//! - an idle notifier sends a marker alone every [`HEARTBEAT`], so a
//!   notifier that stops (its process died) falls silent, and listeners
//!   treat a silence longer than [`SILENCE`] as a gap;
//! - a notifier that ends normally (the store is dropped) sends what is
//!   queued and then `e:<epoch>`, so its silence is not a gap;
//! - the first marker is sent before `connect` returns, so no write of the
//!   store precedes its notifier being known.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};
use tokio::sync::mpsc;

use crate::ident::Ident;

/// Most payloads sent in one statement.
const BATCH: usize = 1024;
/// Payloads that may wait before new ones are dropped (and logged).
const QUEUE: usize = 64 * 1024;
/// How often an idle notifier says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a listener waits for a notifier's next marker before it
/// counts the silence as a gap: three heartbeats.
pub(crate) const SILENCE: Duration = Duration::from_secs(3);

/// The queue side; dropping it lets the task send what is queued, say
/// goodbye and end.
#[derive(Debug)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<String>,
    /// An event was dropped: the next marker skips a sequence number.
    dropped: Arc<AtomicBool>,
}

/// A batch marker.
pub(crate) fn marker(epoch: u64, seq: u64) -> String {
    format!("b:{epoch:016x}:{seq}")
}

/// The goodbye of a notifier that ends normally.
pub(crate) fn goodbye(epoch: u64) -> String {
    format!("e:{epoch:016x}")
}

impl Notifier {
    /// Connects a one-connection pool for `channel` (only `[a-z0-9_.]`),
    /// sends the first marker and spawns the sending task. Its own
    /// connection: it neither waits behind writers for a pooled connection
    /// nor makes them wait.
    pub(crate) async fn start(
        options: &PgConnectOptions,
        schema: &Ident,
        table: &Ident,
        channel: String,
    ) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(true)
            .connect_lazy_with(
                options
                    .clone()
                    .application_name(&format!("vmcp-notify:{schema}.{table}")),
            );
        let sql = AssertSqlSafe(format!(
            "SELECT pg_notify('{channel}', p)::text FROM unnest($1::text[]) AS u(p)"
        ))
        .into_sql_str();
        let epoch = epoch();
        sqlx::query(sql.clone())
            .bind(vec![marker(epoch, 0)])
            .execute(&pool)
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(
            Sender {
                pool,
                sql,
                channel,
                epoch,
                seq: 0,
                dropped: dropped.clone(),
            },
            rx,
        ));
        Ok(Self { tx, dropped })
    }

    /// Queues one payload of a committed write.
    pub(crate) fn send(&self, payload: String) {
        if let Err(error) = self.tx.try_send(payload) {
            self.dropped.store(true, Ordering::SeqCst);
            tracing::warn!(%error, "change notification queue full; event dropped (listeners will resync)");
        }
    }
}

/// A random epoch: process id, time and a fresh hash seed, mixed.
fn epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish()
}

struct Sender {
    pool: PgPool,
    sql: SqlStr,
    channel: String,
    epoch: u64,
    seq: u64,
    dropped: Arc<AtomicBool>,
}

impl Sender {
    /// Sends `payloads` behind the next marker; a batch that fails three
    /// times is given up (its sequence number stays used: a gap).
    async fn send(&mut self, payloads: &[String]) {
        // A dropped event since the last batch: skip a number.
        let skip = u64::from(self.dropped.swap(false, Ordering::SeqCst));
        self.seq += 1 + skip;
        let mut all = Vec::with_capacity(payloads.len() + 1);
        all.push(marker(self.epoch, self.seq));
        all.extend_from_slice(payloads);
        for attempt in 1..=3 {
            match sqlx::query(self.sql.clone())
                .bind(&all)
                .execute(&self.pool)
                .await
            {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(channel = %self.channel, %error, attempt, events = payloads.len(), "sending change notifications failed");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
            }
        }
    }
}

async fn run(mut sender: Sender, mut rx: mpsc::Receiver<String>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match tokio::time::timeout(HEARTBEAT, rx.recv_many(&mut batch, BATCH)).await {
            // Every store handle is gone and the queue is drained.
            Ok(0) => break,
            // Events, or (timed out) a heartbeat: a marker alone.
            Ok(_) | Err(_) => sender.send(&batch).await,
        }
        batch.clear();
    }
    let bye = AssertSqlSafe(format!("SELECT pg_notify('{}', $1)", sender.channel)).into_sql_str();
    if let Err(error) = sqlx::query(bye)
        .bind(goodbye(sender.epoch))
        .execute(&sender.pool)
        .await
    {
        tracing::debug!(%error, "change notifier goodbye not sent");
    }
}
