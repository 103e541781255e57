//! The closer: the one place a manager runs [`SessionFactory::close`].
//!
//! Every live session that leaves the cache (eviction, terminate,
//! replacement, a discarded or abandoned build, shutdown, the last handle
//! dropped) is sent here over an unbounded channel; sending is synchronous,
//! so a session is handed over even by a future that is dropped right
//! after. Each close runs in its own task with panics caught and counted,
//! so a slow or panicking close stalls nothing else.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Notify, mpsc};

use crate::factory::SessionFactory;
use crate::metrics::{self as m, Cause, inc};

/// The sending side: cheap to clone.
pub(crate) struct Closer<S> {
    tx: mpsc::UnboundedSender<(S, Cause)>,
    state: Arc<State>,
}

impl<S> Clone for Closer<S> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            state: self.state.clone(),
        }
    }
}

#[derive(Default)]
struct State {
    /// Sent and not yet finished closing.
    pending: AtomicUsize,
    idle: Notify,
}

impl State {
    fn finished(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl<S: Send + 'static> Closer<S> {
    /// Starts the closer task on the current runtime. It ends once every
    /// sender is gone and every queued session is closed.
    pub fn start<F: SessionFactory<Session = S>>(factory: Arc<F>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(S, Cause)>();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Some((session, _cause)) = rx.recv().await {
                let (factory, st) = (factory.clone(), st.clone());
                tokio::spawn(async move {
                    let closed = AssertUnwindSafe(factory.close(session))
                        .catch_unwind()
                        .await;
                    if closed.is_err() {
                        inc(m::CLOSE_PANICS);
                        tracing::error!(
                            "SessionFactory::close panicked; the session counts as closed"
                        );
                    }
                    inc(m::CLOSES);
                    st.finished();
                });
            }
        });
        Self { tx, state }
    }

    /// Hands `session` over to be closed. Never blocks, never runs user code.
    pub fn close(&self, session: S, cause: Cause) {
        metrics::counter!(m::EVICTIONS, "cause" => cause.as_str()).increment(1);
        self.state.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send((session, cause)).is_err() {
            // The runtime is shutting down and took the closer task with it.
            self.state.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                "the closer is gone (runtime shut down): a session was dropped unclosed"
            );
        }
    }

    pub fn close_all(&self, sessions: impl IntoIterator<Item = (S, Cause)>) {
        for (s, cause) in sessions {
            self.close(s, cause);
        }
    }

    /// Sessions handed over and not yet closed.
    pub fn pending(&self) -> usize {
        self.state.pending.load(Ordering::SeqCst)
    }

    /// Waits until nothing is pending, or `timeout` passed. Returns how
    /// many closes are still pending.
    pub async fn drained(&self, timeout: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.state.idle.notified();
                if self.pending() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.pending()
    }
}

/// A built session not (yet) owned by the cache. If it is dropped without
/// being [`keep`](Self::keep)-ed (the future holding it was cancelled, a
/// later step failed or panicked) it goes to the closer.
pub(crate) struct Pending<S: Send + 'static> {
    session: Option<S>,
    closer: Closer<S>,
    cause: Cause,
}

impl<S: Clone + Send + 'static> Pending<S> {
    pub fn new(session: S, closer: &Closer<S>) -> Self {
        Self {
            session: Some(session),
            closer: closer.clone(),
            cause: Cause::Discarded,
        }
    }

    /// The session (a clone; this guard still owns the close).
    pub fn session(&self) -> S {
        self.session.clone().expect("present until kept or dropped")
    }

    /// The cache took ownership: no close from here.
    pub fn keep(mut self) {
        self.session = None;
    }
}

impl<S: Send + 'static> Drop for Pending<S> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.closer.close(s, self.cause);
        }
    }
}
