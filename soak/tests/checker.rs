//! The checker catches what it claims to: a short soak on `MemoryStore`
//! with each guard deliberately broken (`--sabotage`) must fail and name
//! the violation, and the same soak with nothing broken must pass.
//!
//! The runs are started at once and awaited together: each spends most
//! of its time waiting out the push node's bound before its final checks.

use std::process::{Child, Command, Stdio};

fn start(extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_session-soak"))
        .args([
            "--duration",
            "3",
            "--concurrency",
            "8",
            "--store",
            "memory://",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run session-soak")
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().expect("wait for session-soak");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout)
}

fn violations(stdout: &str) -> &str {
    stdout
        .split("invariant violations:")
        .nth(1)
        .expect("the summary names the violations")
}

#[test]
fn catches_each_broken_guard_and_passes_a_clean_run() {
    let cases = [
        ("lost-update", "lost update"),
        ("double-apply", "double-applied update"),
        ("resurrect", "resurrection"),
        ("leak", "builds != closes"),
    ];
    let clean = start(&[]);
    let sabotaged: Vec<_> = cases
        .iter()
        .map(|(s, v)| (*s, *v, start(&["--sabotage", s])))
        .collect();

    let (ok, out) = finish(clean);
    assert!(ok, "a clean run failed:\n{out}");
    assert!(violations(&out).trim_start().starts_with('0'), "{out}");
    for (sabotage, violation, child) in sabotaged {
        let (ok, out) = finish(child);
        assert!(!ok, "--sabotage {sabotage} passed:\n{out}");
        assert!(
            violations(&out).contains(violation),
            "--sabotage {sabotage} did not report {violation:?}:\n{out}"
        );
    }
}
