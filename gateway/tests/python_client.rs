//! The Python `mcp` SDK (a client we did not write) across two gateway nodes.
//!
//! Needs a Python with `mcp==2.3.0`: `GATEWAY_TEST_PYTHON=/path/to/python`
//! (`.ci/run` installs one into `target/py-mcp`, which is also found
//! without the variable). Without either the test is skipped with a
//! message; with the variable set, a missing interpreter is a failure.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use session_core::{Binding, MemoryStore, SessionStore, StoreConfig};
use session_manager::ValidationPolicy;

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("GATEWAY_TEST_PYTHON") {
        return Some(p.into());
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-mcp/bin/python");
    let ok = Command::new(&local)
        .args(["-c", "import mcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_default_client_gets_a_session_and_uses_it_across_nodes() {
    let Some(py) = python() else {
        eprintln!(
            "SKIPPED: no Python with mcp==2.3.0 (set GATEWAY_TEST_PYTHON or run: python3 -m venv target/py-mcp && target/py-mcp/bin/pip install mcp==2.3.0)"
        );
        return;
    };
    logs();
    let store: std::sync::Arc<dyn SessionStore> =
        std::sync::Arc::new(MemoryStore::new(StoreConfig::default()));
    let c = Cluster::start_on(store, ValidationPolicy::EveryAccess, |cfg| {
        cfg.tokens.insert(
            "owner-token".into(),
            Binding::identity("https://idp.test", "alice").unwrap(),
        );
        cfg.tokens.insert(
            "other-token".into(),
            Binding::identity("https://idp.test", "mallory").unwrap(),
        );
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/e2e_client.py");
    let args = [
        script.display().to_string(),
        c.a.url(),
        c.b.url(),
        format!("http://{}", c.math.addr),
        "owner-token".into(),
        "other-token".into(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(py).args(args).output())
        .await
        .unwrap()
        .expect("run the python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks held"));
    // No backend session is left open.
    assert_eq!(c.math.open_sessions().await, 0);
    assert_eq!(c.text.open_sessions().await, 0);
    c.stop().await;
}
