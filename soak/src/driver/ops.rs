//! The workload: each task's choice of operation, and the checks every
//! reply gets against the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{BACKENDS, Driver, EVICT_EVERY, EVICTABLE, EXPIRING_TTL, grace, lock, short};
use crate::model::{Kind, Session, Status};
use crate::protocol::{Outcome, Request};
use crate::worker::RESERVATION_TTL;

impl Driver {
    /// One workload task: writer `k` of every session's counter `k`.
    pub(super) async fn workload(&self, k: usize, seed: u64, until: Instant) {
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
    pub(super) async fn evictions(&self, until: Instant) {
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

    pub(super) fn pick_active(&self, rng: &mut StdRng) -> Option<Arc<Session>> {
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

    pub(super) fn backends(rng: &mut StdRng) -> Vec<String> {
        let mut b: Vec<String> = BACKENDS.iter().map(|s| (*s).to_owned()).collect();
        if rng.random_bool(0.5) {
            b.push(EVICTABLE.into());
        }
        b
    }

    pub(super) async fn create(&self, n: usize, rng: &mut StdRng) {
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

    pub(super) async fn create_expiring(&self, n: usize, _rng: &mut StdRng) {
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

    pub(super) async fn reserve(&self, n: usize) {
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

    pub(super) async fn get_active(&self, n: usize, rng: &mut StdRng) {
        if let Some(s) = self.pick_active(rng) {
            self.get("get", n, &s).await;
        }
    }

    pub(super) async fn get_dead(&self, n: usize, rng: &mut StdRng) {
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
    pub(super) async fn get(&self, op: &'static str, n: usize, s: &Session) {
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
    pub(super) async fn update(&self, n: usize, k: usize, rng: &mut StdRng) {
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
    pub(super) async fn write_dead(&self, n: usize, k: usize, rng: &mut StdRng) {
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

    pub(super) async fn notify(&self, n: usize, rng: &mut StdRng) {
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

    pub(super) async fn terminate(&self, n: usize, rng: &mut StdRng) {
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
}
