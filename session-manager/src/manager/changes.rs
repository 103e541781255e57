//! The change-stream listener (push policy). It runs no user code: what it
//! evicts goes to the closer, refreshes run as their own restore tasks.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use session_core::{Change, ChangeStream};

use super::Inner;
use crate::cache::Flight;
use crate::factory::SessionFactory;
use crate::metrics as m;

/// Applies change events; bumps the resync epoch periodically and on
/// gaps; probes from a `Down` until the next `Resync`, and for good once
/// the stream ends.
pub(super) async fn listen<F: SessionFactory>(weak: Weak<Inner<F>>, mut stream: ChangeStream) {
    let period = match weak.upgrade() {
        Some(inner) => inner.cfg.resync_interval,
        None => return,
    };
    // No immediate first tick: events are handled from the first poll on.
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            change = stream.recv() => {
                let Some(inner) = weak.upgrade() else { return };
                let Some(change) = change else {
                    tracing::warn!("change stream ended: validating by probe from now on");
                    inner.push_live.store(false, Ordering::SeqCst);
                    return;
                };
                inner.on_change(change);
            }
            _ = resync.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                inner.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl<F: SessionFactory> Inner<F> {
    fn on_change(self: &Arc<Self>, change: Change) {
        match change {
            Change::Written { id, version } => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "written").increment(1);
                let refresh = {
                    let mut map = self.cache.shard(&id);
                    let Some(slot) = map.get_mut(&id) else { return };
                    slot.raise_floor(version);
                    match slot.entry.as_ref() {
                        Some(e) if e.stale && slot.flight.is_none() && !self.is_shut() => {
                            let f = Arc::new(Flight::new(None, true));
                            slot.flight = Some(f.clone());
                            Some(f)
                        }
                        _ => None,
                    }
                };
                if let Some(f) = refresh {
                    self.launch(id, f);
                }
            }
            Change::Deleted { id } => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "deleted").increment(1);
                self.forget(&id);
            }
            Change::Down => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "down").increment(1);
                tracing::warn!("change stream down: probing every hit until it resynchronises");
                self.push_live.store(false, Ordering::SeqCst);
            }
            Change::Resync => {
                metrics::counter!(m::CHANGE_EVENTS, "kind" => "resync").increment(1);
                // Entries validated before this point probe once more.
                self.epoch.fetch_add(1, Ordering::AcqRel);
                self.push_live.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}
