//! Background upkeep: the coarse clock, the idle sweep, TTL slides, and
//! shutdown.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use session_core::SessionId;

use super::{Inner, duration_ms};
use crate::factory::SessionFactory;

/// What [`SessionManager::shutdown`](crate::SessionManager::shutdown) could
/// and could not finish before its deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Cached sessions handed to the closer by this shutdown.
    pub drained: usize,
    /// Closes still running or queued at the deadline (they go on in the
    /// background as long as the runtime runs).
    pub unclosed: usize,
    /// Restores still running at the deadline (for example a `build` that
    /// never returns); whatever they build is closed, never cached.
    pub unfinished_restores: usize,
}

impl ShutdownReport {
    /// Everything finished in time.
    pub fn is_complete(&self) -> bool {
        self.unclosed == 0 && self.unfinished_restores == 0
    }
}

impl<F: SessionFactory> Inner<F> {
    /// Slides the stored TTL of a used session in the background.
    pub(super) fn spawn_slide(self: &Arc<Self>, id: SessionId) {
        let inner = self.clone();
        tokio::spawn(async move {
            match inner.timed(inner.store.touch(&id)).await {
                Ok(true) => {}
                Ok(false) => inner.forget(&id),
                Err(e) => {
                    inner.storage_error("touch", e);
                }
            }
        });
    }

    pub(super) async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        self.shut.store(true, Ordering::SeqCst);
        // Background tasks run no user code and stop at their next poll.
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(left(), self.tasks.wait()).await;
        // Restores see `shut` and discard their result.
        let flights = async {
            loop {
                let ended = self.flight_ended.notified();
                if self.flights.load(Ordering::SeqCst) == 0 {
                    return;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(left(), flights).await;
        let mut closing = Vec::new();
        self.cache.drain(&mut closing);
        let drained = closing.len();
        self.closer.close_all(closing);
        let unclosed = self.closer.drained(left()).await;
        let report = ShutdownReport {
            drained,
            unclosed,
            unfinished_restores: self.flights.load(Ordering::SeqCst),
        };
        if !report.is_complete() {
            tracing::warn!(?report, "shutdown deadline passed with work outstanding");
        }
        report
    }
}

/// Refreshes the coarse clock.
pub(super) async fn tick<F: SessionFactory>(weak: Weak<Inner<F>>) {
    let period = match weak.upgrade() {
        Some(inner) => Duration::from_millis(inner.tick_ms),
        None => return,
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        inner.coarse.store(inner.now_ms(), Ordering::Relaxed);
    }
}

/// The idle sweeper: evicted sessions go to the closer.
pub(super) async fn sweep<F: SessionFactory>(weak: Weak<Inner<F>>) {
    let (idle, period) = match weak.upgrade() {
        Some(inner) => {
            let idle = inner.cfg.idle_timeout;
            (idle, (idle / 4).max(Duration::from_millis(5)))
        }
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let before = inner.now_ms().saturating_sub(duration_ms(idle));
        let mut closing = Vec::new();
        inner.cache.expire_idle(before, &mut closing);
        inner.closer.close_all(closing);
    }
}
