//! `session-gateway sessions …`: operator commands over any store URL.
//!
//! ```text
//! session-gateway sessions list                      [--store URL] [--json] [--show-values]
//! session-gateway sessions show ID                   [--store URL] [--json] [--show-values]
//! session-gateway sessions terminate ID              [--store URL] [--config FILE | --backend NAME=URL…]
//! session-gateway sessions expire-backend ID NAME    [--store URL]
//! session-gateway sessions evict-backend NAME        [--store URL]
//! ```
//!
//! Metadata values (backend session ids, identities, the client's
//! `initialize`) are redacted unless `--show-values`. `terminate` deletes
//! the backend sessions too when it knows the backends (`--config`,
//! `--backend`); the writes go through a [`SessionManager`], so every
//! gateway node sees them like any other node's.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use session_core::{Metadata, SessionId, SessionStore, Snapshot, WorkloadId, keys};
use session_manager::{BackendExpiry, BuildCause, Built, SessionFactory, SessionManager};

use crate::config::Config;
use crate::reaper;
use crate::session::{BACKEND_INIT_PREFIX, CLIENT_INIT};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: session-gateway sessions list | show ID | terminate ID | expire-backend ID NAME | evict-backend NAME
       [--store URL] [--store-prefix P] [--json] [--show-values] [--config FILE] [--backend NAME=URL]";

/// A factory that never opens anything: the operator commands only edit storage.
struct Offline;

#[async_trait]
impl SessionFactory for Offline {
    type Session = ();
    type Error = std::convert::Infallible;

    async fn build(&self, s: &Snapshot, _: BuildCause) -> Result<Built<()>, Self::Error> {
        Ok(Built::new((), s.metadata.clone()))
    }

    async fn close(&self, _session: ()) {}
}

struct Opts {
    store: String,
    json: bool,
    show_values: bool,
    cfg: Config,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, BoxError> {
    let mut o = Opts {
        store: "memory://".into(),
        json: false,
        show_values: false,
        cfg: Config::default(),
        positional: Vec::new(),
    };
    let mut store = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |n: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| BoxError::from(format!("{n} needs a value\n{USAGE}")))
        };
        match a.as_str() {
            "--store" => store = Some(value("--store")?),
            "--store-prefix" => o.cfg.store_prefix = Some(value("--store-prefix")?),
            "--json" => o.json = true,
            "--show-values" => o.show_values = true,
            "--config" => o.cfg = Config::load(&value("--config")?)?,
            "--backend" => o.cfg.add_backend_arg(&value("--backend")?)?,
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}").into()),
            _ => o.positional.push(a.clone()),
        }
    }
    o.store = store.unwrap_or_else(|| o.cfg.store.clone());
    Ok(o)
}

fn redact(key: &str, value: &str, show: bool) -> String {
    if show || key == keys::BACKEND_IDS {
        value.to_owned()
    } else {
        format!("<redacted, {} bytes>", value.len())
    }
}

fn binding_kind(md: &Metadata) -> &'static str {
    match md.get(keys::IDENTITY_BINDING) {
        Some(session_core::UNAUTHENTICATED) => "unauthenticated",
        Some(_) => "identity",
        None => "none (placeholder)",
    }
}

fn describe(id: &SessionId, version: u64, md: &Metadata, show: bool) -> serde_json::Value {
    let backends: Vec<serde_json::Value> = keys::backend_ids(md)
        .unwrap_or_default()
        .iter()
        .map(|w| {
            json!({
                "name": w.as_str(),
                "session": keys::backend_session(md, w).map(|s| redact("", s, show)),
            })
        })
        .collect();
    let metadata: serde_json::Map<String, serde_json::Value> = md
        .iter()
        .map(|(k, v)| (k.to_owned(), json!(redact(k, v, show))))
        .collect();
    json!({
        "id": id.as_str(),
        "version": version,
        "binding": binding_kind(md),
        "backends": backends,
        "metadata": metadata,
    })
}

fn id_arg(o: &Opts, i: usize) -> Result<SessionId, BoxError> {
    let raw = o
        .positional
        .get(i)
        .ok_or_else(|| BoxError::from(format!("missing session ID\n{USAGE}")))?;
    Ok(SessionId::parse(raw)?)
}

fn name_arg(o: &Opts, i: usize) -> Result<WorkloadId, BoxError> {
    let raw = o
        .positional
        .get(i)
        .ok_or_else(|| BoxError::from(format!("missing backend NAME\n{USAGE}")))?;
    Ok(WorkloadId::parse(raw)?)
}

/// Runs a `sessions` subcommand.
pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let o = parse(args)?;
    let Some(cmd) = o.positional.first().cloned() else {
        return Err(USAGE.into());
    };
    let store = crate::config::connect_store(&o.store, o.cfg.store_prefix.as_deref()).await?;
    match cmd.as_str() {
        "list" => list(&o, &store).await,
        "show" => show(&o, &store).await,
        "terminate" | "expire-backend" | "evict-backend" => {
            let mgr = SessionManager::builder(store.clone(), Offline).build();
            let r = write(&o, &cmd, &mgr, &store).await;
            mgr.shutdown().await;
            r
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    }
}

async fn list(o: &Opts, store: &Arc<dyn SessionStore>) -> Result<(), BoxError> {
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.scan(cursor.as_ref(), 256).await?;
        // Claims (records of backend-session deletes) are not sessions.
        for id in page.ids.iter().filter(|id| !reaper::is_claim(id)) {
            if let Some(rec) = store.peek(id).await? {
                rows.push(describe(
                    id,
                    rec.version.get(),
                    &rec.metadata,
                    o.show_values,
                ));
            }
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<38} {:>7}  {:<18} BACKENDS",
        "SESSION", "VERSION", "BINDING"
    );
    for r in &rows {
        let backends: Vec<String> = r["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let name = b["name"].as_str().unwrap_or("?");
                if b["session"].is_null() {
                    format!("{name}(no session)")
                } else {
                    name.to_owned()
                }
            })
            .collect();
        println!(
            "{:<38} {:>7}  {:<18} {}",
            r["id"].as_str().unwrap_or("?"),
            r["version"],
            r["binding"].as_str().unwrap_or("?"),
            backends.join(",")
        );
    }
    println!("{} session(s)", rows.len());
    Ok(())
}

async fn show(o: &Opts, store: &Arc<dyn SessionStore>) -> Result<(), BoxError> {
    let id = id_arg(o, 1)?;
    let Some(rec) = store.peek(&id).await? else {
        return Err(format!("session {id} not found").into());
    };
    let d = describe(&id, rec.version.get(), &rec.metadata, o.show_values);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    println!("session  {id}");
    println!("version  {}", rec.version.get());
    println!("binding  {}", binding_kind(&rec.metadata));
    for b in d["backends"].as_array().into_iter().flatten() {
        println!(
            "backend  {:<16} session {}",
            b["name"].as_str().unwrap_or("?"),
            b["session"].as_str().unwrap_or("(none)")
        );
    }
    for (k, v) in rec.metadata.iter() {
        if k == CLIENT_INIT || k.starts_with(BACKEND_INIT_PREFIX) {
            println!("meta     {k} = {}", redact(k, v, o.show_values));
        }
    }
    if !o.show_values {
        println!("(values redacted; --show-values prints them)");
    }
    Ok(())
}

async fn write(
    o: &Opts,
    cmd: &str,
    mgr: &SessionManager<Offline>,
    store: &Arc<dyn SessionStore>,
) -> Result<(), BoxError> {
    let report = match cmd {
        "terminate" => {
            let id = id_arg(o, 1)?;
            let rec = store.peek(&id).await?;
            let deleted = mgr.terminate(&id).await?;
            let mut backend_failures = None;
            if deleted && !o.cfg.backends.is_empty() {
                let http = reqwest::Client::new();
                if let Some(rec) = rec {
                    let pairs = reaper::recorded(&rec.metadata);
                    let r =
                        reaper::delete_once(&**store, &http, &o.cfg.backends, &id, &pairs).await;
                    backend_failures = Some(r.failed);
                }
            }
            json!({"terminated": deleted, "id": id.as_str(), "backend_delete_failures": backend_failures,
                   "note": if o.cfg.backends.is_empty() { "backend sessions not deleted: give --config or --backend" } else { "" }})
        }
        "expire-backend" => {
            let id = id_arg(o, 1)?;
            let w = name_arg(o, 2)?;
            let outcome = match mgr.notify_backend_expired(&id, &w).await? {
                BackendExpiry::Removed(s) => format!("removed (version {})", s.version.get()),
                BackendExpiry::NotPresent => "not present".to_owned(),
                BackendExpiry::SessionGone => "session gone".to_owned(),
                _ => "done".to_owned(),
            };
            json!({"id": id.as_str(), "backend": w.as_str(), "outcome": outcome})
        }
        _ => {
            let w = name_arg(o, 1)?;
            let r = mgr.evict_backend(&w).await?;
            json!({"backend": w.as_str(), "scanned": r.scanned, "removed": r.removed, "failed": r.failed})
        }
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(map) = report.as_object() {
        for (k, v) in map {
            if !(v.is_null() || v == "") {
                println!(
                    "{k}: {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                );
            }
        }
    }
    Ok(())
}
