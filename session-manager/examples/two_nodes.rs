//! Two gateway nodes over one session store.
//!
//! ```text
//! cargo run -p session-manager --example two_nodes
//! cargo run -p session-manager --example two_nodes -- --store redis://127.0.0.1:6379   # with --features redis
//! ```
//!
//! A session created on node A is used on node B, a backend expires on A
//! and B stops seeing it, B terminates the session and A reports not found.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use session_core::{SessionStore, Snapshot, keys};
use session_manager::{
    BackendExpiry, BuildCause, Built, Error, SessionFactory, SessionManager, ValidationPolicy,
};

/// Stands in for opening backend MCP connections: names the node and a serial.
struct Gateway {
    node: &'static str,
    serial: AtomicU64,
}

#[async_trait]
impl SessionFactory for Gateway {
    type Session = Arc<String>;
    type Error = std::convert::Infallible;

    async fn build(
        &self,
        snapshot: &Snapshot,
        cause: BuildCause,
    ) -> Result<Built<Arc<String>>, Self::Error> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let backends = snapshot.metadata.get(keys::BACKEND_IDS).unwrap_or("");
        println!(
            "  [{}] build #{n} ({cause:?}) with backends [{backends}]",
            self.node
        );
        Ok(Built::new(
            Arc::new(format!("{}#{n}", self.node)),
            snapshot.metadata.clone(),
        ))
    }

    async fn close(&self, session: Arc<String>) {
        println!("  [{}] close {session}", self.node);
    }
}

fn gateway(node: &'static str) -> Gateway {
    Gateway {
        node,
        serial: AtomicU64::new(0),
    }
}

fn backends(md: &session_core::Metadata) -> String {
    keys::backend_ids(md)
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = match args.iter().position(|a| a == "--store") {
        Some(i) => args.get(i + 1).cloned().ok_or("--store needs a URL")?,
        None => "memory://".to_owned(),
    };
    // An in-process store (memory://, sqlite://:memory:) is shared by
    // handle; a real one gets one connection per node, as two pods would.
    let store_a: Arc<dyn SessionStore> = session_manager::connect(&url).await?;
    let store_b = if url.starts_with("memory:") || url.ends_with(":memory:") {
        store_a.clone()
    } else {
        session_manager::connect(&url).await?
    };
    println!("store: {url}");
    let a = SessionManager::builder(store_a, gateway("A"))
        .policy(ValidationPolicy::EveryAccess)
        .build();
    let b = SessionManager::builder(store_b, gateway("B"))
        .policy(ValidationPolicy::EveryAccess)
        .build();

    let github = session_core::WorkloadId::parse("github")?;
    let jira = session_core::WorkloadId::parse("jira")?;
    let md = keys::with_backend(&session_core::Metadata::new(), &github, "gh-session-1")?;
    let md = keys::with_backend(&md, &jira, "jira-session-1")?;

    println!("1. node A creates a session");
    let live = a.create(md).await?;
    let id = live.id().clone();
    println!(
        "   id {id}, version {}, backends [{}]",
        live.version(),
        backends(live.metadata())
    );

    println!("2. node B serves it (restore from storage)");
    let on_b = b.get(&id).await?;
    println!(
        "   B serves {} at version {}, backends [{}]",
        on_b.session(),
        on_b.version(),
        backends(on_b.metadata())
    );

    println!("3. backend jira expires on node A");
    match a.notify_backend_expired(&id, &jira).await? {
        BackendExpiry::Removed(s) => println!("   removed; stored version {}", s.version),
        other => return Err(format!("unexpected {other:?}").into()),
    }

    println!("4. node B's next access no longer sees jira");
    let on_b = b.get(&id).await?;
    println!(
        "   B serves {} at version {}, backends [{}]",
        on_b.session(),
        on_b.version(),
        backends(on_b.metadata())
    );
    if keys::backend_ids(on_b.metadata())?.contains(&jira) {
        return Err("B still routes to the expired backend".into());
    }

    println!("5. node B terminates the session");
    println!("   deleted: {}", b.terminate(&id).await?);

    println!("6. node A looks it up");
    match a.get(&id).await {
        Err(e @ Error::NotFound { .. }) => println!("   {e} (HTTP {})", e.http_status()),
        other => return Err(format!("expected not found, got {other:?}").into()),
    }

    a.shutdown().await;
    b.shutdown().await;
    println!("done");
    Ok(())
}
