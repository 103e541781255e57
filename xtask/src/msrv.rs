//! `cargo xtask msrv`: the declared `rust-version` is true for consumers.
//!
//! Reads `cargo metadata --all-features` (every feature of every published
//! crate is documented, so the union covers every documented feature set)
//! and walks the resolved graph from each published workspace crate along
//! normal and build edges (dev-dependencies do not reach consumers). Any
//! package on the way that declares a `rust-version` above the workspace's
//! fails the check. `cargo metadata`'s resolve is a superset of what a
//! given feature set builds, so the check errs on the strict side.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A `major.minor.patch` Rust version (missing parts are 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RustVersion(pub u32, pub u32, pub u32);

impl RustVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(Self(major, minor, patch))
    }
}

impl std::fmt::Display for RustVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What the check found.
#[derive(Debug)]
pub struct Report {
    /// The published workspace crates and their declared rust-version.
    pub ours: BTreeMap<String, Option<RustVersion>>,
    /// Every dependency reachable from any published crate that declares a
    /// rust-version: (version, name@version), highest first.
    pub deps: Vec<(RustVersion, String)>,
    /// Per published crate, the dependencies above its declared rust-version.
    above: BTreeMap<String, Vec<(RustVersion, String)>>,
}

impl Report {
    /// The highest rust-version any reachable dependency declares.
    pub fn floor(&self) -> Option<RustVersion> {
        self.deps.iter().map(|(v, _)| *v).max()
    }

    /// Problems: a published crate without a rust-version, or a dependency above it.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, declared) in &self.ours {
            let Some(declared) = declared else {
                out.push(format!("{name} declares no rust-version"));
                continue;
            };
            for (v, dep) in self.above.get(name).into_iter().flatten() {
                out.push(format!(
                    "{name} declares rust-version {declared} but depends on {dep}, which needs {v}"
                ));
            }
        }
        out
    }
}

fn is_published(pkg: &Value) -> bool {
    // `publish = false` shows as an empty list of registries.
    !pkg["publish"].as_array().is_some_and(Vec::is_empty)
}

/// Analyses `cargo metadata --format-version 1 --all-features` output.
pub fn analyse<'a>(metadata: &'a Value) -> Result<Report, String> {
    let packages: BTreeMap<&str, &Value> = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata: no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .ok_or("cargo metadata: no workspace members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let published: Vec<&str> = members
        .iter()
        .copied()
        .filter(|id| packages.get(id).is_some_and(|p| is_published(p)))
        .collect();
    let rust_version = |id: &str| {
        packages
            .get(id)
            .and_then(|p| p["rust_version"].as_str())
            .and_then(RustVersion::parse)
    };
    let name_of = |id: &str| {
        packages.get(id).map_or_else(
            || id.to_owned(),
            |p| {
                format!(
                    "{}@{}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                )
            },
        )
    };
    // Everything a crate pulls in for consumers: normal and build edges.
    let reachable = |from: &'a str| {
        let mut seen: BTreeSet<&'a str> = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(node) = nodes.get(id) else { continue };
            for dep in node["deps"].as_array().into_iter().flatten() {
                let consumer_facing = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null() || k["kind"].as_str() == Some("build"));
                if consumer_facing && let Some(pkg) = dep["pkg"].as_str() {
                    stack.push(pkg);
                }
            }
        }
        seen.retain(|id| !members.contains(id));
        seen
    };
    let mut ours = BTreeMap::new();
    let mut above = BTreeMap::new();
    let mut all = BTreeSet::new();
    for &id in &published {
        let name = packages[id]["name"].as_str().unwrap_or("?").to_owned();
        let declared = rust_version(id);
        let deps = reachable(id);
        let over: Vec<(RustVersion, String)> = deps
            .iter()
            .filter_map(|d| Some((rust_version(d)?, name_of(d))))
            .filter(|(v, _)| declared.is_some_and(|ours| *v > ours))
            .collect();
        above.insert(name.clone(), over);
        ours.insert(name, declared);
        all.extend(deps);
    }
    let mut deps: Vec<(RustVersion, String)> = all
        .iter()
        .filter_map(|id| Some((rust_version(id)?, name_of(id))))
        .collect();
    deps.sort_by(|a, b| b.cmp(a));
    Ok(Report { ours, deps, above })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(our_rv: &str, dep_rv: &str, dev_rv: &str) -> Value {
        json!({
            "packages": [
                {"id": "a", "name": "a", "version": "0.1.0", "rust_version": our_rv, "publish": null},
                {"id": "x", "name": "xtask", "version": "0.1.0", "rust_version": "1.0", "publish": []},
                {"id": "d", "name": "dep", "version": "1.2.3", "rust_version": dep_rv, "publish": null},
                {"id": "t", "name": "devdep", "version": "1.0.0", "rust_version": dev_rv, "publish": null},
                {"id": "s", "name": "heavy", "version": "2.0.0", "rust_version": "1.99", "publish": null},
            ],
            "workspace_members": ["a", "x"],
            "resolve": {"nodes": [
                {"id": "a", "deps": [
                    {"pkg": "d", "dep_kinds": [{"kind": null}]},
                    {"pkg": "t", "dep_kinds": [{"kind": "dev"}]},
                ]},
                {"id": "x", "deps": [{"pkg": "s", "dep_kinds": [{"kind": null}]}]},
                {"id": "d", "deps": []},
                {"id": "t", "deps": []},
                {"id": "s", "deps": []},
            ]}
        })
    }

    #[test]
    fn passes_when_every_dependency_fits() {
        let r = analyse(&meta("1.80", "1.80", "1.95")).unwrap();
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(r.floor(), Some(RustVersion(1, 80, 0)));
    }

    #[test]
    fn fails_on_a_newer_normal_dependency_only() {
        let r = analyse(&meta("1.79", "1.80", "1.95")).unwrap();
        let p = r.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("dep@1.2.3"), "{p:?}");
        // xtask (publish = false) and its dependency are not checked.
        assert!(!p.iter().any(|s| s.contains("heavy")));
    }

    #[test]
    fn parses_versions() {
        assert_eq!(RustVersion::parse("1.94"), Some(RustVersion(1, 94, 0)));
        assert!(RustVersion::parse("1.94.1") > RustVersion::parse("1.94"));
        assert_eq!(RustVersion::parse("x"), None);
    }
}
