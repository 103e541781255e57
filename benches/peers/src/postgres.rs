//! The Postgres half: raw sqlx `SELECT` / conditional `UPDATE`,
//! tower-sessions' sqlx store `load` / `save`, our `load` / `version` /
//! `update`, at 1 and 16 tasks. Every pool: 16 connections, no
//! `test_before_acquire`. Everything lives in one schema of this run,
//! dropped at the end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version};
use session_storage_sql::{PostgresConfig, PostgresStore};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPoolOptions;
use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};

use crate::run::{Op, OpFn, ServerCpu, cell, ratios, session_of};
use crate::{SESSIONS, Settings, cpu, metadata_pairs};

/// Local TCP ports of this process's sockets (from `/proc/self/fd` and
/// `/proc/self/net/tcp{,6}`): how the benchmark finds its own backends.
fn own_ports() -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9
                && inodes.contains(cols[9])
                && let Some(port) = cols[1].rsplit(':').next()
                && let Ok(port) = u16::from_str_radix(port, 16)
            {
                ports.insert(port);
            }
        }
    }
    ports
}

/// The CPU time so far of the Postgres backends serving this process's
/// connections, ns (`None` when a backend's `/proc/PID/schedstat` cannot
/// be read: another machine, or no permission).
async fn backends_ns(admin: &sqlx::PgPool) -> Option<u64> {
    let ports = own_ports();
    let rows: Vec<(i32, Option<i32>)> = sqlx::query_as(
        "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL",
    )
    .fetch_all(admin)
    .await
    .ok()?;
    let mut total = 0;
    for (pid, port) in rows {
        if port
            .and_then(|p| u16::try_from(p).ok())
            .is_some_and(|p| ports.contains(&p))
        {
            total += cpu::process_ns(u32::try_from(pid).ok()?)?;
        }
    }
    Some(total)
}

pub async fn run(url: &str, settings: &Settings) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("peerbench_{}_{nanos}", std::process::id());
    let ttl = Duration::from_secs(600);
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to Postgres");
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&admin)
        .await
        .unwrap();

    // Ours.
    let store = PostgresStore::connect(
        PostgresConfig::new(url)
            .schema(&schema)
            .store(StoreConfig::new(ttl).unwrap()),
    )
    .await
    .expect("connect our store");
    let mut md = Metadata::new();
    for (k, v) in metadata_pairs() {
        md = md.with(&k, &v).unwrap();
    }
    let md = Arc::new(md);
    let ids: Arc<Vec<SessionId>> = Arc::new((0..SESSIONS).map(|_| SessionId::generate()).collect());
    for id in ids.iter() {
        store.create(id, &md, Ttl::Default).await.unwrap().unwrap();
    }
    let versions: Arc<Vec<AtomicU64>> =
        Arc::new((0..SESSIONS).map(|_| AtomicU64::new(1)).collect());

    // Raw sqlx: a table of the same shape, the same pool settings.
    let raw = PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(url)
        .await
        .expect("raw pool");
    let raw_table = format!("\"{schema}\".raw");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {raw_table} (id text PRIMARY KEY, version bigint NOT NULL, \
         metadata text NOT NULL, expires_at timestamptz NOT NULL)"
    )))
    .execute(&raw)
    .await
    .unwrap();
    let raw_ids: Arc<Vec<String>> = Arc::new((0..SESSIONS).map(|i| format!("raw-{i}")).collect());
    for id in raw_ids.iter() {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {raw_table} VALUES ($1, 1, $2, now() + interval '600 seconds')"
        )))
        .bind(id)
        .bind(md.json())
        .execute(&raw)
        .await
        .unwrap();
    }
    let raw_versions: Arc<Vec<AtomicU64>> =
        Arc::new((0..SESSIONS).map(|_| AtomicU64::new(1)).collect());
    let select: Arc<str> =
        format!("SELECT version, metadata FROM {raw_table} WHERE id = $1 AND expires_at > now()")
            .into();
    let update: Arc<str> = format!(
        "UPDATE {raw_table} SET version = version + 1, metadata = $3, \
         expires_at = now() + interval '600 seconds' \
         WHERE id = $1 AND version = $2 AND expires_at > now() RETURNING version"
    )
    .into();

    // tower-sessions' sqlx store, on sqlx 0.8, in the same schema.
    let tower_pool = sqlx08::postgres::PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(url)
        .await
        .expect("tower-sessions pool");
    let tower = tower_sessions_sqlx_store::PostgresStore::new(tower_pool.clone())
        .with_schema_name(&schema)
        .unwrap()
        .with_table_name("tower_sessions")
        .unwrap();
    tower.migrate().await.expect("tower-sessions migrate");
    let tower = Arc::new(tower);
    let data: HashMap<String, serde_json::Value> = metadata_pairs()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let mut records = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut record = Record {
            id: Id::default(),
            data: data.clone(),
            expiry_date: time::OffsetDateTime::now_utc() + ttl,
        };
        tower
            .create(&mut record)
            .await
            .expect("tower-sessions create");
        records.push(record);
    }
    let records = Arc::new(records);

    let op = |name: &'static str, run: OpFn| Op { name, run };
    let ops = |tasks: usize| -> Vec<Op> {
        vec![
            op("raw SELECT", {
                let (raw, ids, select) = (raw.clone(), raw_ids.clone(), select.clone());
                Arc::new(move |t, n| {
                    let (raw, ids, select) = (raw.clone(), ids.clone(), select.clone());
                    Box::pin(async move {
                        let row: Option<(i64, String)> = sqlx::query_as(AssertSqlSafe(select))
                            .bind(&ids[session_of(t, tasks, n)])
                            .fetch_optional(&raw)
                            .await
                            .unwrap();
                        assert!(row.is_some());
                    })
                })
            }),
            op("raw conditional UPDATE", {
                let (raw, ids, update, md, versions) = (
                    raw.clone(),
                    raw_ids.clone(),
                    update.clone(),
                    md.clone(),
                    raw_versions.clone(),
                );
                Arc::new(move |t, n| {
                    let (raw, ids, update, md, versions) = (
                        raw.clone(),
                        ids.clone(),
                        update.clone(),
                        md.clone(),
                        versions.clone(),
                    );
                    Box::pin(async move {
                        let i = session_of(t, tasks, n);
                        let v = versions[i].load(Ordering::Relaxed);
                        let (next,): (i64,) = sqlx::query_as(AssertSqlSafe(update))
                            .bind(&ids[i])
                            .bind(i64::try_from(v).unwrap())
                            .bind(md.json())
                            .fetch_one(&raw)
                            .await
                            .unwrap();
                        versions[i].store(u64::try_from(next).unwrap(), Ordering::Relaxed);
                    })
                })
            }),
            op("tower-sessions load", {
                let (tower, records) = (tower.clone(), records.clone());
                Arc::new(move |t, n| {
                    let (tower, records) = (tower.clone(), records.clone());
                    Box::pin(async move {
                        let r = tower
                            .load(&records[session_of(t, tasks, n)].id)
                            .await
                            .unwrap();
                        assert!(r.is_some());
                    })
                })
            }),
            op("tower-sessions save", {
                let (tower, records) = (tower.clone(), records.clone());
                Arc::new(move |t, n| {
                    let (tower, records) = (tower.clone(), records.clone());
                    Box::pin(async move {
                        tower.save(&records[session_of(t, tasks, n)]).await.unwrap();
                    })
                })
            }),
            op("our load", {
                let (store, ids) = (store.clone(), ids.clone());
                Arc::new(move |t, n| {
                    let (store, ids) = (store.clone(), ids.clone());
                    Box::pin(async move {
                        let r = store.load(&ids[session_of(t, tasks, n)]).await.unwrap();
                        assert!(r.is_some());
                    })
                })
            }),
            op("our version", {
                let (store, ids) = (store.clone(), ids.clone());
                Arc::new(move |t, n| {
                    let (store, ids) = (store.clone(), ids.clone());
                    Box::pin(async move {
                        let r = store.version(&ids[session_of(t, tasks, n)]).await.unwrap();
                        assert!(r.is_some());
                    })
                })
            }),
            op("our update", {
                let (store, ids, md, versions) =
                    (store.clone(), ids.clone(), md.clone(), versions.clone());
                Arc::new(move |t, n| {
                    let (store, ids, md, versions) =
                        (store.clone(), ids.clone(), md.clone(), versions.clone());
                    Box::pin(async move {
                        let i = session_of(t, tasks, n);
                        let expected = Version::new(versions[i].load(Ordering::Relaxed));
                        match store.update(&ids[i], expected, &md).await.unwrap() {
                            Update::Applied(v) => versions[i].store(v.get(), Ordering::Relaxed),
                            other => panic!("update of an owned session: {other:?}"),
                        }
                    })
                })
            }),
        ]
    };

    let server: ServerCpu = {
        let admin = admin.clone();
        Arc::new(move || {
            let admin = admin.clone();
            Box::pin(async move { backends_ns(&admin).await })
        })
    };
    let note = "Server CPU: `/proc/PID/schedstat` of the Postgres backends serving this \
                process's connections (found by client port in `pg_stat_activity`), over the \
                window, divided by the operations; background writers and the WAL writer are \
                not counted. `n/a`: a backend's schedstat was not readable.";
    let pairs = [
        ("our update", "raw conditional UPDATE", Some(0.85)),
        ("our load", "tower-sessions load", Some(0.95)),
        ("our version", "tower-sessions load", None),
        ("our update", "tower-sessions save", None),
        ("our load", "raw SELECT", None),
        ("tower-sessions load", "raw SELECT", None),
        ("tower-sessions save", "raw conditional UPDATE", None),
    ];
    for tasks in [1, 16] {
        let rows = cell("Postgres", &ops(tasks), tasks, settings, &server, note).await;
        let shown: Vec<_> = pairs
            .iter()
            .map(|&(a, b, t)| (a, b, if tasks == 16 { t } else { None }))
            .collect();
        ratios(&rows, &shown);
    }

    drop(store);
    raw.close().await;
    tower_pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}
