//! The after-commit notifier of [`crate::NotifyMode::AfterCommit`]: writes
//! queue their payload once committed, and one background task sends
//! whatever has queued up in a single `pg_notify` statement per batch.
//!
//! A notify-only transaction writes no WAL of its own and commits without
//! waiting for a flush, and batching makes them few, so writes keep group
//! commit (see the README's benchmark). Events queued when the process
//! dies, or dropped because the queue is full, are lost: subscribers then
//! rely on version probes and their periodic resync, as after any gap.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::ident::Ident;
use sqlx::{AssertSqlSafe, SqlSafeStr};
use tokio::sync::mpsc;

/// Most payloads sent in one statement.
const BATCH: usize = 1024;
/// Payloads that may wait before new ones are dropped (and logged).
const QUEUE: usize = 64 * 1024;

/// The queue side; dropping it lets the task send what is queued and end.
#[derive(Debug)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<String>,
}

impl Notifier {
    /// Spawns the sending task for `channel` (only `[a-z0-9_.]`) on its
    /// own connection, so it neither waits behind writers for a pooled
    /// connection nor makes them wait.
    pub(crate) fn spawn(
        options: &PgConnectOptions,
        schema: &Ident,
        table: &Ident,
        channel: String,
    ) -> Self {
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
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, channel, rx));
        Self { tx }
    }

    /// Queues one payload of a committed write.
    pub(crate) fn send(&self, payload: String) {
        if let Err(error) = self.tx.try_send(payload) {
            tracing::warn!(%error, "change notification queue full; event dropped");
        }
    }
}

async fn run(pool: PgPool, channel: String, mut rx: mpsc::Receiver<String>) {
    let sql = AssertSqlSafe(format!(
        "SELECT pg_notify('{channel}', p)::text FROM unnest($1::text[]) AS u(p)"
    ))
    .into_sql_str();
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for attempt in 1..=3 {
            match sqlx::query(sql.clone()).bind(&batch).execute(&pool).await {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%channel, %error, attempt, events = batch.len(), "sending change notifications failed");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
            }
        }
        batch.clear();
    }
}
