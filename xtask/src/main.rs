//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: finds the test backends (environment URLs, else the local
//!   Redis and Postgres), starts a throwaway 3-master Redis Cluster on a
//!   free loopback port range (unless one is given), exports the URLs and
//!   runs every workspace test (all features), then session-manager's
//!   `connect` tests once more without `tls-rustls`.
//! - `ci`: formatting, clippy (`-D warnings`), rustdoc (`-D warnings`),
//!   the license files, every feature of every published crate building on
//!   its own, `msrv`, then `test`; prints each stage's time.
//! - `features`: each published crate builds with no features and with
//!   each feature on its own.
//! - `msrv`: fails if a dependency of a published crate declares a
//!   `rust-version` above ours (see `msrv.rs`).
//! - `release <patch|minor|major|X.Y.Z> [--execute]`: a dry run that
//!   prints the release plan and packages the set, or with `--execute` the
//!   release itself (see `release.rs`).
//! - `bench [NAME] [--report]`: runs the benchmark targets (all, or the one
//!   named `memory`, `redis`, `postgres`, `manager`) and prints each
//!   group's median and its ratio to the group's `baseline`; `--report`
//!   also writes `target/bench-report/report.md` and `ratios.svg`.
//!   `bench peers` (only when named) builds and runs the peer benchmark
//!   `benches/peers`, a package outside the workspace (fred,
//!   tower-sessions, a second sqlx: never built by `test` or `ci`), with
//!   the workspace's target directory so shared crates are built once.
//! - `bench-report`: writes that report from the latest criterion data
//!   without running anything.
//! - `soak --duration SECS --store URL [--concurrency N] [--faults]
//!   [--seed N] [--release]`: builds and runs `session-soak` (package
//!   `soak/`): three managers under a mixed workload with an invariant
//!   checker; exits non-zero on any violation.

mod bench_report;
mod msrv;
mod release;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime};

const REDIS_VAR: &str = "SESSION_TEST_REDIS_URL";
const POSTGRES_VAR: &str = "SESSION_TEST_POSTGRES_URL";
const CLUSTER_VAR: &str = "SESSION_TEST_REDIS_CLUSTER_URLS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("ci") => ci(),
        Some("msrv") => check_msrv(),
        Some("features") => check_features(),
        Some("release") => release_cmd(&args[1..]),
        Some("bench-report") => bench_report_files(),
        Some("soak") => soak(&args[1..]),
        Some("bench") => {
            let report = args[1..].iter().any(|a| a == "--report");
            if let Some(unknown) = args[1..]
                .iter()
                .find(|a| a.starts_with("--") && *a != "--report")
            {
                eprintln!("xtask: unknown option {unknown}");
                return ExitCode::from(2);
            }
            let name = args[1..].iter().find(|a| !a.starts_with("--"));
            bench(name.map(String::as_str), report)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [-- CARGO TEST ARGS] | ci | msrv | features | release <patch|minor|major|X.Y.Z> [--execute] | bench [memory|redis|postgres|manager|scale|gateway|peers] [--report] | bench-report | soak --duration SECS --store URL [--concurrency N] [--faults] [--seed N] [--release]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: running {shown}");
    let status = cmd.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed: {status}"))
    }
}

fn answers(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// Sets `var` to the local server's URL if unset and the server answers.
fn find_backend(var: &str, addr: &str, url: &str) {
    if std::env::var_os(var).is_some() {
        eprintln!("xtask: {var} given by the environment");
    } else if answers(addr) {
        eprintln!("xtask: {var}={url} (local server)");
        set_env(var, url);
    } else {
        eprintln!(
            "xtask: no server at {addr} and {var} unset: tests that need it will fail and say how to provide one"
        );
    }
}

fn set_env(var: &str, value: &str) {
    // Edition 2024 makes set_var unsafe; children get the value explicitly instead.
    ENV.with(|e| e.borrow_mut().push((var.to_owned(), value.to_owned())));
}

thread_local! {
    static ENV: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn with_env(mut cmd: Command) -> Command {
    ENV.with(|e| {
        for (k, v) in e.borrow().iter() {
            cmd.env(k, v);
        }
    });
    cmd
}

fn find_backends() {
    find_backend(REDIS_VAR, "127.0.0.1:6379", "redis://127.0.0.1:6379");
    find_backend(
        POSTGRES_VAR,
        "127.0.0.1:5432",
        "postgres://postgres@127.0.0.1:5432/test",
    );
}

/// A Redis Cluster started for the test run and stopped when dropped.
///
/// The script picks a free port range per run and records the pid and
/// Redis run_id of every node it starts; `stop` shuts down only those, so a
/// cluster someone else started (another run, another worktree, your own)
/// is never touched.
struct Cluster {
    script: PathBuf,
    base: u16,
}

impl Cluster {
    fn start() -> Result<Option<Self>, String> {
        if std::env::var_os(CLUSTER_VAR).is_some() {
            eprintln!("xtask: {CLUSTER_VAR} given by the environment: using that cluster");
            return Ok(None);
        }
        let script = root().join("session-storage-redis/scripts/redis-cluster.sh");
        if !script.exists() {
            return Ok(None);
        }
        eprintln!("xtask: starting a throwaway Redis Cluster on a free port range");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", "auto"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("starting the Redis Cluster for the tests: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "starting the Redis Cluster for the tests failed: {}",
                out.status
            ));
        }
        let urls = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let base = urls
            .split(',')
            .next()
            .and_then(|u| u.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("unexpected cluster URLs from the script: {urls:?}"))?;
        eprintln!("xtask: {CLUSTER_VAR}={urls}");
        set_env(CLUSTER_VAR, &urls);
        Ok(Some(Self { script, base }))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).args(["stop", &self.base.to_string()]);
        if let Err(e) = run(cmd) {
            eprintln!("xtask: stopping the Redis Cluster: {e}");
        }
    }
}

/// The Python `mcp` SDK version the gateway's E2E test drives.
const PY_MCP_VERSION: &str = "2.3.0";
const PYTHON_VAR: &str = "GATEWAY_TEST_PYTHON";

/// Makes sure `target/py-mcp` holds the pinned Python `mcp` SDK (quick when
/// it does) and points the gateway's E2E test at it.
fn find_python() {
    if std::env::var_os(PYTHON_VAR).is_some() {
        eprintln!("xtask: {PYTHON_VAR} given by the environment");
        return;
    }
    let venv = root().join("target/py-mcp");
    let py = venv.join("bin/python");
    let probe = format!(
        "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '{PY_MCP_VERSION}')"
    );
    let present = Command::new(&py)
        .args(["-c", &probe])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!(
            "xtask: installing mcp=={PY_MCP_VERSION} into {}",
            venv.display()
        );
        let mut mk = Command::new("python3");
        mk.args(["-m", "venv"]).arg(&venv);
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "--quiet", &format!("mcp=={PY_MCP_VERSION}")]);
        if let Err(e) = run(mk).and_then(|()| run(pip)) {
            eprintln!(
                "xtask: {e}: the gateway's Python E2E test will fail and say how to provide one"
            );
            return;
        }
    }
    set_env(PYTHON_VAR, &py.display().to_string());
}

fn test(extra: &[String]) -> Result<(), String> {
    find_backends();
    find_python();
    let _cluster = Cluster::start()?;
    let mut cmd = with_env(cargo());
    cmd.args(["test", "--workspace", "--all-features"]);
    cmd.args(extra);
    run(cmd)?;
    // `connect` in a build without `tls-rustls`: a URL that asks for TLS
    // must fail as a configuration error naming the feature (the run above
    // has every feature on, so it cannot see this).
    if extra.is_empty() {
        let mut no_tls = with_env(cargo());
        no_tls.args([
            "test",
            "-p",
            "session-manager",
            "--features",
            "redis,postgres,sqlite",
            "--test",
            "connect",
        ]);
        run(no_tls)?;
    }
    Ok(())
}

/// `cargo xtask ci`: every stage in order, each timed; the timings are
/// printed at the end whether the run passes or not.
fn ci() -> Result<(), String> {
    let mut times: Vec<(String, Duration)> = Vec::new();
    let result = ci_stages(&mut times);
    eprintln!("\nxtask: ci stage times");
    for (stage, took) in &times {
        eprintln!("xtask:   {stage:<10} {:>7.1} s", took.as_secs_f64());
    }
    result
}

fn timed(
    times: &mut Vec<(String, Duration)>,
    stage: &str,
    f: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    eprintln!("xtask: == {stage}");
    let started = std::time::Instant::now();
    let r = f();
    times.push((stage.to_owned(), started.elapsed()));
    r
}

fn ci_stages(times: &mut Vec<(String, Duration)>) -> Result<(), String> {
    timed(times, "fmt", || {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        run(fmt)
    })?;
    timed(times, "clippy", || {
        let mut clippy = cargo();
        clippy.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]);
        run(clippy)
    })?;
    timed(times, "rustdoc", || {
        let mut doc = cargo();
        doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings");
        run(doc)
    })?;
    timed(times, "licenses", check_licenses)?;
    timed(times, "features", check_features)?;
    timed(times, "msrv", check_msrv)?;
    timed(times, "test", || test(&[]))
}

/// `cargo metadata --format-version 1 FLAG`, parsed.
fn cargo_metadata(flag: &str) -> Result<serde_json::Value, String> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", flag])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    Ok(meta)
}

/// The published crates (name, manifest dir, features other than `default`)
/// from `cargo metadata --no-deps`.
fn published_crates() -> Result<Vec<(String, PathBuf, Vec<String>)>, String> {
    let meta = cargo_metadata("--no-deps")?;
    let mut crates = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        if p["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let dir = Path::new(p["manifest_path"].as_str().unwrap_or_default())
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let features = p["features"]
            .as_object()
            .map(|f| f.keys().filter(|k| *k != "default").cloned().collect())
            .unwrap_or_default();
        crates.push((name, dir, features));
    }
    Ok(crates)
}

/// Every published crate builds with no features and with each feature on
/// its own (`cargo check` of the library, sharing the one target dir).
fn check_features() -> Result<(), String> {
    for (name, _, features) in published_crates()? {
        let sets = std::iter::once(None).chain(features.iter().map(Some));
        for feature in sets {
            let mut cmd = cargo();
            cmd.args([
                "check",
                "--quiet",
                "--lib",
                "-p",
                &name,
                "--no-default-features",
            ]);
            if let Some(f) = feature {
                cmd.args(["--features", f]);
            }
            run(cmd)?;
        }
    }
    Ok(())
}

/// Each published crate ships both license files, identical to the root's.
fn check_licenses() -> Result<(), String> {
    for (name, dir, _) in published_crates()? {
        for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
            let ours = std::fs::read(root().join(file)).map_err(|e| format!("{file}: {e}"))?;
            match std::fs::read(dir.join(file)) {
                Ok(theirs) if theirs == ours => {}
                Ok(_) => return Err(format!("{name}/{file} differs from the root's {file}")),
                Err(e) => return Err(format!("{name}/{file}: {e}")),
            }
        }
    }
    Ok(())
}

/// `cargo xtask soak`: runs the soak driver (`soak/`, package
/// `session-soak`) with the given arguments; `--release` builds it
/// optimised. The driver picks its own key prefix / schema and removes it.
fn soak(args: &[String]) -> Result<(), String> {
    let release = args.iter().any(|a| a == "--release");
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "session-soak"]);
    if release {
        cmd.arg("--release");
    }
    cmd.arg("--");
    cmd.args(args.iter().filter(|a| *a != "--release"));
    run(cmd)
}

/// `cargo xtask release`: see `release.rs`.
fn release_cmd(args: &[String]) -> Result<(), String> {
    let execute = args.iter().any(|a| a == "--execute");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let (Some(level), None) = (positional.next(), positional.next()) else {
        return Err("usage: cargo xtask release <patch|minor|major|X.Y.Z> [--execute]".into());
    };
    if let Some(unknown) = args
        .iter()
        .find(|a| a.starts_with("--") && *a != "--execute")
    {
        return Err(format!("unknown option {unknown}"));
    }
    let bump = release::Bump::parse(level)
        .ok_or_else(|| format!("`{level}` is not patch, minor, major or X.Y.Z"))?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    release::release(
        &root(),
        bump,
        execute,
        &release::civil_date(now),
        &mut release::Cargo,
    )
    .map(|_| ())
}

/// `cargo xtask msrv`: see `msrv.rs`.
fn check_msrv() -> Result<(), String> {
    let meta = cargo_metadata("--all-features")?;
    let report = msrv::analyse(&meta)?;
    for (name, v) in &report.ours {
        let v = v.map_or_else(|| "none".to_owned(), |v| v.to_string());
        eprintln!("xtask: msrv: {name} declares rust-version {v}");
    }
    if let Some(floor) = report.floor() {
        let top: Vec<&str> = report
            .deps
            .iter()
            .take_while(|(v, _)| *v == floor)
            .map(|(_, n)| n.as_str())
            .collect();
        eprintln!(
            "xtask: msrv: the highest rust-version among {} dependencies is {floor} ({})",
            report.deps.len(),
            top.join(", ")
        );
    }
    let problems = report.problems();
    if problems.is_empty() {
        eprintln!("xtask: msrv: ok");
        Ok(())
    } else {
        Err(format!("msrv check failed:\n  {}", problems.join("\n  ")))
    }
}

/// (name, package, bench target, features) per benchmark. Every entry
/// must exist: a missing one fails the run (it used to be skipped, which
/// hid that `gateway` looked for `session-gateway/` instead of `gateway/`).
const BENCHES: &[(&str, &str, &str, &str)] = &[
    ("memory", "session-core", "memory", "testing"),
    ("redis", "session-storage-redis", "redis", ""),
    ("postgres", "session-storage-sql", "postgres", ""),
    ("manager", "session-manager", "manager", "redis,postgres"),
    ("scale", "session-manager", "scale", "redis,postgres"),
    ("gateway", "session-gateway", "gateway", "redis"),
];

fn bench(name: Option<&str>, write_report: bool) -> Result<(), String> {
    find_backends();
    if name == Some("peers") {
        return bench_peers();
    }
    let started = SystemTime::now();
    let chosen: Vec<_> = BENCHES
        .iter()
        .filter(|(n, ..)| name.is_none_or(|want| want == *n))
        .collect();
    if chosen.is_empty() {
        return Err(format!("no benchmark named {name:?}"));
    }
    for (_, package, target, features) in chosen {
        let mut cmd = with_env(cargo());
        cmd.args(["bench", "-p", package, "--bench", target]);
        if !features.is_empty() {
            cmd.args(["--features", features]);
        }
        run(cmd)?;
    }
    report(started);
    if write_report {
        bench_report_files()?;
    }
    Ok(())
}

/// Builds and runs `benches/peers` (its own workspace, see its README)
/// in release mode with the workspace's target directory.
fn bench_peers() -> Result<(), String> {
    let mut cmd = with_env(cargo());
    cmd.args(["run", "--release", "--manifest-path"])
        .arg(root().join("benches/peers/Cargo.toml"));
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        cmd.env("CARGO_TARGET_DIR", root().join("target"));
    }
    run(cmd)
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("criterion")
}

/// Writes `target/bench-report/report.md` and `ratios.svg` from the latest
/// criterion estimates (see `bench_report.rs`).
fn bench_report_files() -> Result<(), String> {
    let criterion = criterion_dir();
    let (rows, missing) = bench_report::rows(&criterion);
    let out = criterion
        .parent()
        .map_or_else(|| root().join("target"), Path::to_path_buf)
        .join("bench-report");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .map_or_else(String::new, |l| format!(", load average {l} when written"));
    let when = format!("{}{load}", release::civil_date(now));
    std::fs::write(
        out.join("report.md"),
        bench_report::markdown(&rows, &missing, &when),
    )
    .map_err(|e| format!("report.md: {e}"))?;
    std::fs::write(out.join("ratios.svg"), bench_report::svg(&rows))
        .map_err(|e| format!("ratios.svg: {e}"))?;
    eprintln!(
        "xtask: wrote {} ({} ratios, {} not measured)",
        out.join("report.md").display(),
        rows.len(),
        missing.len()
    );
    Ok(())
}

/// Prints every criterion group written since `since`: each function's
/// median and its ratio to the group's `baseline` function.
fn report(since: SystemTime) {
    let dir = criterion_dir();
    let Ok(groups) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut groups: Vec<_> = groups.flatten().map(|e| e.path()).collect();
    groups.sort();
    println!("\n{:<45} {:>14} {:>10}", "benchmark", "median", "ratio");
    for group in groups {
        let Ok(funcs) = std::fs::read_dir(&group) else {
            continue;
        };
        let mut rows: Vec<(String, f64)> = funcs
            .flatten()
            .filter_map(|f| {
                let est = f.path().join("new/estimates.json");
                let fresh = std::fs::metadata(&est)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m >= since);
                if !fresh {
                    return None;
                }
                let json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&est).ok()?).ok()?;
                let median = json["median"]["point_estimate"].as_f64()?;
                Some((f.file_name().to_string_lossy().into_owned(), median))
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let baseline = rows
            .iter()
            .find(|(n, _)| n.starts_with("baseline"))
            .map(|(_, m)| *m);
        let gname = group
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (f, median) in rows {
            let ratio = baseline.map_or_else(|| "-".to_owned(), |b| format!("{:.2}x", median / b));
            println!(
                "{:<45} {:>11.0} ns {:>10}",
                format!("{gname}/{f}"),
                median,
                ratio
            );
        }
    }
}
