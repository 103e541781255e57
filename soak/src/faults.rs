//! `--faults`: one `session_testkit::FaultProxy` between each worker
//! process and the store's server, and a schedule that cycles through
//! pauses shorter and longer than the operation timeout, connection
//! resets, lost replies and latency, on one node or on all of them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use session_testkit::{FaultProxy, Network};

use crate::worker::OP_TIMEOUT;

/// A pause shorter than the operation timeout: calls are slow, not failed.
pub const SHORT_PAUSE: Duration = Duration::from_millis(500);
/// A pause longer than the operation timeout: calls time out; held
/// requests reach the server when it ends (up to this late).
pub const LONG_PAUSE: Duration = Duration::from_secs(3);
/// Added latency, per chunk and direction, while it is on.
const LATENCY: Duration = Duration::from_millis(150);
/// Quiet time between two faults.
const QUIET: Duration = Duration::from_millis(1500);

/// The proxies and what was injected.
pub struct Injector {
    proxies: Vec<FaultProxy>,
    /// Per fault: (times injected, of which on all nodes at once).
    injected: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Injector {
    /// Starts one proxy per node in front of the server `url` dials, and
    /// returns the URL each node must use.
    pub async fn start(url: &str, nodes: usize) -> Result<(Self, Vec<String>), String> {
        let upstream = session_testkit::url::upstream_of(url)
            .map_err(|e| format!("--faults: {}: {e}", session_core::redact_url(url)))?;
        let mut proxies = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..nodes {
            let proxy = FaultProxy::start(upstream)
                .await
                .map_err(|e| format!("--faults: starting the proxy: {e}"))?;
            urls.push(
                session_testkit::url::through(url, proxy.addr())
                    .map_err(|e| format!("--faults: {e}"))?,
            );
            proxies.push(proxy);
        }
        Ok((
            Self {
                proxies,
                injected: Mutex::new(BTreeMap::new()),
            },
            urls,
        ))
    }

    fn count(&self, what: String, all: bool) {
        if let Ok(mut m) = self.injected.lock() {
            let e = m.entry(what).or_default();
            e.0 += 1;
            e.1 += u64::from(all);
        }
    }

    /// Injects faults until `until`, then heals everything.
    pub async fn run(&self, until: Instant, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
        let mut step = 0u32;
        while Instant::now() + LONG_PAUSE < until {
            tokio::time::sleep(QUIET).await;
            let targets: Vec<usize> = if rng.random_bool(0.25) {
                (0..self.proxies.len()).collect()
            } else {
                vec![rng.random_range(0..self.proxies.len())]
            };
            let all = targets.len() > 1;
            let each = |f: &dyn Fn(&FaultProxy)| targets.iter().for_each(|&i| f(&self.proxies[i]));
            let what = match step % 5 {
                0 => {
                    each(&|p| p.pause());
                    tokio::time::sleep(SHORT_PAUSE).await;
                    each(&|p| p.resume());
                    format!("pause {SHORT_PAUSE:?} (< op timeout {OP_TIMEOUT:?})")
                }
                1 => {
                    each(&|p| p.pause());
                    tokio::time::sleep(LONG_PAUSE).await;
                    each(&|p| p.resume());
                    format!("pause {LONG_PAUSE:?} (> op timeout {OP_TIMEOUT:?})")
                }
                2 => {
                    each(&|p| p.reset_all());
                    "reset every connection".into()
                }
                3 => {
                    each(&|p| p.drop_replies(3));
                    "lose the next 3 replies".into()
                }
                _ => {
                    each(&|p| p.set_latency(LATENCY));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    each(&|p| p.set_latency(Duration::ZERO));
                    format!("latency {LATENCY:?} for 2s")
                }
            };
            self.count(what, all);
            step += 1;
        }
        self.heal();
    }

    /// Clears every fault on every proxy.
    pub fn heal(&self) {
        for p in &self.proxies {
            if let Err(e) = p.heal() {
                eprintln!("soak: healing the fault proxy: {e}");
            }
        }
    }

    /// What was injected, and the proxies' own counts of resets and lost
    /// replies.
    pub fn summary(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .injected
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, (n, all))| (format!("{k} ({all} of them on all nodes at once)"), *n))
                    .collect()
            })
            .unwrap_or_default();
        let s = self.proxies[..].stats();
        out.push(("proxy: connections accepted".into(), s.accepted));
        out.push(("proxy: connections reset".into(), s.resets));
        out.push((
            "proxy: replies lost after the request was forwarded".into(),
            s.replies_dropped,
        ));
        out
    }
}
