//! The binary's log formats: `--log-format json` / `LOG_FORMAT=json` write
//! one JSON object per line to stderr; a bad value stops startup naming it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_session-gateway");

/// Starts one node (its backend need not exist: nothing connects before a
/// client initializes), returns its first stderr line, and stops it.
fn first_log_line(cmd: &mut Command) -> String {
    let mut child = cmd
        .args([
            "--backend",
            "math=http://127.0.0.1:9/mcp",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start session-gateway");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

fn assert_json_listening(line: &str) {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert_eq!(v["fields"]["message"], "gateway node listening", "{line}");
    assert!(v["fields"]["addr"].as_str().is_some(), "{line}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let line = first_log_line(Command::new(BIN).args(["--log-format", "json"]));
    assert_json_listening(&line);
    let line = first_log_line(Command::new(BIN).env("LOG_FORMAT", "json"));
    assert_json_listening(&line);
    // The flag wins over the environment; text is the default.
    let line = first_log_line(
        Command::new(BIN)
            .env("LOG_FORMAT", "json")
            .args(["--log-format", "text"]),
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err() && line.contains("listening"),
        "{line:?}"
    );
}

#[test]
fn a_bad_log_format_stops_startup_naming_it() {
    let mut flag = Command::new(BIN);
    flag.args(["--log-format", "xml"]);
    let mut env = Command::new(BIN);
    env.env("LOG_FORMAT", "xml");
    for mut cmd in [flag, env] {
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("\"xml\""), "{err}");
    }
    let out = Command::new(BIN).arg("--log-format").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a value"));
}
