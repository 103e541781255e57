//! `cargo xtask fuzz [--secs N] [TARGET ...]`: builds the cargo-fuzz
//! package `fuzz/` with the nightly toolchain and runs every target (or
//! the ones named) for `N` seconds each (default 60), then prints one
//! summary line per target. Fails if a target crashed (a property broke or
//! a panic), naming the input libFuzzer saved under `fuzz/artifacts/`.
//!
//! Each run reads the committed seeds (`fuzz/corpus/<target>/`) and writes
//! what it discovers to `fuzz/target/xtask-corpus/<target>/` (ignored by
//! git, kept between runs), so the committed corpus stays the small,
//! hand-picked one the crates' unit tests replay.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One target's outcome.
struct Outcome {
    target: String,
    /// libFuzzer's last status line (`#runs DONE cov: ... exec/s: ...`).
    stats: String,
    /// `None` when the run ended cleanly, else why not.
    failure: Option<String>,
    secs: f64,
}

/// Runs the fuzz targets: see the module docs.
pub fn fuzz(args: &[String], root: &Path) -> Result<(), String> {
    let mut secs: u64 = 60;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--secs" => {
                secs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s| *s > 0)
                    .ok_or("--secs takes a whole number of seconds above 0")?;
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            name => chosen.push(name.to_owned()),
        }
    }
    let dir = root.join("fuzz");
    let all = targets(&dir)?;
    if let Some(unknown) = chosen.iter().find(|c| !all.contains(c)) {
        return Err(format!(
            "no fuzz target `{unknown}` (targets: {})",
            all.join(", ")
        ));
    }
    let every = chosen.is_empty();
    let targets = if every { all } else { chosen };
    check_tools()?;

    // Built first, so a build failure is not reported as a crash; only the
    // targets that will run (`cargo fuzz build` with no name builds all).
    eprintln!("xtask: building {} fuzz targets (nightly)", targets.len());
    let names: Vec<Option<&String>> = if every {
        vec![None]
    } else {
        targets.iter().map(Some).collect()
    };
    for name in names {
        let mut build = nightly(root);
        build.args(["fuzz", "build"]);
        build.args(name);
        crate::run(build)?;
    }

    let logs = dir.join("target/xtask-logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(root, &dir, &logs, target, secs)?);
    }

    println!("\nfuzz summary ({secs} s per target):");
    println!("| target | result | seconds | libFuzzer's last status |");
    println!("|---|---|---|---|");
    for o in &outcomes {
        let result = o.failure.as_deref().unwrap_or("ok");
        println!("| {} | {result} | {:.0} | {} |", o.target, o.secs, o.stats);
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} fuzz target(s) failed: {} (logs in {})",
            failed.len(),
            failed
                .iter()
                .map(|o| o.target.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            logs.display()
        ))
    }
}

/// The targets: `fuzz/fuzz_targets/*.rs`, sorted.
fn targets(dir: &Path) -> Result<Vec<String>, String> {
    let src = dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no fuzz targets in {}", src.display()));
    }
    Ok(names)
}

/// `cargo +nightly` through rustup's proxy (the `CARGO` xtask runs under
/// is the stable toolchain's own binary, which ignores `+nightly`).
fn nightly(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN");
    c
}

/// The nightly toolchain and cargo-fuzz, or how to get them.
fn check_tools() -> Result<(), String> {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        return Err("fuzzing needs a nightly toolchain: rustup toolchain install nightly".into());
    }
    if !ok(nightly(Path::new(".")).args(["fuzz", "--version"])) {
        return Err("fuzzing needs cargo-fuzz: cargo install cargo-fuzz --locked".into());
    }
    Ok(())
}

fn run_target(
    root: &Path,
    dir: &Path,
    logs: &Path,
    target: &str,
    secs: u64,
) -> Result<Outcome, String> {
    let scratch: PathBuf = dir.join("target/xtask-corpus").join(target);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let seeds = dir.join("corpus").join(target);
    let log_path = logs.join(format!("{target}.log"));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = nightly(root);
    cmd.args(["fuzz", "run", target])
        .arg(&scratch)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    eprintln!(
        "xtask: fuzzing {target} for {secs} s (log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stats = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"))
        .unwrap_or("(no status line)")
        .to_owned();
    let failure = (!status.success()).then(|| {
        let artifact = text
            .lines()
            .find_map(|l| l.split("Test unit written to ").nth(1))
            .map_or_else(String::new, |a| format!(", input saved to {}", a.trim()));
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        eprintln!("xtask: {target} failed; the end of its log:");
        for line in tail.iter().rev() {
            eprintln!("    {line}");
        }
        if artifact.is_empty() {
            format!("FAILED ({status}; no input saved: a build or setup error, see the log)")
        } else {
            format!("CRASH ({status}{artifact})")
        }
    });
    Ok(Outcome {
        target: target.to_owned(),
        stats,
        failure,
        secs: elapsed,
    })
}
