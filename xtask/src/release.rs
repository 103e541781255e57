//! `cargo xtask release <patch|minor|major|X.Y.Z> [--execute]`.
//!
//! A dry run (the default) checks the preflight conditions, works out the
//! next version, the manifest edits, the CHANGELOG section and the publish
//! order, packages the publishable set (`cargo package`, which writes only
//! under `target/`) and prints the plan; it changes no tracked file.
//!
//! `--execute`: preflight (clean tree, on `main`, tag free), `cargo xtask
//! ci`, bump `[workspace.package].version` and every internal dependency's
//! `version` in lockstep, prepend the CHANGELOG section, package the set
//! (so siblings resolve against each other), commit, tag `vX.Y.Z`, then
//! publish each crate in dependency order, skipping any whose version the
//! registry already has. An interrupted release resumes with
//! `cargo xtask release X.Y.Z --execute` on the tagged commit: it publishes
//! what is missing and changes nothing else.
//!
//! Everything that talks to the outside (CI, packaging, the registry) goes
//! through [`Hooks`], so the tests run the whole flow on a temporary git
//! repository with a stubbed registry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The outside world the release talks to.
pub trait Hooks {
    /// Runs the full CI (`cargo xtask ci`).
    fn ci(&mut self, root: &Path) -> Result<(), String>;
    /// Brings `Cargo.lock` in line with the bumped manifests.
    fn lock(&mut self, root: &Path) -> Result<(), String>;
    /// Packages (and verifies) the crates together, in the given order.
    fn package(&mut self, root: &Path, crates: &[String]) -> Result<(), String>;
    /// Whether the registry already has `name` at `version`.
    fn published(&mut self, name: &str, version: &str) -> Result<bool, String>;
    /// Publishes `name` from `root`.
    fn publish(&mut self, root: &Path, name: &str) -> Result<(), String>;
}

/// The real hooks: cargo and crates.io.
pub struct Cargo;

impl Cargo {
    fn cargo(root: &Path) -> Command {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(root);
        c
    }
}

impl Hooks for Cargo {
    fn ci(&mut self, root: &Path) -> Result<(), String> {
        let mut c = Self::cargo(root);
        c.args(["xtask", "ci"]);
        crate::run(c)
    }

    fn lock(&mut self, root: &Path) -> Result<(), String> {
        let mut c = Self::cargo(root);
        c.args(["update", "--workspace", "--offline"]);
        crate::run(c)
    }

    fn package(&mut self, root: &Path, crates: &[String]) -> Result<(), String> {
        let mut c = Self::cargo(root);
        c.args(["package", "--allow-dirty"]);
        for name in crates {
            c.args(["-p", name]);
        }
        crate::run(c)
    }

    fn published(&mut self, name: &str, version: &str) -> Result<bool, String> {
        // Outside the workspace, so `cargo info` asks the registry, not the
        // local manifest.
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(std::env::temp_dir())
            .args([
                "info",
                "--registry",
                "crates-io",
                &format!("{name}@{version}"),
            ])
            .output()
            .map_err(|e| format!("cargo info {name}@{version}: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(true)
        } else if stderr.contains("could not find") {
            Ok(false)
        } else {
            // Unreachable registry and the like: do not guess.
            Err(format!("cargo info {name}@{version}: {}", stderr.trim()))
        }
    }

    fn publish(&mut self, root: &Path, name: &str) -> Result<(), String> {
        // Verified by `package` above; cargo waits until the crate is in the
        // index, so the next crate resolves it.
        let mut c = Self::cargo(root);
        c.args(["publish", "--no-verify", "-p", name]);
        crate::run(c)
    }
}

/// `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.').map(str::parse::<u64>);
        let v = Self(it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
        it.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What to release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bump {
    Patch,
    Minor,
    Major,
    Exact(Version),
}

impl Bump {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "patch" => Some(Self::Patch),
            "minor" => Some(Self::Minor),
            "major" => Some(Self::Major),
            _ => Version::parse(s).map(Self::Exact),
        }
    }

    fn apply(self, v: Version) -> Version {
        match self {
            Self::Patch => Version(v.0, v.1, v.2 + 1),
            Self::Minor => Version(v.0, v.1 + 1, 0),
            Self::Major => Version(v.0 + 1, 0, 0),
            Self::Exact(e) => e,
        }
    }
}

/// The release, worked out before anything changes.
#[derive(Debug)]
pub struct Plan {
    pub current: Version,
    pub next: Version,
    pub tag: String,
    /// Publishable crates, dependencies first.
    pub order: Vec<String>,
    /// Every workspace member (internal dependency names).
    pub members: Vec<String>,
    /// The section prepended to CHANGELOG.md.
    pub changelog: String,
    /// The tag already marks HEAD at this version: only publish what is missing.
    pub resume: bool,
    /// Why `--execute` would refuse (empty: ready).
    pub refusals: Vec<String>,
}

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

fn tag_commit(root: &Path, tag: &str) -> Option<String> {
    git(
        root,
        &[
            "rev-parse",
            "-q",
            "--verify",
            &format!("refs/tags/{tag}^{{commit}}"),
        ],
    )
    .ok()
}

/// Members and publishable crates in dependency order, from `cargo metadata --no-deps`.
fn workspace(root: &Path) -> Result<(Version, Vec<String>, Vec<String>), String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    let members: Vec<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let member_set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    // `publish = false` shows as an empty list of registries.
    let private: BTreeSet<&str> = packages
        .iter()
        .filter(|p| p["publish"].as_array().is_some_and(Vec::is_empty))
        .filter_map(|p| p["name"].as_str())
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut versions = BTreeSet::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        if private.contains(name.as_str()) {
            continue;
        }
        versions.insert(p["version"].as_str().unwrap_or_default().to_owned());
        let internal = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            // A dev-dependency on a private member (the test kit) is
            // stripped by `cargo publish`, so it neither blocks nor orders.
            .filter(|d| {
                !(d["kind"] == "dev" && d["name"].as_str().is_some_and(|n| private.contains(n)))
            })
            .filter_map(|d| d["name"].as_str())
            .filter(|d| member_set.contains(d) && *d != name)
            .map(str::to_owned)
            .collect();
        deps.insert(name, internal);
    }
    if versions.len() != 1 {
        return Err(format!(
            "publishable crates are not in lockstep: versions {versions:?}"
        ));
    }
    let current = versions
        .first()
        .and_then(|v| Version::parse(v))
        .ok_or("unparsable workspace version")?;
    // Kahn's algorithm, alphabetical among the ready ones: a stable order.
    let mut order = Vec::new();
    let mut left = deps.clone();
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|(_, d)| d.iter().all(|x| !left.contains_key(x)))
            .map(|(n, _)| n.clone())
            .collect();
        if ready.is_empty() {
            return Err(format!("dependency cycle among {:?}", left.keys()));
        }
        for n in ready {
            left.remove(&n);
            order.push(n);
        }
    }
    for (name, d) in &deps {
        if let Some(private) = d.iter().find(|x| !deps.contains_key(*x)) {
            return Err(format!(
                "{name} depends on {private}, which is not published"
            ));
        }
    }
    Ok((current, members, order))
}

/// `YYYY-MM-DD` for a Unix time (UTC).
pub fn civil_date(unix_secs: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = i64::try_from(unix_secs / 86_400).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The CHANGELOG section: commit subjects since the last `v*` tag (all of
/// them before the first release), grouped by the first word of their
/// `area:` prefix (subjects without one under "Other").
fn changelog_section(root: &Path, next: Version, date: &str) -> Result<String, String> {
    let range = match git(root, &["describe", "--tags", "--abbrev=0", "--match", "v*"]) {
        Ok(last) => format!("{last}..HEAD"),
        Err(_) => "HEAD".to_owned(),
    };
    let log = git(root, &["log", "--no-merges", "--format=%s", &range])?;
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for subject in log.lines().rev().filter(|l| !l.trim().is_empty()) {
        let (group, text) = match subject.split_once(": ") {
            Some((area, rest)) if !area.trim().is_empty() && area.len() <= 40 => {
                // "session-manager bench: x" files under session-manager as "bench: x".
                match area.trim().split_once(' ') {
                    Some((head, tail)) => {
                        (head.to_owned(), format!("{}: {}", tail.trim(), rest.trim()))
                    }
                    None => (area.trim().to_owned(), rest.trim().to_owned()),
                }
            }
            _ => ("Other".to_owned(), subject.trim().to_owned()),
        };
        groups.entry(group).or_default().push(text);
    }
    let other = groups.remove("Other");
    let mut s = format!("## {next} - {date}\n");
    let mut ordered: Vec<(String, Vec<String>)> = groups.into_iter().collect();
    if let Some(o) = other {
        ordered.push(("Other".to_owned(), o));
    }
    for (group, items) in &ordered {
        let _ = write!(s, "\n### {group}\n\n");
        for i in items {
            let _ = writeln!(s, "- {i}");
        }
    }
    Ok(s)
}

/// Prepends `section` to the changelog text: after the preamble, above the
/// newest section. An `## Unreleased` section's notes move into the new
/// section and an empty `## Unreleased` stays on top.
pub fn prepend_changelog(text: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(i) = text.find("\n## ") else {
        return if text.trim().is_empty() {
            format!("# Changelog\n\n{section}\n")
        } else {
            format!("{}\n\n{section}\n", text.trim_end())
        };
    };
    let (preamble, rest) = text.split_at(i + 1);
    let Some(body) = rest.strip_prefix("## Unreleased\n") else {
        return format!("{preamble}{section}\n\n{rest}");
    };
    let end = body.find("\n## ").map_or(body.len(), |j| j + 1);
    let (notes, older) = body.split_at(end);
    let (head, groups) = section.split_once('\n').unwrap_or((section, ""));
    let notes = notes.trim();
    let mut new = format!("{preamble}## Unreleased\n\n{head}\n");
    if !notes.is_empty() {
        let _ = write!(new, "\n{notes}\n");
    }
    new.push_str(groups.trim_end());
    new.push('\n');
    if !older.is_empty() {
        new.push('\n');
        new.push_str(older);
    }
    new
}

/// Works out the release without changing anything.
pub fn plan(root: &Path, bump: Bump, date: &str) -> Result<Plan, String> {
    let (current, members, order) = workspace(root)?;
    let head = git(root, &["rev-parse", "HEAD"])?;
    let current_tag = format!("v{current}");
    let resume = bump == Bump::Exact(current)
        && tag_commit(root, &current_tag).as_deref() == Some(head.as_str());
    let next = if resume { current } else { bump.apply(current) };
    let tag = format!("v{next}");
    let mut refusals = Vec::new();
    if !git(root, &["status", "--porcelain"])?.is_empty() {
        refusals.push("the work tree has uncommitted changes".to_owned());
    }
    let branch = git(root, &["rev-parse", "--abbrev-ref", "HEAD"])?;
    if branch != "main" {
        refusals.push(format!("on branch `{branch}`, not `main`"));
    }
    if !resume {
        if next <= current {
            refusals.push(format!("{next} is not above the current version {current}"));
        }
        if tag_commit(root, &tag).is_some() {
            refusals.push(format!("tag {tag} already exists"));
        }
    }
    let changelog = if resume {
        String::new()
    } else {
        changelog_section(root, next, date)?
    };
    Ok(Plan {
        current,
        next,
        tag,
        order,
        members,
        changelog,
        resume,
        refusals,
    })
}

/// Rewrites manifest text: `[workspace.package] version` and the `version`
/// of every dependency on a workspace member that also has a `path`.
pub fn bump_manifest(text: &str, members: &[String], from: Version, to: Version) -> String {
    let old = format!("version = \"{from}\"");
    let new = format!("version = \"{to}\"");
    let mut section = String::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            t.clone_into(&mut section);
        }
        let name = t.split(['=', ' ', '.']).next().unwrap_or_default();
        let is_package_version = (section == "[workspace.package]" || section == "[package]")
            && t.starts_with("version")
            && t.contains(&old);
        let is_internal_dep =
            members.iter().any(|m| m == name) && t.contains("path = ") && t.contains(&old);
        if is_package_version || is_internal_dep {
            out.push_str(&line.replacen(&old, &new, 1));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("Cargo.toml")];
    if let Ok(dirs) = std::fs::read_dir(root) {
        let mut sub: Vec<PathBuf> = dirs
            .flatten()
            .map(|e| e.path().join("Cargo.toml"))
            .filter(|p| p.exists())
            .collect();
        sub.sort();
        out.extend(sub);
    }
    out
}

impl Plan {
    pub fn print(&self, execute: bool) {
        println!(
            "release plan: {} -> {} (tag {})",
            self.current, self.next, self.tag
        );
        if self.resume {
            println!(
                "  resuming: {} marks HEAD; only crates missing from the registry are published",
                self.tag
            );
        } else {
            println!("  1. preflight: clean tree, on main, tag {} free", self.tag);
            println!("  2. cargo xtask ci");
            println!(
                "  3. bump [workspace.package].version and the internal dependency versions ({}) to {}",
                self.members.join(", "),
                self.next
            );
            println!("  4. prepend to CHANGELOG.md:\n");
            for l in self.changelog.lines() {
                println!("       {l}");
            }
            println!();
            println!("  5. cargo package of {}", self.order.join(", "));
            println!("  6. commit \"release {}\" and tag {}", self.tag, self.tag);
        }
        println!(
            "  publish in this order, skipping versions the registry has: {}",
            self.order.join(" -> ")
        );
        if self.refusals.is_empty() {
            println!("preflight: ready");
        } else {
            for r in &self.refusals {
                println!(
                    "preflight: {} would refuse: {r}",
                    if execute { "release" } else { "--execute" }
                );
            }
        }
        if !execute {
            println!("dry run: nothing changed (pass --execute to release)");
        }
    }
}

/// Runs the release at `root`. `execute == false` is the dry run.
pub fn release(
    root: &Path,
    bump: Bump,
    execute: bool,
    date: &str,
    hooks: &mut dyn Hooks,
) -> Result<Plan, String> {
    let plan = plan(root, bump, date)?;
    plan.print(execute);
    if !execute {
        hooks.package(root, &plan.order)?;
        println!("dry run: the set packages; nothing changed");
        return Ok(plan);
    }
    if !plan.refusals.is_empty() {
        return Err(format!("release refused: {}", plan.refusals.join("; ")));
    }
    if !plan.resume {
        hooks.ci(root)?;
        for path in manifests(root) {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let bumped = bump_manifest(&text, &plan.members, plan.current, plan.next);
            if bumped != text {
                std::fs::write(&path, bumped).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        hooks.lock(root)?;
        let changelog = root.join("CHANGELOG.md");
        let text = std::fs::read_to_string(&changelog).unwrap_or_default();
        std::fs::write(&changelog, prepend_changelog(&text, &plan.changelog))
            .map_err(|e| format!("CHANGELOG.md: {e}"))?;
        hooks.package(root, &plan.order)?;
        // The tree was clean: everything changed is the release's.
        git(root, &["add", "-A"])?;
        git(
            root,
            &["commit", "-q", "-m", &format!("release {}", plan.tag)],
        )?;
        git(
            root,
            &[
                "tag",
                "-a",
                &plan.tag,
                "-m",
                &format!("release {}", plan.tag),
            ],
        )?;
    }
    let version = plan.next.to_string();
    for name in &plan.order {
        if hooks.published(name, &version)? {
            println!("{name} {version}: already on the registry, skipped");
            continue;
        }
        hooks.publish(root, name).map_err(|e| {
            format!(
                "{e}\nthe release is committed and tagged; resume with `cargo xtask release {version} --execute`"
            )
        })?;
        println!("{name} {version}: published");
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;
