//! [`FaultProxy`]: a loopback TCP proxy whose faults are switched at run
//! time, for tests that must see a store behave under a network that
//! stalls, resets or loses replies rather than one that simply refuses.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The faults every connection task watches.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Blackhole: nothing is forwarded either way, nothing is closed.
    paused: bool,
    /// Added before each chunk is forwarded, in each direction.
    latency: Duration,
    /// Bumped by `reset_all`: connections opened before it are reset.
    reset_epoch: u64,
    /// The proxy was dropped: connections end.
    shutdown: bool,
}

/// Counters for assertions (monotonic, except `live`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Connections currently open (accepted, not yet ended).
    pub live: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_up: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_down: u64,
    /// Client connections ended with a reset (by `reset_all` or after a
    /// dropped reply).
    pub resets: u64,
    /// Requests forwarded whose reply was discarded (`drop_replies`).
    pub replies_dropped: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    live: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    resets: AtomicU64,
    replies_dropped: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Requests whose reply is still to be dropped.
    drop_budget: AtomicU64,
    /// Only requests containing these bytes count (all if empty).
    drop_needle: Mutex<Vec<u8>>,
    counters: Counters,
}

impl Shared {
    /// Takes one unit of the drop budget if any is left and `request`
    /// matches the needle.
    fn take_drop(&self, request: &[u8]) -> bool {
        if self.drop_budget.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let needle = self
            .drop_needle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !needle.is_empty() && !request.windows(needle.len()).any(|w| w == &needle[..]) {
            return false;
        }
        self.drop_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// A fault-injecting TCP proxy on `127.0.0.1` in front of one loopback
/// upstream, for tests only.
///
/// Each accepted connection dials the upstream and forwards bytes both
/// ways. Faults can be switched at any time and apply to live connections
/// at once:
///
/// - [`set_latency`](Self::set_latency): every chunk waits this long
///   before it is forwarded, in each direction;
/// - [`pause`](Self::pause) / [`resume`](Self::resume): a blackhole. Bytes
///   are accepted but neither forwarded nor answered and nothing is closed
///   (new connections are accepted and wait too), as with a stalled server
///   or a dead network path; on resume everything held flows on;
/// - [`reset_all`](Self::reset_all): every live client connection is reset
///   (`RST`, via a zero `SO_LINGER`);
/// - [`drop_replies`](Self::drop_replies)`(n)`: the next `n` requests (a
///   request is one read from a client) are forwarded to the upstream, but
///   what comes back is discarded and that client connection is then
///   reset: the request was applied, its reply was lost. Later bytes from
///   that client are not forwarded, so the request is applied at most once;
/// - [`refuse`](Self::refuse) / [`admit`](Self::admit): the listening
///   socket is closed (connections are refused) and reopened on the same
///   port.
///
/// [`heal`](Self::heal) clears every fault. Dropping the proxy closes it
/// and ends its connections. It runs on the tokio runtime it was started
/// on.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("faults", &*self.shared.faults.borrow())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on a free `127.0.0.1` port and forwards to `upstream`, which
    /// must be a loopback address (this is test code: it never proxies to
    /// another host).
    // Async although nothing is awaited: it spawns onto the current tokio
    // runtime, which only exists in an async context.
    #[allow(clippy::unused_async)]
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("FaultProxy only forwards to loopback addresses, not {upstream}"),
            ));
        }
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: watch::Sender::new(Faults::default()),
            drop_budget: AtomicU64::new(0),
            drop_needle: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            accept: Mutex::new(Some(task)),
        })
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Delays every chunk by `latency` before forwarding it, in each
    /// direction (`Duration::ZERO` turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// Starts the blackhole: nothing is forwarded or closed until
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.shared.faults.send_modify(|f| f.paused = true);
    }

    /// Ends the blackhole; held bytes are forwarded.
    pub fn resume(&self) {
        self.shared.faults.send_modify(|f| f.paused = false);
    }

    /// Resets every live client connection (`RST`); the upstream side is
    /// closed. New connections are not affected.
    pub fn reset_all(&self) {
        self.shared.faults.send_modify(|f| f.reset_epoch += 1);
    }

    /// Loses the replies of the next `n` requests (replacing any budget
    /// left): each is forwarded, its reply discarded, and its client
    /// connection reset once the upstream has answered.
    pub fn drop_replies(&self, n: u64) {
        self.drop_replies_to(n, Vec::new());
    }

    /// Like [`drop_replies`](Self::drop_replies), counting only requests
    /// whose bytes contain `needle` (a session id, say): other requests
    /// (handshakes, pings, a driver's own `Sync`) pass untouched.
    pub fn drop_replies_to(&self, n: u64, needle: impl Into<Vec<u8>>) {
        *self
            .shared
            .drop_needle
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = needle.into();
        self.shared.drop_budget.store(n, Ordering::SeqCst);
    }

    /// Requests whose reply is still to be dropped.
    pub fn replies_to_drop(&self) -> u64 {
        self.shared.drop_budget.load(Ordering::SeqCst)
    }

    /// Closes the listening socket: new connections are refused until
    /// [`admit`](Self::admit). Live connections are not touched, except
    /// those the kernel completed but the proxy had not accepted yet
    /// (they are reset with the listener).
    pub async fn refuse(&self) {
        let task = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            // The listener is closed once the aborted task is dropped.
            let _ = task.await;
        }
    }

    /// Reopens the listening socket on the same port (a no-op unless
    /// refusing). Fails if the port was taken in the meantime.
    pub fn admit(&self) -> io::Result<()> {
        let mut accept = self.accept.lock().unwrap_or_else(PoisonError::into_inner);
        if accept.is_none() {
            let listener = bind(self.addr)?;
            *accept = Some(tokio::spawn(accept_loop(listener, self.shared.clone())));
        }
        Ok(())
    }

    /// Clears every fault: no latency, no blackhole, no replies to drop,
    /// connections admitted.
    pub fn heal(&self) -> io::Result<()> {
        self.drop_replies(0);
        self.shared.faults.send_modify(|f| {
            f.paused = false;
            f.latency = Duration::ZERO;
        });
        self.admit()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            accepted: c.accepted.load(Ordering::SeqCst),
            live: c.live.load(Ordering::SeqCst),
            bytes_up: c.bytes_up.load(Ordering::SeqCst),
            bytes_down: c.bytes_down.load(Ordering::SeqCst),
            resets: c.resets.load(Ordering::SeqCst),
            replies_dropped: c.replies_dropped.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self
            .accept
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.shared.faults.send_modify(|f| f.shutdown = true);
    }
}

/// A listener with `SO_REUSEADDR`, so [`FaultProxy::admit`] can reopen a
/// port that still has connections (or `TIME_WAIT` entries) on it.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
                shared.counters.live.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                // A reset from now on applies to this connection.
                let epoch = shared.faults.borrow().reset_epoch;
                tokio::spawn(async move {
                    serve(client, &shared, epoch).await;
                    shared.counters.live.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // Out of file descriptors and the like: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A side closed or failed, or the proxy shut down: close normally.
    Closed,
    /// A fault: reset the client connection.
    Reset,
}

/// Waits until a reset (of connections from before `epoch`) or shutdown.
async fn ended(mut faults: watch::Receiver<Faults>, epoch: u64) -> End {
    match faults
        .wait_for(|f| f.shutdown || f.reset_epoch != epoch)
        .await
    {
        Ok(f) if !f.shutdown => End::Reset,
        _ => End::Closed,
    }
}

/// Holds until the blackhole is off; `false` if the proxy shut down.
async fn unpaused(faults: &mut watch::Receiver<Faults>) -> Option<Duration> {
    match faults.wait_for(|f| f.shutdown || !f.paused).await {
        Ok(f) if !f.shutdown => Some(f.latency),
        _ => None,
    }
}

async fn serve(client: TcpStream, shared: &Shared, epoch: u64) {
    let mut faults = shared.faults.subscribe();
    let connected = async {
        // A blackhole accepts and then holds: no upstream until resumed.
        unpaused(&mut faults).await?;
        TcpStream::connect(shared.upstream).await.ok()
    };
    let upstream = tokio::select! {
        up = connected => up,
        end = ended(shared.faults.subscribe(), epoch) => {
            finish(client, end, shared);
            return;
        }
    };
    let Some(mut upstream) = upstream else {
        finish(client, End::Reset, shared);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let dropping = std::sync::atomic::AtomicBool::new(false);
        tokio::select! {
            end = pump_up(&mut cr, &mut uw, shared, &dropping) => end,
            end = pump_down(&mut ur, &mut cw, shared, &dropping) => end,
            end = ended(shared.faults.subscribe(), epoch) => end,
        }
    };
    drop(upstream);
    finish(client, end, shared);
}

fn finish(client: TcpStream, end: End, shared: &Shared) {
    if end == End::Reset {
        shared.counters.resets.fetch_add(1, Ordering::SeqCst);
        // A zero linger turns the close into a RST. It does not block:
        // the socket is non-blocking and nothing waits to be flushed.
        let _ = client.set_zero_linger();
    }
    drop(client);
}

/// Client to upstream: forwards each chunk once the blackhole is off and
/// the latency has passed; a chunk that takes a unit of the drop budget
/// marks the connection as `dropping`, and nothing after it is forwarded.
async fn pump_up(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
    dropping: &std::sync::atomic::AtomicBool,
) -> End {
    let mut faults = shared.faults.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        let Some(latency) = unpaused(&mut faults).await else {
            return End::Closed;
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if dropping.load(Ordering::SeqCst) {
            continue;
        }
        let drop_reply = shared.take_drop(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
        // Marked once written, so a reply to an earlier request cannot end
        // the connection before this one reached the upstream.
        if drop_reply {
            dropping.store(true, Ordering::SeqCst);
        }
        shared
            .counters
            .bytes_up
            .fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Upstream to client: forwards each chunk once the blackhole is off and
/// the latency has passed; on a `dropping` connection the first reply is
/// discarded and the connection reset.
async fn pump_down(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
    dropping: &std::sync::atomic::AtomicBool,
) -> End {
    let mut faults = shared.faults.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        let Some(latency) = unpaused(&mut faults).await else {
            return End::Closed;
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if dropping.load(Ordering::SeqCst) {
            shared
                .counters
                .replies_dropped
                .fetch_add(1, Ordering::SeqCst);
            return End::Reset;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
        shared
            .counters
            .bytes_down
            .fetch_add(n as u64, Ordering::SeqCst);
    }
}
