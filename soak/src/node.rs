//! How the driver reaches a node: directly (memory, one process) or as a
//! child process of this binary speaking JSON lines.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{Envelope, Outcome, Reply, Request};
use crate::worker;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// A node the driver sends operations to.
pub enum Handle {
    /// A node in this process.
    Local(Arc<worker::Node>),
    /// A worker process.
    Remote(Box<Remote>),
}

/// A worker process and its pipes.
pub struct Remote {
    child: Mutex<Option<Child>>,
    requests: mpsc::UnboundedSender<Envelope>,
    pending: Pending,
    /// Set when the worker's stdout closed (before its waiters are dropped).
    dead: Arc<AtomicBool>,
    seq: AtomicU64,
}

impl Handle {
    /// Runs `request` on the node. A worker that died answers `Failed`
    /// with kind `WorkerLost`.
    pub async fn call(&self, request: Request) -> Reply {
        match self {
            Self::Local(node) => node.run(1, request).await,
            Self::Remote(r) => r.call(request).await,
        }
    }

    /// Waits for the worker process to exit (after `Finish`).
    pub async fn reap(&self) {
        if let Self::Remote(r) = self {
            let child = r.child.lock().ok().and_then(|mut c| c.take());
            if let Some(mut child) = child
                && tokio::time::timeout(Duration::from_secs(30), child.wait())
                    .await
                    .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

impl Remote {
    /// Spawns `session-soak worker --node INDEX --store URL` and waits until
    /// it has connected (at most `ready_within`).
    pub async fn spawn(
        index: usize,
        url: &str,
        sabotage: Option<worker::Sabotage>,
        ready_within: Duration,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["worker", "--node", &index.to_string(), "--store", url]);
        if let Some(s) = sabotage {
            cmd.args(["--sabotage", s.name()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning worker {index}: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = child.stdout.take().ok_or("worker stdout")?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (ready_tx, ready_rx) = oneshot::channel();
        pending.lock().map_err(|_| "poisoned")?.insert(0, ready_tx);
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(env) = rx.recv().await {
                let Ok(mut line) = serde_json::to_vec(&env) else {
                    continue;
                };
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        let replies = pending.clone();
        let dead = Arc::new(AtomicBool::new(false));
        let gone = dead.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Reply>(&line) {
                    Ok(reply) => {
                        let waiter = replies.lock().ok().and_then(|mut p| p.remove(&reply.seq));
                        if let Some(w) = waiter {
                            let _ = w.send(reply);
                        }
                    }
                    Err(e) => eprintln!("soak: worker {index} wrote {line:?}: {e}"),
                }
            }
            // The worker is gone: every waiter learns it (dropped senders).
            gone.store(true, Ordering::SeqCst);
            if let Ok(mut p) = replies.lock() {
                p.clear();
            }
        });
        match tokio::time::timeout(ready_within, ready_rx).await {
            Ok(Ok(Reply {
                outcome: Outcome::Ready,
                ..
            })) => {}
            Ok(_) => return Err(format!("worker {index} exited before it was ready")),
            Err(_) => return Err(format!("worker {index} not ready within {ready_within:?}")),
        }
        Ok(Self {
            child: Mutex::new(Some(child)),
            requests: tx,
            pending,
            dead,
            seq: AtomicU64::new(1),
        })
    }

    async fn call(&self, request: Request) -> Reply {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(seq, tx);
        }
        let lost = |what: &str| Reply {
            seq,
            us: 0,
            outcome: Outcome::Failed {
                kind: "WorkerLost".into(),
                detail: what.into(),
            },
        };
        if self.dead.load(Ordering::SeqCst) {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&seq);
            }
            return lost("the worker exited");
        }
        if self.requests.send(Envelope { seq, request }).is_err() {
            return lost("the worker's stdin is closed");
        }
        rx.await.unwrap_or_else(|_| lost("the worker exited"))
    }
}
