//! The release flow on a temporary git repository holding a small fixture
//! workspace; CI, packaging and the registry are stubbed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;

/// A temporary directory removed on drop.
struct TempRepo(PathBuf);

impl Drop for TempRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn g(root: &Path, args: &[&str]) -> String {
    git(root, args).unwrap()
}

/// Members listed out of dependency order, a private tool, a private test
/// kit a published crate dev-depends on, three commits
/// after the last tag.
fn fixture(tag: &str) -> TempRepo {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = std::env::temp_dir().join(format!(
        "xtask-release-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root).unwrap();
    let repo = TempRepo(root.clone());
    write(
        &root,
        "Cargo.toml",
        r#"[workspace]
resolver = "3"
members = ["fx-manager", "fx-tool", "fx-store", "fx-core", "fx-kit"]

[workspace.package]
version = "0.1.0"
edition = "2024"
license = "MIT OR Apache-2.0"

[workspace.dependencies]
fx-core = { path = "fx-core", version = "0.1.0" }
fx-store = { path = "fx-store", version = "0.1.0", default-features = false }
"#,
    );
    let krate = |name: &str, deps: &str, publish: bool| {
        write(
            &root,
            &format!("{name}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion.workspace = true\nedition.workspace = true\nlicense.workspace = true\ndescription = \"fixture\"\n{}\n[dependencies]\n{deps}",
                if publish { "" } else { "publish = false\n" }
            ),
        );
        write(&root, &format!("{name}/src/lib.rs"), "//! fixture\n");
    };
    krate("fx-core", "", true);
    // A private test kit as a path-only dev-dependency of a published crate.
    krate("fx-kit", "", false);
    krate(
        "fx-store",
        "fx-core.workspace = true\n[dev-dependencies]\nfx-kit = { path = \"../fx-kit\" }\n",
        true,
    );
    krate(
        "fx-manager",
        "fx-core.workspace = true\nfx-store = { path = \"../fx-store\", version = \"0.1.0\" }\n",
        true,
    );
    krate(
        "fx-tool",
        "fx-manager = { path = \"../fx-manager\" }\n",
        false,
    );
    write(&root, ".gitignore", "/target\nCargo.lock\n");
    write(
        &root,
        "CHANGELOG.md",
        "# Changelog\n\nPreamble.\n\n## Unreleased\n\n- hand-written note\n\n## 0.1.0 - 2026-01-01\n\n- first\n",
    );
    g(&root, &["init", "-q", "-b", "main"]);
    g(&root, &["config", "user.email", "test@example.invalid"]);
    g(&root, &["config", "user.name", "test"]);
    g(&root, &["config", "commit.gpgsign", "false"]);
    g(&root, &["config", "tag.gpgsign", "false"]);
    g(&root, &["add", "-A"]);
    g(&root, &["commit", "-q", "-m", "initial"]);
    g(&root, &["tag", "v0.1.0"]);
    for (file, subject) in [
        ("fx-core/src/a.rs", "fx-core: add ids"),
        ("fx-store/src/b.rs", "fx-store: compare-and-set"),
        ("README.md", "tidy the README"),
        ("fx-core/src/c.rs", "fx-core: faster keys"),
        ("fx-store/src/d.rs", "fx-store bench: a baseline"),
    ] {
        write(&root, file, subject);
        g(&root, &["add", "-A"]);
        g(&root, &["commit", "-q", "-m", subject]);
    }
    repo
}

/// Stub hooks: records every call; the registry is a set of (name, version).
#[derive(Default)]
struct Stub {
    calls: Vec<String>,
    registry: BTreeSet<(String, String)>,
    fail_publish: Option<String>,
}

impl Hooks for Stub {
    fn ci(&mut self, _: &Path) -> Result<(), String> {
        self.calls.push("ci".into());
        Ok(())
    }
    fn lock(&mut self, _: &Path) -> Result<(), String> {
        self.calls.push("lock".into());
        Ok(())
    }
    fn package(&mut self, _: &Path, crates: &[String]) -> Result<(), String> {
        self.calls.push(format!("package {}", crates.join(",")));
        Ok(())
    }
    fn published(&mut self, name: &str, version: &str) -> Result<bool, String> {
        Ok(self
            .registry
            .contains(&(name.to_owned(), version.to_owned())))
    }
    fn publish(&mut self, root: &Path, name: &str) -> Result<(), String> {
        if self.fail_publish.as_deref() == Some(name) {
            self.fail_publish = None;
            return Err(format!("registry unreachable while publishing {name}"));
        }
        // What gets published is the committed, tagged tree.
        assert!(g(root, &["status", "--porcelain"]).is_empty());
        self.calls.push(format!("publish {name}"));
        self.registry.insert((name.to_owned(), "0.1.1".to_owned()));
        Ok(())
    }
}

/// Every file outside `.git`, byte for byte, plus HEAD, refs and the index state.
fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Vec<u8>>, String) {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    let state = format!(
        "{}\n{}\n{}",
        g(root, &["rev-parse", "HEAD"]),
        g(root, &["show-ref"]),
        g(root, &["status", "--porcelain", "--ignored"])
    );
    (files, state)
}

const DATE: &str = "2026-11-28";

#[test]
fn dry_run_plans_and_leaves_the_tree_byte_identical() {
    let repo = fixture("dry");
    let before = snapshot(&repo.0);
    let mut stub = Stub::default();
    let plan = release(&repo.0, Bump::Patch, false, DATE, &mut stub).unwrap();
    assert_eq!(snapshot(&repo.0), before, "a dry run changed the tree");
    assert_eq!(plan.current, Version(0, 1, 0));
    assert_eq!(plan.next, Version(0, 1, 1));
    assert_eq!(plan.tag, "v0.1.1");
    assert_eq!(plan.order, ["fx-core", "fx-store", "fx-manager"]);
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    // Packaged, never published, no CI, no lock rewrite.
    assert_eq!(stub.calls, ["package fx-core,fx-store,fx-manager"]);
    assert_eq!(
        plan.changelog,
        "## 0.1.1 - 2026-11-28\n\n### fx-core\n\n- add ids\n- faster keys\n\n### fx-store\n\n- compare-and-set\n- bench: a baseline\n\n### Other\n\n- tidy the README\n"
    );
}

#[test]
fn bumps_other_than_patch() {
    let repo = fixture("bumps");
    assert_eq!(
        plan(&repo.0, Bump::Minor, DATE).unwrap().next,
        Version(0, 2, 0)
    );
    assert_eq!(
        plan(&repo.0, Bump::Major, DATE).unwrap().next,
        Version(1, 0, 0)
    );
    let exact = plan(&repo.0, Bump::Exact(Version(0, 3, 7)), DATE).unwrap();
    assert_eq!(exact.next, Version(0, 3, 7));
    let backwards = plan(&repo.0, Bump::Exact(Version(0, 0, 9)), DATE).unwrap();
    assert!(backwards.refusals.iter().any(|r| r.contains("not above")));
}

#[test]
fn execute_bumps_in_lockstep_commits_tags_and_publishes_in_order() {
    let repo = fixture("exec");
    let mut stub = Stub::default();
    release(&repo.0, Bump::Patch, true, DATE, &mut stub).unwrap();
    assert_eq!(
        stub.calls,
        [
            "ci",
            "lock",
            "package fx-core,fx-store,fx-manager",
            "publish fx-core",
            "publish fx-store",
            "publish fx-manager"
        ]
    );
    let root = std::fs::read_to_string(repo.0.join("Cargo.toml")).unwrap();
    assert!(
        root.contains("[workspace.package]\nversion = \"0.1.1\"\n"),
        "{root}"
    );
    assert!(
        root.contains("fx-core = { path = \"fx-core\", version = \"0.1.1\" }"),
        "{root}"
    );
    assert!(root.contains(
        "fx-store = { path = \"fx-store\", version = \"0.1.1\", default-features = false }"
    ));
    let manager = std::fs::read_to_string(repo.0.join("fx-manager/Cargo.toml")).unwrap();
    assert!(
        manager.contains("fx-store = { path = \"../fx-store\", version = \"0.1.1\" }"),
        "{manager}"
    );
    // The edition's "2024" and other versions are untouched.
    assert!(root.contains("edition = \"2024\""));
    let changelog = std::fs::read_to_string(repo.0.join("CHANGELOG.md")).unwrap();
    assert_eq!(
        changelog,
        "# Changelog\n\nPreamble.\n\n## Unreleased\n\n## 0.1.1 - 2026-11-28\n\n- hand-written note\n\n### fx-core\n\n- add ids\n- faster keys\n\n### fx-store\n\n- compare-and-set\n- bench: a baseline\n\n### Other\n\n- tidy the README\n\n## 0.1.0 - 2026-01-01\n\n- first\n"
    );
    assert_eq!(g(&repo.0, &["log", "-1", "--format=%s"]), "release v0.1.1");
    assert_eq!(
        tag_commit(&repo.0, "v0.1.1").unwrap(),
        g(&repo.0, &["rev-parse", "HEAD"])
    );
    assert!(g(&repo.0, &["status", "--porcelain"]).is_empty());
}

#[test]
fn an_interrupted_release_resumes_where_it_stopped() {
    let repo = fixture("resume");
    let mut stub = Stub {
        fail_publish: Some("fx-store".into()),
        ..Stub::default()
    };
    let err = release(&repo.0, Bump::Patch, true, DATE, &mut stub).unwrap_err();
    assert!(err.contains("cargo xtask release 0.1.1 --execute"), "{err}");
    assert_eq!(stub.calls.last().unwrap(), "publish fx-core");
    let head = g(&repo.0, &["rev-parse", "HEAD"]);
    let tree = snapshot(&repo.0);

    stub.calls.clear();
    let plan = release(
        &repo.0,
        Bump::Exact(Version(0, 1, 1)),
        true,
        DATE,
        &mut stub,
    )
    .unwrap();
    assert!(plan.resume);
    // No second CI, bump, commit or tag: only what is missing is published.
    assert_eq!(stub.calls, ["publish fx-store", "publish fx-manager"]);
    assert_eq!(g(&repo.0, &["rev-parse", "HEAD"]), head);
    assert_eq!(snapshot(&repo.0), tree);

    // A third run publishes nothing.
    stub.calls.clear();
    release(
        &repo.0,
        Bump::Exact(Version(0, 1, 1)),
        true,
        DATE,
        &mut stub,
    )
    .unwrap();
    assert!(stub.calls.is_empty(), "{:?}", stub.calls);
}

#[test]
fn preflight_refuses_and_changes_nothing() {
    let repo = fixture("refuse");
    // Dirty tree.
    write(&repo.0, "fx-core/src/lib.rs", "//! changed\n");
    let before = snapshot(&repo.0);
    let mut stub = Stub::default();
    let err = release(&repo.0, Bump::Patch, true, DATE, &mut stub).unwrap_err();
    assert!(err.contains("uncommitted"), "{err}");
    assert_eq!(snapshot(&repo.0), before);
    g(&repo.0, &["checkout", "-q", "--", "."]);
    // Tag taken.
    g(&repo.0, &["tag", "v0.1.1", "HEAD~1"]);
    let err = release(&repo.0, Bump::Patch, true, DATE, &mut stub).unwrap_err();
    assert!(err.contains("tag v0.1.1 already exists"), "{err}");
    // Not on main.
    g(&repo.0, &["checkout", "-q", "-b", "feature"]);
    let err = release(&repo.0, Bump::Minor, true, DATE, &mut stub).unwrap_err();
    assert!(err.contains("not `main`"), "{err}");
    assert!(stub.calls.is_empty(), "{:?}", stub.calls);
}

#[test]
fn civil_dates() {
    assert_eq!(civil_date(0), "1970-01-01");
    assert_eq!(civil_date(1_772_236_800), "2026-02-28");
    assert_eq!(civil_date(951_782_400), "2000-02-29");
}
