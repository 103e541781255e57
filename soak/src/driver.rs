//! The driver: starts three nodes, runs the mixed workload against them,
//! checks every reply against the model, verifies storage and every node
//! at the end, and prints the summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use session_core::{SessionId, SessionStore, keys};

use crate::faults::{Injector, LONG_PAUSE};
use crate::model::{Kind, Pool, Session, Status, Violations};
use crate::node::Handle;
use crate::protocol::{COUNTER_PREFIX, FinishReport, Outcome, Reply, Request};
use crate::stats::OpStats;
use crate::worker::{self, BOUNDED, RESERVATION_TTL, RESYNC};

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

    /// One workload task: writer `k` of every session's counter `k`.
    async fn workload(&self, k: usize, seed: u64, until: Instant) {
        let mut rng = StdRng::seed_from_u64(seed);
        let target = (self.settings.concurrency * 16).max(128);
        while Instant::now() < until {
            let n = rng.random_range(0..self.nodes.len());
            let roll = rng.random_range(0..100u32);
            let (active, dead, ephemeral) = {
                let p = lock(&self.pool);
                (
                    p.active.len(),
                    p.recent_dead.len(),
                    p.recent_ephemeral.len(),
                )
            };
            match roll {
                _ if active == 0 => self.create(n, &mut rng).await,
                0..8 if active >= target => self.terminate(n, &mut rng).await,
                0..8 => self.create(n, &mut rng).await,
                8..11 => self.create_expiring(n, &mut rng).await,
                11..13 => self.reserve(n).await,
                53..60 if dead + ephemeral > 0 => self.get_dead(n, &mut rng).await,
                60..84 => self.update(n, k, &mut rng).await,
                84..87 if dead > 0 => self.write_dead(n, k, &mut rng).await,
                87..93 => self.notify(n, &mut rng).await,
                93.. if active * 2 >= target => self.terminate(n, &mut rng).await,
                _ => self.get_active(n, &mut rng).await,
            }
        }
    }

    /// Every few seconds one node removes the `ev` backend from every session.
    async fn evictions(&self, until: Instant) {
        let mut i = 0;
        loop {
            tokio::time::sleep(EVICT_EVERY).await;
            if Instant::now() >= until {
                break;
            }
            let n = i % self.nodes.len();
            i += 1;
            let reply = self
                .call(
                    "evict_backend",
                    n,
                    Request::EvictBackend {
                        workload: EVICTABLE.into(),
                    },
                )
                .await;
            match &reply.outcome {
                Outcome::Evicted { failed, .. } => {
                    for _ in 0..*failed {
                        self.note(
                            "evict_backend: session not updated (storage error or conflicts)",
                        );
                    }
                }
                Outcome::Failed { kind, .. } if kind == "Unavailable" => {}
                o => self.unexpected("evict_backend", EVICTABLE, o),
            }
        }
    }

    fn pick_active(&self, rng: &mut StdRng) -> Option<Arc<Session>> {
        let p = lock(&self.pool);
        if p.active.is_empty() {
            return None;
        }
        // A third of the picks go to a few hot sessions: CAS conflicts and
        // single-flight restores under contention.
        let i = if rng.random_bool(0.3) {
            rng.random_range(0..p.active.len().min(8))
        } else {
            rng.random_range(0..p.active.len())
        };
        Some(p.active[i].clone())
    }

    fn backends(rng: &mut StdRng) -> Vec<String> {
        let mut b: Vec<String> = BACKENDS.iter().map(|s| (*s).to_owned()).collect();
        if rng.random_bool(0.5) {
            b.push(EVICTABLE.into());
        }
        b
    }

    async fn create(&self, n: usize, rng: &mut StdRng) {
        let t0 = Instant::now();
        let backends = Self::backends(rng);
        let reply = self.call("create", n, Request::Create { backends }).await;
        match reply.outcome {
            Outcome::Created { id } => {
                let s = Session::new(
                    id,
                    Kind::Normal,
                    t0 + self.store_ttl,
                    self.settings.concurrency,
                );
                lock(&self.pool).active.push(s);
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                self.note("create: outcome unknown (Unavailable)");
            }
            o => self.unexpected("create", "-", &o),
        }
    }

    async fn create_expiring(&self, n: usize, _rng: &mut StdRng) {
        // Never `ev`: evict_backend writes, and a write slides by the store TTL.
        let backends: Vec<String> = BACKENDS.iter().map(|s| (*s).to_owned()).collect();
        let ttl_ms = EXPIRING_TTL.as_millis() as u64;
        let reply = self
            .call(
                "create (short TTL)",
                n,
                Request::CreateExpiring { backends, ttl_ms },
            )
            .await;
        match reply.outcome {
            Outcome::Created { id } => {
                let s = Session::new(id, Kind::Expiring, Instant::now() + EXPIRING_TTL, 0);
                lock(&self.pool).add_ephemeral(s);
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                self.note("create (short TTL): outcome unknown (Unavailable)");
            }
            o => self.unexpected("create (short TTL)", "-", &o),
        }
    }

    async fn reserve(&self, n: usize) {
        let reply = self.call("reserve", n, Request::Reserve).await;
        match reply.outcome {
            Outcome::Created { id } => {
                let s = Session::new(id, Kind::Reserved, Instant::now() + RESERVATION_TTL, 0);
                lock(&self.pool).add_ephemeral(s);
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                self.note("reserve: outcome unknown (Unavailable)");
            }
            o => self.unexpected("reserve", "-", &o),
        }
    }

    async fn get_active(&self, n: usize, rng: &mut StdRng) {
        if let Some(s) = self.pick_active(rng) {
            self.get("get", n, &s).await;
        }
    }

    async fn get_dead(&self, n: usize, rng: &mut StdRng) {
        let s = {
            let p = lock(&self.pool);
            let (a, b) = (p.recent_dead.len(), p.recent_ephemeral.len());
            let i = rng.random_range(0..a + b);
            if i < a {
                p.recent_dead[i].clone()
            } else {
                p.recent_ephemeral[i - a].clone()
            }
        };
        self.get("get (ended)", n, &s).await;
    }

    /// `get` on node `n` and every check a read allows.
    async fn get(&self, op: &'static str, n: usize, s: &Session) {
        let t0 = Instant::now();
        // With every-access validation a read sees every increment
        // acknowledged before it started.
        let floor: Vec<u64> = if n.is_multiple_of(3) {
            s.state().counters.iter().map(|c| c.acked).collect()
        } else {
            Vec::new()
        };
        let reply = self.call(op, n, Request::Get { id: s.id.clone() }).await;
        let now = Instant::now();
        let mut st = s.state();
        match &reply.outcome {
            Outcome::Got { counters } => {
                if s.kind == Kind::Reserved {
                    self.violation("placeholder served", format!("node {n}, {}", s.id));
                }
                if let Status::Terminated(at) = st.status
                    && t0 > at + grace(n)
                {
                    self.violation(
                        "resurrection",
                        format!(
                            "node {n} served {} {:?} after its terminate was acknowledged",
                            s.id,
                            t0 - at
                        ),
                    );
                }
                if s.kind == Kind::Expiring {
                    if t0 > st.deadline + EXPIRING_TTL + grace(n) {
                        self.violation(
                            "resurrection",
                            format!(
                                "node {n} served {} {:?} after it expired",
                                s.id,
                                t0 - st.deadline
                            ),
                        );
                    }
                    st.deadline = st.deadline.max(now + EXPIRING_TTL);
                }
                let mut seen = vec![0u64; st.counters.len()];
                for &(w, v) in counters {
                    match seen.get_mut(w) {
                        Some(slot) => *slot = v,
                        None if st.counters.is_empty() => {}
                        None => self.violation(
                            "corrupt counter",
                            format!("node {n}, {}: writer {w} does not exist", s.id),
                        ),
                    }
                }
                for (w, (c, v)) in st.counters.iter().zip(&seen).enumerate() {
                    if *v > c.ceiling() {
                        self.violation(
                            "double-applied update",
                            format!(
                                "node {n} read {}'s counter {w} = {v}, at most {} applied",
                                s.id,
                                c.ceiling()
                            ),
                        );
                    }
                    if floor.get(w).is_some_and(|f| v < f) {
                        self.violation(
                            "lost update",
                            format!(
                                "every-access node read {}'s counter {w} = {v} after {} were acknowledged",
                                s.id, floor[w]
                            ),
                        );
                    }
                }
            }
            Outcome::Failed { kind, .. } if kind == "NotFound" => {
                if s.kind == Kind::Normal && st.status == Status::Active && now < st.deadline {
                    self.violation(
                        "lost session",
                        format!("node {n}: get {} not found; it was never terminated", s.id),
                    );
                }
            }
            Outcome::Failed { kind, .. } if kind == "NotReady" => {
                if s.kind == Kind::Reserved {
                    st.deadline = st.deadline.max(now + RESERVATION_TTL);
                } else {
                    self.violation(
                        "active session not ready",
                        format!("node {n}: get {}", s.id),
                    );
                }
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                // A read that timed out may still slide the session (a held
                // request reaches the server when a pause ends).
                let ttl = match s.kind {
                    Kind::Expiring => EXPIRING_TTL,
                    Kind::Reserved => RESERVATION_TTL,
                    Kind::Normal => Duration::ZERO,
                };
                st.deadline = st.deadline.max(now + ttl + self.late());
            }
            o => self.unexpected("get", &s.id, o),
        }
    }

    /// Writer `k` increments its counter in an active session (sometimes
    /// re-adding a backend in the same write).
    async fn update(&self, n: usize, k: usize, rng: &mut StdRng) {
        let Some(s) = self.pick_active(rng) else {
            return;
        };
        let add_backend = rng.random_bool(0.2).then(|| {
            let all = [BACKENDS[0], BACKENDS[1], BACKENDS[2], EVICTABLE];
            all[rng.random_range(0..all.len())].to_owned()
        });
        let t0 = Instant::now();
        let before = {
            let mut st = s.state();
            let Some(c) = st.counters.get_mut(k) else {
                return;
            };
            c.inflight = true;
            *c
        };
        let request = Request::Update {
            id: s.id.clone(),
            writer: k,
            add_backend,
        };
        let reply = self.call("update", n, request).await;
        let now = Instant::now();
        let mut st = s.state();
        let status = st.status;
        let store_ttl = self.store_ttl;
        let Some(c) = st.counters.get_mut(k) else {
            return; // terminated meanwhile: counters dropped
        };
        c.inflight = false;
        match &reply.outcome {
            Outcome::Updated { value } => {
                if *value <= before.acked {
                    self.violation(
                        "lost update",
                        format!(
                            "node {n}: {}'s counter {k} = {value} after increment {}",
                            s.id,
                            before.acked + 1
                        ),
                    );
                }
                if *value > before.acked + before.unknown + 1 {
                    self.violation(
                        "double-applied update",
                        format!(
                            "node {n}: {}'s counter {k} = {value}, at most {} applied",
                            s.id,
                            before.acked + before.unknown + 1
                        ),
                    );
                }
                // The stored value is now known: earlier unknown outcomes
                // are resolved (a late write of theirs would fail its CAS).
                c.acked = *value;
                c.unknown = 0;
                st.deadline = st.deadline.max(t0 + store_ttl);
                if let Status::Terminated(at) = status
                    && t0 > at
                {
                    self.violation(
                        "write after terminate",
                        format!("node {n}: update of {} applied", s.id),
                    );
                }
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                c.unknown += 1;
                self.note("update: outcome unknown (Unavailable)");
            }
            Outcome::Failed { kind, .. } if kind == "ConflictBudgetExhausted" => {}
            Outcome::Failed { kind, .. } if kind == "NotFound" => {
                if status == Status::Active && now < st.deadline {
                    self.violation(
                        "lost session",
                        format!(
                            "node {n}: update {} not found; it was never terminated",
                            s.id
                        ),
                    );
                }
            }
            o => self.unexpected("update", &s.id, o),
        }
    }

    /// An update or backend expiry on a terminated session: must not apply.
    async fn write_dead(&self, n: usize, k: usize, rng: &mut StdRng) {
        let s = {
            let p = lock(&self.pool);
            if p.recent_dead.is_empty() {
                return;
            }
            p.recent_dead[rng.random_range(0..p.recent_dead.len())].clone()
        };
        let (op, request) = if rng.random_bool(0.5) {
            (
                "update (terminated)",
                Request::Update {
                    id: s.id.clone(),
                    writer: k,
                    add_backend: None,
                },
            )
        } else {
            (
                "notify (terminated)",
                Request::Notify {
                    id: s.id.clone(),
                    workload: BACKENDS[rng.random_range(0..BACKENDS.len())].into(),
                },
            )
        };
        let reply = self.call(op, n, request).await;
        match &reply.outcome {
            Outcome::Failed { kind, .. } if kind == "NotFound" || kind == "Unavailable" => {}
            Outcome::Notified { result } if result == "gone" => {}
            o => self.violation(
                "write after terminate",
                format!("node {n}: {op} of terminated {}: {}", s.id, short(o)),
            ),
        }
    }

    async fn notify(&self, n: usize, rng: &mut StdRng) {
        let Some(s) = self.pick_active(rng) else {
            return;
        };
        let workload = BACKENDS[rng.random_range(0..BACKENDS.len())].to_owned();
        let t0 = Instant::now();
        let reply = self
            .call(
                "notify_backend_expired",
                n,
                Request::Notify {
                    id: s.id.clone(),
                    workload,
                },
            )
            .await;
        let now = Instant::now();
        let mut st = s.state();
        match &reply.outcome {
            Outcome::Notified { result } if result == "removed" => {
                st.deadline = st.deadline.max(t0 + self.store_ttl);
            }
            Outcome::Notified { result } if result == "not_present" => {}
            Outcome::Notified { result } if result == "gone" => {
                if st.status == Status::Active && now < st.deadline {
                    self.violation(
                        "lost session",
                        format!(
                            "node {n}: notify on {}: gone; it was never terminated",
                            s.id
                        ),
                    );
                }
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                self.note("notify_backend_expired: outcome unknown (Unavailable)");
            }
            Outcome::Failed { kind, .. } if kind == "ConflictBudgetExhausted" => {}
            o => self.unexpected("notify_backend_expired", &s.id, o),
        }
    }

    async fn terminate(&self, n: usize, rng: &mut StdRng) {
        let (s, was) = {
            let mut p = lock(&self.pool);
            if !p.limbo.is_empty() && rng.random_bool(0.5) {
                let i = rng.random_range(0..p.limbo.len());
                (p.limbo.swap_remove(i), Status::Limbo)
            } else if p.active.is_empty() {
                return;
            } else {
                let i = rng.random_range(0..p.active.len());
                (p.active.swap_remove(i), Status::Active)
            }
        };
        s.state().status = Status::Terminating;
        let reply = self
            .call("terminate", n, Request::Terminate { id: s.id.clone() })
            .await;
        let now = Instant::now();
        let mut st = s.state();
        match &reply.outcome {
            Outcome::Terminated { deleted } => {
                if !deleted && was == Status::Active && now < st.deadline {
                    if self.settings.faults.is_some() {
                        // A retried delete after a lost reply finds nothing.
                        self.note("terminate: deleted nothing (after a fault)");
                    } else {
                        self.violation(
                            "lost session",
                            format!("node {n}: terminate of live {} deleted nothing", s.id),
                        );
                    }
                }
                st.status = Status::Terminated(now);
                st.counters = Vec::new();
                drop(st);
                lock(&self.pool).bury(s.clone());
            }
            Outcome::Failed { kind, .. } if kind == "Unavailable" => {
                st.status = Status::Limbo;
                drop(st);
                self.note("terminate: outcome unknown (Unavailable)");
                lock(&self.pool).limbo.push(s.clone());
            }
            o => {
                let o = o.clone();
                st.status = Status::Limbo;
                drop(st);
                self.unexpected("terminate", &s.id, &o);
                lock(&self.pool).limbo.push(s.clone());
            }
        }
    }

    /// Waits until every terminated session is past every node's grace and
    /// every expiring / reserved one is past its deadline plus its TTL.
    async fn settle(&self) {
        let until = {
            let p = lock(&self.pool);
            let mut until = Instant::now();
            let push = grace(2);
            for s in &p.terminated {
                if let Status::Terminated(at) = s.state().status {
                    until = until.max(at + push);
                }
            }
            for s in &p.ephemeral {
                let ttl = if s.kind == Kind::Expiring {
                    EXPIRING_TTL
                } else {
                    RESERVATION_TTL
                };
                until = until.max(s.state().deadline + ttl + push);
            }
            until
        };
        let wait = until.saturating_duration_since(Instant::now());
        eprintln!(
            "soak: waiting {:.1} s for the last terminates and expiries to pass every node's bound",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }

    /// Every node reads a sample of terminated, expired and abandoned
    /// sessions: none may come back.
    async fn final_reads(&self) {
        let sample: Vec<Arc<Session>> = {
            let p = lock(&self.pool);
            let step = (p.terminated.len() / 150).max(1);
            let mut v: Vec<_> = p.terminated.iter().step_by(step).cloned().collect();
            let step = (p.ephemeral.len() / 150).max(1);
            v.extend(p.ephemeral.iter().step_by(step).cloned());
            v
        };
        for s in &sample {
            for n in 0..self.nodes.len() {
                let mut tries = 0;
                loop {
                    let reply = self
                        .call("get (final)", n, Request::Get { id: s.id.clone() })
                        .await;
                    match &reply.outcome {
                        Outcome::Failed { kind, .. } if kind == "NotFound" => break,
                        Outcome::Failed { kind, .. } if kind == "Unavailable" && tries < 5 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        o => {
                            self.violation(
                                "resurrection",
                                format!(
                                    "node {n}: final get of {:?} {}: {}",
                                    s.kind,
                                    s.id,
                                    short(o)
                                ),
                            );
                            break;
                        }
                    }
                }
            }
        }
        self.note_n(
            "final reads (sessions x nodes)",
            sample.len() * self.nodes.len(),
        );
    }

    fn note_n(&self, what: &'static str, n: usize) {
        *lock(&self.notes).entry(what).or_default() += n as u64;
    }

    /// Storage at the end, read directly: every live session with exactly
    /// the acknowledged increments (plus at most its unknown ones), every
    /// terminated, expired and abandoned session absent.
    async fn final_storage(self: &Arc<Self>) {
        const WORKERS: usize = 16;
        let all: Vec<Arc<Session>> = {
            let p = lock(&self.pool);
            p.active
                .iter()
                .chain(&p.limbo)
                .chain(&p.terminated)
                .chain(&p.ephemeral)
                .cloned()
                .collect()
        };
        let all = Arc::new(all);
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WORKERS {
            let d = self.clone();
            let all = all.clone();
            tasks.spawn(async move {
                for s in all.iter().skip(w).step_by(WORKERS) {
                    d.check_stored(s).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        self.note_n("sessions verified in storage", all.len());
    }

    async fn check_stored(&self, s: &Session) {
        let Ok(id) = SessionId::parse(&s.id) else {
            self.violation("bad id", s.id.clone());
            return;
        };
        let mut tries = 0;
        let record = loop {
            match self.checker.peek(&id).await {
                Ok(r) => break r,
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!(
                        "soak: final peek of {id}: {}; retrying",
                        session_core::display_chain(&e)
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    self.violation(
                        "storage unreadable at the end",
                        format!("{id}: {}", session_core::display_chain(&e)),
                    );
                    return;
                }
            }
        };
        let st = s.state();
        match (st.status, s.kind, record) {
            (Status::Active, Kind::Normal, None) if Instant::now() < st.deadline => {
                self.violation(
                    "lost session",
                    format!("{id} absent from storage at the end"),
                );
            }
            (Status::Active | Status::Limbo, Kind::Normal, Some(rec)) => {
                if !rec.metadata.contains_key(keys::BACKEND_IDS) {
                    self.violation("corrupt session", format!("{id} lost its backend list"));
                }
                for (w, c) in st.counters.iter().enumerate() {
                    let v: u64 = rec
                        .metadata
                        .get(&format!("{COUNTER_PREFIX}{w}"))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if v < c.acked {
                        self.violation(
                            "lost update",
                            format!("{id}: stored counter {w} = {v}, {} acknowledged", c.acked),
                        );
                    }
                    if v > c.acked + c.unknown {
                        self.violation(
                            "double-applied update",
                            format!(
                                "{id}: stored counter {w} = {v}, {} acknowledged + {} unknown",
                                c.acked, c.unknown
                            ),
                        );
                    }
                }
            }
            (Status::Terminated(_), _, Some(_)) => {
                self.violation(
                    "resurrection",
                    format!("terminated {id} is in storage at the end"),
                );
            }
            (_, Kind::Expiring | Kind::Reserved, Some(_)) => {
                self.violation(
                    "resurrection",
                    format!("{:?} {id} is in storage after its TTL", s.kind),
                );
            }
            _ => {}
        }
    }

    /// Shuts every node down and collects builds, closes and RSS.
    async fn finish(&self) -> Vec<FinishReport> {
        let mut out = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let report = match node {
                Handle::Local(node) => node.finish().await,
                Handle::Remote(_) => match node.call(Request::Finish).await.outcome {
                    Outcome::Finished(r) => r,
                    o => {
                        self.violation("node lost", format!("node {n}: finish: {}", short(&o)));
                        FinishReport::default()
                    }
                },
            };
            node.reap().await;
            if !report.shutdown_complete {
                self.violation(
                    "unclosed sessions",
                    format!("node {n}: shutdown incomplete"),
                );
            }
            if report.builds != report.closes {
                self.violation(
                    "builds != closes",
                    format!(
                        "node {n}: {} builds, {} closes",
                        report.builds, report.closes
                    ),
                );
            }
            out.push(report);
        }
        out
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
