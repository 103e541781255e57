//! Test-only helpers shared by the workspace's tests and tools (never
//! published, never a dependency of a published crate's normal build).
//!
//! The main piece is [`FaultProxy`], a loopback TCP proxy that sits between
//! a store and its server and injects network faults on demand: latency, a
//! blackhole ([`FaultProxy::pause`]), connection resets
//! ([`FaultProxy::reset_all`]), replies lost after the request was
//! forwarded ([`FaultProxy::drop_replies`]) and refused connections
//! ([`FaultProxy::refuse`]). [`url`] rewrites a server URL so a client
//! dials the proxy instead.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use session_testkit::FaultProxy;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // An upstream that answers "pong" once.
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let target = upstream.local_addr()?;
//! tokio::spawn(async move {
//!     let (mut s, _) = upstream.accept().await.unwrap();
//!     let mut buf = [0u8; 4];
//!     s.read_exact(&mut buf).await.unwrap();
//!     s.write_all(b"pong").await.unwrap();
//! });
//!
//! let proxy = FaultProxy::start(target).await?;
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"ping").await?;
//! let mut reply = [0u8; 4];
//! client.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"pong");
//! assert_eq!(proxy.stats().bytes_up, 4);
//! # Ok(())
//! # }
//! ```

pub mod faults;
mod network;
mod proxy;
pub mod url;

pub use network::Network;
pub use proxy::{FaultProxy, Stats};
