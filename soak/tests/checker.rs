//! The checker catches what it claims to: a short soak on `MemoryStore`
//! with each guard deliberately broken (`--sabotage`) must fail and name
//! the violation, and the same soak with nothing broken must pass.

use std::process::Command;

fn soak(extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_session-soak"))
        .args([
            "--duration",
            "3",
            "--concurrency",
            "8",
            "--store",
            "memory://",
        ])
        .args(extra)
        .output()
        .expect("run session-soak");
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
fn a_clean_run_passes() {
    let (ok, out) = soak(&[]);
    assert!(ok, "{out}");
    assert!(violations(&out).trim_start().starts_with('0'), "{out}");
}

fn caught(sabotage: &str, violation: &str) {
    let (ok, out) = soak(&["--sabotage", sabotage]);
    assert!(!ok, "--sabotage {sabotage} passed:\n{out}");
    assert!(
        violations(&out).contains(violation),
        "--sabotage {sabotage} did not report {violation:?}:\n{out}"
    );
}

#[test]
fn a_blind_write_is_a_lost_update() {
    caught("lost-update", "lost update");
}

#[test]
fn a_retried_increment_is_double_applied() {
    caught("double-apply", "double-applied update");
}

#[test]
fn a_session_written_back_after_terminate_is_a_resurrection() {
    caught("resurrect", "resurrection");
}

#[test]
fn a_skipped_close_breaks_builds_equal_closes() {
    caught("leak", "builds != closes");
}
