//! A loopback TCP forwarder that loses one reply on demand: the request
//! reaches the server (which executes it), the reply never reaches the
//! client, whose connection is closed instead. What a connection reset
//! after a write, or a timeout, looks like to a store. Test-only and
//! deliberately minimal (no latency, no pauses).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection to `upstream`; [`ReplyDropper::arm`] makes it
/// drop the reply to the next request that carries a marker (the next
/// bytes the server sends on that connection) and close that connection.
/// Stops when dropped.
pub struct ReplyDropper {
    addr: SocketAddr,
    armed: Arc<Mutex<Option<Vec<u8>>>>,
    dropped: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplyDropper {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let armed = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = {
            let (armed, dropped, accepted) = (armed.clone(), dropped.clone(), accepted.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (armed, dropped) = (armed.clone(), dropped.clone());
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            pump(client, server, &armed, &dropped).await;
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            armed,
            dropped,
            accepted,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops the reply to the next request whose bytes contain `marker`
    /// (a write id, say: unique to one call, whatever else the client's
    /// pool or connection manager sends) and closes its connection.
    pub fn arm(&self, marker: impl Into<Vec<u8>>) {
        *self
            .armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(marker.into());
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many replies were dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for ReplyDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `chunk` carries the armed marker (which is then disarmed).
fn hit(armed: &Mutex<Option<Vec<u8>>>, chunk: &[u8]) -> bool {
    let mut armed = armed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = armed
        .as_deref()
        .is_some_and(|m| !m.is_empty() && chunk.windows(m.len()).any(|w| w == m));
    if found {
        *armed = None;
    }
    found
}

async fn pump(
    client: TcpStream,
    server: TcpStream,
    armed: &Mutex<Option<Vec<u8>>>,
    dropped: &AtomicUsize,
) {
    let target = std::sync::atomic::AtomicBool::new(false);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let requests = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if hit(armed, &buf[..n]) {
                        target.store(true, Ordering::SeqCst);
                    }
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let replies = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if target.load(Ordering::SeqCst) {
                        // The server has answered, so it has executed the
                        // request: lose the answer, cut the client off.
                        dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // Either side ending ends both (dropping the halves closes them).
    tokio::select! {
        () = requests => {}
        () = replies => {}
    }
}
