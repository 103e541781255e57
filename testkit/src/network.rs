//! [`Network`]: the faults the shared cases need, on one [`FaultProxy`] or
//! on several at once (one per Redis Cluster node, say).

use crate::{FaultProxy, Stats};

/// A path to a server that faults can be switched on: one proxy, or a
/// slice of proxies treated as one network (each call applies to all).
pub trait Network: Sync {
    /// Starts the blackhole ([`FaultProxy::pause`]).
    fn pause(&self);
    /// Ends it ([`FaultProxy::resume`]).
    fn resume(&self);
    /// Resets every live connection ([`FaultProxy::reset_all`]).
    fn reset_all(&self);
    /// Loses the replies of the next `n` requests containing `needle`
    /// ([`FaultProxy::drop_replies_to`]); on several proxies, `n` each.
    fn drop_replies_to(&self, n: u64, needle: &[u8]);
    /// The counters, summed.
    fn stats(&self) -> Stats;
}

impl Network for FaultProxy {
    fn pause(&self) {
        FaultProxy::pause(self);
    }
    fn resume(&self) {
        FaultProxy::resume(self);
    }
    fn reset_all(&self) {
        FaultProxy::reset_all(self);
    }
    fn drop_replies_to(&self, n: u64, needle: &[u8]) {
        FaultProxy::drop_replies_to(self, n, needle);
    }
    fn stats(&self) -> Stats {
        FaultProxy::stats(self)
    }
}

impl Network for [FaultProxy] {
    fn pause(&self) {
        self.iter().for_each(FaultProxy::pause);
    }
    fn resume(&self) {
        self.iter().for_each(FaultProxy::resume);
    }
    fn reset_all(&self) {
        self.iter().for_each(FaultProxy::reset_all);
    }
    fn drop_replies_to(&self, n: u64, needle: &[u8]) {
        for p in self {
            p.drop_replies_to(n, needle);
        }
    }
    fn stats(&self) -> Stats {
        self.iter()
            .map(FaultProxy::stats)
            .fold(Stats::default(), |a, b| Stats {
                accepted: a.accepted + b.accepted,
                live: a.live + b.live,
                bytes_up: a.bytes_up + b.bytes_up,
                bytes_down: a.bytes_down + b.bytes_down,
                resets: a.resets + b.resets,
                replies_dropped: a.replies_dropped + b.replies_dropped,
            })
    }
}
