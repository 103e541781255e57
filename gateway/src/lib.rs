//! session-gateway: an MCP gateway on rmcp whose client sessions are
//! [`session_manager`] sessions, so any node serves any session.
//!
//! - [`node`]: one node (`/mcp`, `/healthz`, `/readyz`, `/metrics`);
//! - [`direct_call`]: the node's own answer to a plain `tools/call`
//!   (rmcp's server handles every other message);
//! - [`rmcp_sessions`]: rmcp's server-side session manager over ours;
//! - [`session`]: live sessions, backend slots, expiry healing;
//! - [`reaper`]: deleting backend sessions once when a client session ends
//!   (terminated or expired);
//! - [`backend`]: the resumable, never-deleting-on-drop backend client
//!   (handshakes, and the client side of tests and the bench);
//! - [`upstream`]: per-call backend requests as one direct `POST` each;
//! - [`demo`]: demo backends, `--demo` and `--demo --tour`;
//! - [`admin`]: the `sessions` operator commands.

pub mod admin;
pub mod backend;
pub mod config;
pub mod demo;
pub mod direct_call;
pub mod handler;
pub mod metrics;
pub mod node;
pub mod reaper;
pub mod rmcp_sessions;
pub mod session;
pub mod upstream;
