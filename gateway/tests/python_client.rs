//! The Python `mcp` SDK (a client we did not write) across two gateway nodes.
//!
//! Needs a Python with `mcp==2.3.0`: `GATEWAY_TEST_PYTHON=/path/to/python`,
//! else `target/py-mcp/bin/python` (`cargo xtask test` and `.ci/run`
//! install it there). Without one the test fails and says how to provide
//! one; `GATEWAY_TEST_PYTHON=skip` skips it explicitly.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use session_core::{Binding, MemoryStore, SessionStore, StoreConfig};
use session_manager::ValidationPolicy;

const HOWTO: &str = "python3 -m venv target/py-mcp && target/py-mcp/bin/pip install mcp==2.3.0 (cargo xtask test does this), or set GATEWAY_TEST_PYTHON=/path/to/python with mcp==2.3.0 (GATEWAY_TEST_PYTHON=skip skips this test)";

/// The interpreter to use; `None` when explicitly skipped.
fn python() -> Option<PathBuf> {
    let chosen = match std::env::var("GATEWAY_TEST_PYTHON") {
        Ok(p) if p == "skip" => return None,
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-mcp/bin/python"),
    };
    let ok = Command::new(&chosen)
        .args(["-c", "import mcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no Python with the mcp SDK at {}: {HOWTO}",
        chosen.display()
    );
    Some(chosen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_default_client_gets_a_session_and_uses_it_across_nodes() {
    let Some(py) = python() else {
        eprintln!("SKIPPED by GATEWAY_TEST_PYTHON=skip");
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
