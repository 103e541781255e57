//! The driver: runs the mixed workload against three nodes, checks every
//! reply against the model ([`ops`]), then verifies storage and every node
//! at the end ([`verify`]).

mod ops;
mod verify;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_core::SessionStore;

use crate::faults::{Injector, LONG_PAUSE};
use crate::model::{Kind, Pool, Violations};
use crate::node::Handle;
use crate::protocol::{FinishReport, Outcome, Reply, Request};
use crate::stats::OpStats;
use crate::worker::{self, BOUNDED, RESYNC};

/// TTL of the expiring sessions.
pub const EXPIRING_TTL: Duration = Duration::from_secs(3);
/// Backends every session starts from; `ev` is the one `evict_backend` removes.
const BACKENDS: [&str; 3] = ["alpha", "beta", "gamma"];
const EVICTABLE: &str = "ev";
/// How often one node runs `evict_backend(ev)`.
const EVICT_EVERY: Duration = Duration::from_secs(3);

/// How long after a terminate (or expiry) node `index` may still serve the
/// session: 0 with every-access validation, the bound with bounded
/// staleness, and for push the resync interval plus a generous margin (the
/// resync is a timer; a loaded machine may fire it late).
pub fn grace(index: usize) -> Duration {
    match index % 3 {
        0 => Duration::ZERO,
        1 => BOUNDED,
        _ => RESYNC + Duration::from_secs(9),
    }
}

/// What the driver needs to run.
pub struct Settings {
    /// How long the workload runs.
    pub duration: Duration,
    /// Concurrent workload tasks (each is also one counter writer).
    pub concurrency: usize,
    /// Seed of the workload's choices.
    pub seed: u64,
    /// The fault injector, with `--faults`.
    pub faults: Option<Arc<Injector>>,
}

/// The run's shared state.
pub struct Driver {
    nodes: Vec<Handle>,
    /// A handle on the same storage, not through any fault: the final check.
    checker: Arc<dyn SessionStore>,
    store_ttl: Duration,
    settings: Settings,
    pool: Mutex<Pool>,
    stats: Mutex<BTreeMap<&'static str, OpStats>>,
    /// Outcomes worth counting that are not errors of an operation.
    notes: Mutex<BTreeMap<&'static str, u64>>,
    violations: Mutex<Violations>,
    stop: AtomicBool,
}

/// The result of a run, for the summary.
pub struct Report {
    /// Per operation.
    pub stats: BTreeMap<&'static str, OpStats>,
    /// Counted outcomes.
    pub notes: BTreeMap<&'static str, u64>,
    /// Violations.
    pub violations: Violations,
    /// Per node.
    pub finish: Vec<FinishReport>,
    /// Sessions made (normal, expiring, reserved), terminated, active at the end.
    pub sessions: [usize; 5],
    /// Seconds the workload ran.
    pub elapsed: f64,
    /// Faults injected (with `--faults`).
    pub faults: Vec<(String, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Driver {
    /// A driver over `nodes` (three) and a direct handle on the store.
    pub fn new(
        nodes: Vec<Handle>,
        checker: Arc<dyn SessionStore>,
        settings: Settings,
    ) -> Arc<Self> {
        let store_ttl = checker.config().ttl();
        Arc::new(Self {
            nodes,
            checker,
            store_ttl,
            settings,
            pool: Mutex::new(Pool::default()),
            stats: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(Violations::default()),
            stop: AtomicBool::new(false),
        })
    }

    fn violation(&self, kind: &'static str, detail: String) {
        lock(&self.violations).add(kind, detail);
    }

    /// How late a request that timed out may still reach the server.
    fn late(&self) -> Duration {
        if self.settings.faults.is_some() {
            LONG_PAUSE
        } else {
            Duration::ZERO
        }
    }

    fn note(&self, what: &'static str) {
        *lock(&self.notes).entry(what).or_default() += 1;
    }

    /// Runs `request` on node `n`, records its latency and error kind.
    async fn call(&self, op: &'static str, n: usize, request: Request) -> Reply {
        let reply = self.nodes[n].call(request).await;
        let mut stats = lock(&self.stats);
        let s = stats.entry(op).or_default();
        s.calls += 1;
        s.latency.record(reply.us);
        if let Outcome::Failed { kind, .. } = &reply.outcome {
            *s.errors.entry(kind.clone()).or_default() += 1;
        }
        reply
    }

    /// An error kind no operation may return here.
    fn unexpected(&self, op: &str, id: &str, outcome: &Outcome) {
        self.violation("unexpected reply", format!("{op} {id}: {}", short(outcome)));
    }

    /// Runs the workload for the configured duration, then the final checks.
    pub async fn run(self: &Arc<Self>) -> Report {
        let started = Instant::now();
        let until = started + self.settings.duration;
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..self.settings.concurrency {
            let d = self.clone();
            let seed = self
                .settings
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(k as u64);
            tasks.spawn(async move { d.workload(k, seed, until).await });
        }
        let d = self.clone();
        tasks.spawn(async move { d.evictions(until).await });
        if let Some(inj) = &self.settings.faults {
            let inj = inj.clone();
            let seed = self.settings.seed;
            tasks.spawn(async move { inj.run(until, seed).await });
        }
        while tasks.join_next().await.is_some() {}
        self.stop.store(true, Ordering::SeqCst);
        if let Some(inj) = &self.settings.faults {
            inj.heal();
        }
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!("soak: workload done after {elapsed:.1} s; final checks");
        self.settle().await;
        self.final_reads().await;
        self.final_storage().await;
        let finish = self.finish().await;
        let pool = lock(&self.pool);
        let ephemeral = |k| pool.ephemeral.iter().filter(|s| s.kind == k).count();
        let sessions = [
            pool.active.len() + pool.limbo.len() + pool.terminated.len(),
            ephemeral(Kind::Expiring),
            ephemeral(Kind::Reserved),
            pool.terminated.len(),
            pool.active.len(),
        ];
        drop(pool);
        Report {
            stats: std::mem::take(&mut *lock(&self.stats)),
            notes: std::mem::take(&mut *lock(&self.notes)),
            violations: std::mem::take(&mut *lock(&self.violations)),
            finish,
            sessions,
            elapsed,
            faults: self
                .settings
                .faults
                .as_ref()
                .map(|f| f.summary())
                .unwrap_or_default(),
        }
    }
}

/// An outcome in a line (error detail cut short).
pub fn short(o: &Outcome) -> String {
    match o {
        Outcome::Failed { kind, detail } => {
            let d: String = detail.chars().take(200).collect();
            format!("{kind} ({d})")
        }
        o => serde_json::to_string(o).unwrap_or_default(),
    }
}

/// The policy name of node `n`.
pub fn policy_name(n: usize) -> String {
    match worker::policy(n) {
        session_manager::ValidationPolicy::EveryAccess => "every-access".into(),
        session_manager::ValidationPolicy::BoundedStaleness(d) => format!("bounded {d:?}"),
        _ => "push".into(),
    }
}
