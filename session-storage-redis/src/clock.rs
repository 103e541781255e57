//! An estimate of the Redis server's clock on the client, for `load`'s
//! slide decision (the record header's deadline `e` against the server's
//! "now", without asking the server on every load).
//!
//! A sample pairs the server's `TIME` with the local monotonic clock
//! ([`Instant`]): the reply was produced somewhere between sending the
//! request and receiving the reply, so taking the midpoint of that round
//! trip is wrong by at most half of it. From a sample, the server's clock
//! at any later local instant is `TIME + (instant - midpoint)`, known to
//! within that error plus the drift of the two clocks since (negligible
//! over the refresh period) and any step of the server's wall clock since
//! the sample (an NTP step; seen at the next refresh).
//!
//! [`ServerClock::now_ms`] answers the *latest* the server's clock can
//! be (estimate + error): the slide decision then errs towards sliding
//! early, never late. A sample older than [`REFRESH_AFTER`] is refreshed
//! lazily: one `load` at a time ([`ServerClock::claim`]) pipelines `TIME`
//! with its `GET` (the same round trip); until the first sample exists,
//! every `load` does.
//!
//! [`ServerClock::server_now_low_ms`] answers the *earliest* the server's
//! clock can be (estimate - error - a drift allowance of [`DRIFT_PPM`] of
//! the sample's age), for `update` and `touch`: they send it to their
//! script, which writes `it + ttl` as the header deadline `e` without
//! reading `TIME`, and gives the key `PX ttl` when it runs, later on the
//! server's clock: so `e` is never later than the key's real expiry, and a
//! `load` deciding from it slides early, never late. It answers only from
//! a sample younger than [`REFRESH_AFTER`]; otherwise the caller refreshes
//! first (one `TIME` round trip, [`ServerClock::claim`]) or, while another
//! caller refreshes, sends none (the script then reads `TIME`). A step
//! back of the server's wall clock (an NTP step) since the sample is not
//! covered: it is seen at the next refresh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How old a sample may get before a `load` refreshes it.
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(10);

/// The most the server's clock is assumed to run slower than the local
/// monotonic clock, parts per million of elapsed time (NTP slews at most
/// 500 ppm on either side): [`ServerClock::server_now_low_ms`] subtracts it.
pub(crate) const DRIFT_PPM: u64 = 1_000;

/// One `TIME` reply and where it sits on the local monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// The midpoint of the round trip that carried `TIME`.
    at: Instant,
    /// The server's `TIME`, µs since the Unix epoch.
    server_us: u64,
    /// Half the round trip: the most the midpoint can be off.
    error: Duration,
}

/// The per-store estimate (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    sample: Mutex<Option<Sample>>,
    /// A refresh of an existing (old) sample is in flight.
    refreshing: AtomicBool,
}

/// The right to refresh the estimate: pipeline `TIME` and hand the reply
/// to [`Claim::record`]. Dropping it without a reply (an error) frees the
/// claim for the next `load`.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    clock: &'a ServerClock,
    /// Whether this claim holds `refreshing` (a refresh of an old sample;
    /// without any sample every caller refreshes).
    exclusive: bool,
}

impl ServerClock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> Option<Sample> {
        *self.sample.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the caller should pipeline `TIME` now (`Some`): always while
    /// there is no sample; once a sample is older than [`REFRESH_AFTER`],
    /// for one caller at a time.
    pub(crate) fn claim(&self, now: Instant) -> Option<Claim<'_>> {
        match self.current() {
            None => Some(Claim {
                clock: self,
                exclusive: false,
            }),
            Some(s) if now.saturating_duration_since(s.at) >= REFRESH_AFTER => self
                .refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
                .then_some(Claim {
                    clock: self,
                    exclusive: true,
                }),
            Some(_) => None,
        }
    }

    /// The latest the server's clock can read at local instant `now`, ms
    /// since the Unix epoch (the estimate plus its error, rounded up), or
    /// `None` before the first sample.
    pub(crate) fn now_ms(&self, now: Instant) -> Option<u64> {
        let s = self.current()?;
        // `now` before the sample's midpoint (a caller's instant taken
        // before a concurrent refresh landed) counts back from it.
        let us = match now.checked_duration_since(s.at) {
            Some(ahead) => s.server_us.saturating_add(micros(ahead)),
            None => s
                .server_us
                .saturating_sub(micros(s.at.saturating_duration_since(now))),
        };
        Some(us.saturating_add(micros(s.error)).div_ceil(1000))
    }

    /// The earliest the server's clock can read at local instant `now`, ms
    /// since the Unix epoch (the estimate minus its error and a drift
    /// allowance of [`DRIFT_PPM`] of the sample's age, rounded down), or
    /// `None` without a sample younger than [`REFRESH_AFTER`].
    ///
    /// The `TIME` reply was produced at some local instant between the
    /// round trip's send and receipt, so no later than `at + error`; the
    /// server's clock at `now` is then at least
    /// `server_us + (now - at) - error` (less the drift).
    pub(crate) fn server_now_low_ms(&self, now: Instant) -> Option<u64> {
        let s = self.current()?;
        let us = match now.checked_duration_since(s.at) {
            Some(ahead) if ahead >= REFRESH_AFTER => return None,
            Some(ahead) => {
                let ahead = micros(ahead);
                s.server_us
                    .saturating_add(ahead)
                    .saturating_sub(ahead.div_ceil(1_000_000 / DRIFT_PPM))
            }
            None => s
                .server_us
                .saturating_sub(micros(s.at.saturating_duration_since(now))),
        };
        Some(us.saturating_sub(micros(s.error)) / 1000)
    }

    /// The error of the current sample (half its round trip).
    #[cfg(test)]
    fn error(&self) -> Option<Duration> {
        self.current().map(|s| s.error)
    }
}

impl Claim<'_> {
    /// Records a `TIME` reply (`server_us`, µs since the epoch) carried by
    /// a round trip sent at `sent` and answered at `received`.
    pub(crate) fn record(self, sent: Instant, received: Instant, server_us: u64) {
        let half = received.saturating_duration_since(sent) / 2;
        let fresh = Sample {
            at: sent + half,
            server_us,
            error: half,
        };
        let mut sample = self
            .clock
            .sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Concurrent first samples: the most recent one wins (a later
        // midpoint), so an estimate never moves back to an older sample.
        if sample.is_none_or(|old| old.at <= fresh.at) {
            *sample = Some(fresh);
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.exclusive {
            self.clock.refreshing.store(false, Ordering::Release);
        }
    }
}

/// `TIME`'s reply (`[seconds, microseconds]`) as µs since the epoch.
pub(crate) fn time_us((secs, micros): (u64, u64)) -> u64 {
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn every_caller_refreshes_until_the_first_sample() {
        let clock = ServerClock::new();
        let t0 = Instant::now();
        assert_eq!(clock.now_ms(t0), None);
        let a = clock.claim(t0).expect("no sample: refresh");
        let b = clock.claim(t0).expect("no sample: every caller refreshes");
        drop(b);
        a.record(t0, t0 + 4 * MS, 1_700_000_000_000_000);
        assert_eq!(clock.error(), Some(2 * MS));
        assert!(clock.claim(t0 + 4 * MS).is_none(), "a fresh sample");
    }

    #[test]
    fn estimates_the_server_clock_with_half_the_round_trip_as_error() {
        let clock = ServerClock::new();
        let t0 = Instant::now();
        // Sent at t0, answered 10 ms later; the server said 1_000_000.000 s.
        clock
            .claim(t0)
            .unwrap()
            .record(t0, t0 + 10 * MS, 1_000_000_000_000);
        // Midpoint t0 + 5 ms; error 5 ms: the latest the server can read.
        assert_eq!(clock.now_ms(t0 + 5 * MS), Some(1_000_000_005));
        assert_eq!(clock.now_ms(t0 + 1005 * MS), Some(1_000_001_005));
        // An instant before the midpoint counts back.
        assert_eq!(clock.now_ms(t0 + 4 * MS), Some(1_000_000_004));
        // Sub-ms parts round up.
        let exact = ServerClock::new();
        exact.claim(t0).unwrap().record(t0, t0, 1_000_000_000_001);
        assert_eq!(exact.now_ms(t0), Some(1_000_000_001));
    }
    #[test]
    fn one_caller_at_a_time_refreshes_an_old_sample() {
        let clock = ServerClock::new();
        let t0 = Instant::now();
        clock.claim(t0).unwrap().record(t0, t0, 5_000_000);
        assert!(clock.claim(t0 + Duration::from_millis(9_999)).is_none());
        let old = t0 + REFRESH_AFTER;
        let first = clock.claim(old).expect("old: refresh");
        assert!(clock.claim(old).is_none(), "one refresh in flight");
        // A refresh that failed frees the claim.
        drop(first);
        let again = clock.claim(old).expect("freed");
        again.record(old, old + 2 * MS, 15_000_000);
        assert!(clock.claim(old + 2 * MS).is_none(), "refreshed");
        assert_eq!(clock.now_ms(old + MS), Some(15_001));
        // A stale refresh (an older midpoint) does not replace it.
        Claim {
            clock: &clock,
            exclusive: false,
        }
        .record(t0, t0, 1);
        assert_eq!(clock.now_ms(old + MS), Some(15_001));
    }

    /// A fake server whose clock reads `offset_us` + µs since `base` on
    /// the local clock, answering `TIME` at any point of the round trip:
    /// the lower bound never exceeds the server's real clock, at any later
    /// (or earlier) instant, and is within the round trip of it.
    #[test]
    fn the_lower_bound_never_exceeds_the_server_clock() {
        let base = Instant::now();
        let offset_us: u64 = 1_764_300_000_123_456;
        let server_ms = |at: Instant| (offset_us + micros(at - base)) / 1000;
        for rtt_us in [0u64, 1, 999, 1_000, 1_001, 2_345, 40_000, 250_001] {
            // Where in the round trip the server read its clock (µs
            // after the send).
            for answer in [0, rtt_us / 3, rtt_us / 2, rtt_us] {
                let sent = base + Duration::from_micros(7_777);
                let received = sent + Duration::from_micros(rtt_us);
                let answered = sent + Duration::from_micros(answer);
                let clock = ServerClock::new();
                clock.claim(sent).unwrap().record(
                    sent,
                    received,
                    offset_us + micros(answered - base),
                );
                for later_us in [0u64, 1, 500, 999_999, 5_000_000, 9_700_000] {
                    let now = received + Duration::from_micros(later_us);
                    let low = clock.server_now_low_ms(now).expect("fresh sample");
                    let real = server_ms(now);
                    assert!(low <= real, "rtt {rtt_us} answer {answer} +{later_us}");
                    // Within the round trip, the drift allowance and ms
                    // rounding of it.
                    let slack = rtt_us / 1000 + later_us.div_ceil(1000) / 1000 + 2;
                    assert!(real - low <= slack, "{real} - {low} > {slack}");
                    // And never above the upper bound.
                    assert!(low <= clock.now_ms(now).unwrap());
                }
                // An instant before the midpoint (a concurrent refresh).
                let low = clock.server_now_low_ms(sent).unwrap();
                assert!(low <= server_ms(sent));
            }
        }
    }

    #[test]
    fn no_lower_bound_without_a_fresh_sample() {
        let clock = ServerClock::new();
        let t0 = Instant::now();
        assert_eq!(clock.server_now_low_ms(t0), None);
        clock.claim(t0).unwrap().record(t0, t0, 5_000_000_000);
        assert_eq!(clock.server_now_low_ms(t0), Some(5_000_000));
        let almost = t0 + REFRESH_AFTER.saturating_sub(MS);
        assert!(clock.server_now_low_ms(almost).is_some());
        assert!(clock.claim(almost).is_none(), "fresh: no refresh");
        assert_eq!(clock.server_now_low_ms(t0 + REFRESH_AFTER), None);
        assert!(clock.claim(t0 + REFRESH_AFTER).is_some(), "stale: refresh");
    }

    #[test]
    fn time_reply_to_micros() {
        assert_eq!(time_us((1_764_300_000, 123_456)), 1_764_300_000_123_456);
        assert_eq!(time_us((u64::MAX, 1)), u64::MAX);
    }
}
