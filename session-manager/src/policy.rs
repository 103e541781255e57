//! How a cached live session is checked against storage.

use std::time::Duration;

/// When a cache hit is validated against storage.
///
/// | policy | a hit costs | a change made elsewhere is seen |
/// |---|---|---|
/// | [`EveryAccess`](Self::EveryAccess) | one `version` probe | by every `get` that starts after it was acknowledged |
/// | [`BoundedStaleness(d)`](Self::BoundedStaleness) | a probe at most once per `d` | at most `d` later |
/// | [`Push`](Self::Push) | nothing | when the change event arrives; never later than the resync interval; probes while the stream is down |
///
/// With Postgres' default after-commit notification, an event the writer
/// never sent (it died between commit and batch) reaches every listener as
/// a gap within 3.5 s, and so as a resync: the `Push` bound is then 3.5 s,
/// not the resync interval.
///
/// Under every policy no write (update, notify, activate) succeeds on a
/// terminated session and storage never holds it again: that is enforced by
/// storage compare-and-set, not by the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationPolicy {
    /// One `version` probe per hit.
    EveryAccess,
    /// Probe a hit only if the entry was last validated at least this long ago.
    BoundedStaleness(Duration),
    /// Trust the store's change stream; probe after a resync, and on every
    /// hit while the stream is down.
    Push,
}
