//! The end of a run: wait out every node's bound, read terminated and
//! expired sessions on every node, check storage directly, shut the nodes
//! down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{SessionId, keys};

use super::{Driver, EXPIRING_TTL, grace, lock, short};
use crate::model::{Kind, Session, Status};
use crate::node::Handle;
use crate::protocol::{COUNTER_PREFIX, FinishReport, Outcome, Request};
use crate::worker::RESERVATION_TTL;

impl Driver {
    /// Waits until every terminated session is past every node's grace and
    /// every expiring / reserved one is past its deadline plus its TTL.
    pub(super) async fn settle(&self) {
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
    pub(super) async fn final_reads(&self) {
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

    pub(super) fn note_n(&self, what: &'static str, n: usize) {
        *lock(&self.notes).entry(what).or_default() += n as u64;
    }

    /// Storage at the end, read directly: every live session with exactly
    /// the acknowledged increments (plus at most its unknown ones), every
    /// terminated, expired and abandoned session absent.
    pub(super) async fn final_storage(self: &Arc<Self>) {
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

    pub(super) async fn check_stored(&self, s: &Session) {
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
    pub(super) async fn finish(&self) -> Vec<FinishReport> {
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
