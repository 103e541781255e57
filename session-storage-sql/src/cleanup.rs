//! The expired-row cleanup task shared by both stores.
//!
//! Expired rows are already invisible to every operation; cleanup only
//! reclaims space. Each run deletes in batches (`batch_size` rows per
//! statement, so no statement holds many row locks or runs long) until a
//! batch comes back short or `max_batches` is reached. An error is logged
//! and the task carries on at the next interval: it never dies on a
//! transient failure.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

/// Cleanup task settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupConfig {
    /// Time between runs (default 60 s). The first run starts at once.
    pub interval: Duration,
    /// Rows deleted per statement (default 1000).
    pub batch_size: u32,
    /// Most batches per run (default 100); the rest waits for the next run.
    pub max_batches: u32,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            batch_size: 1000,
            max_batches: 100,
        }
    }
}

/// Counters of a running cleanup task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupStats {
    /// Runs finished (with or without an error).
    pub runs: u64,
    /// Rows deleted in total.
    pub deleted: u64,
    /// Runs that ended in an error.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    runs: AtomicU64,
    deleted: AtomicU64,
    errors: AtomicU64,
}

/// A running cleanup task; [`CleanupHandle::stop`] or dropping the handle
/// stops it.
#[derive(Debug)]
#[must_use = "dropping the handle stops the cleanup task"]
pub struct CleanupHandle {
    task: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl CleanupHandle {
    /// Stops the task (an in-flight batch is cancelled; its statement
    /// either committed or did not).
    pub fn stop(self) {
        drop(self);
    }

    /// What the task has done so far.
    pub fn stats(&self) -> CleanupStats {
        CleanupStats {
            runs: self.counters.runs.load(Ordering::Relaxed),
            deleted: self.counters.deleted.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    /// Whether the task has ended (the store it cleans is gone).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one batch did.
pub(crate) enum Batch {
    /// Deleted this many rows.
    Deleted(u64),
    /// The store is gone: end the task.
    StoreGone,
}

/// Spawns the loop; `purge(batch_size)` deletes one batch.
pub(crate) fn spawn<F, Fut>(name: String, config: CleanupConfig, purge: F) -> CleanupHandle
where
    F: Fn(u32) -> Fut + Send + 'static,
    Fut: Future<Output = session_core::Result<Batch>> + Send,
{
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let batch_size = config.batch_size.max(1);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut deleted = 0;
            let mut failed = false;
            for _ in 0..config.max_batches.max(1) {
                match purge(batch_size).await {
                    Ok(Batch::Deleted(n)) => {
                        deleted += n;
                        if n < u64::from(batch_size) {
                            break;
                        }
                    }
                    Ok(Batch::StoreGone) => return,
                    Err(error) => {
                        failed = true;
                        tracing::warn!(store = %name, %error, "session cleanup failed; retrying next interval");
                        break;
                    }
                }
            }
            c.deleted.fetch_add(deleted, Ordering::Relaxed);
            if failed {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
            c.runs.fetch_add(1, Ordering::Relaxed);
            if deleted > 0 {
                tracing::debug!(store = %name, deleted, "expired sessions removed");
            }
        }
    });
    CleanupHandle { task, counters }
}
