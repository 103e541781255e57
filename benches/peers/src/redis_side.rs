//! The Redis half: raw redis-rs `GET` / `SET EX`, tower-sessions' Redis
//! store (on fred) `load` / `save`, our `load` / `version` / `update`, at 1
//! and 64 tasks, each client on one multiplexed connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::ClientLike;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version};
use session_storage_redis::{RedisConfig, RedisStore};
use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};

use crate::run::{Op, OpFn, ServerCpu, cell, ratios, session_of};
use crate::{SESSIONS, Settings, metadata_pairs};

/// The Redis server's CPU time (`used_cpu_sys` + `used_cpu_user` of `INFO
/// cpu`), ns: every client's work, so run it on a server of its own.
async fn server_ns(conn: &mut ConnectionManager) -> Option<u64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.ok()?;
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some(((field("used_cpu_sys")? + field("used_cpu_user")?) * 1e9) as u64)
}

/// `(calls, usec)` of one command in `INFO commandstats`.
async fn command_stats(conn: &mut ConnectionManager, command: &str) -> Option<(u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .ok()?;
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))?;
    let get = |k: &str| -> Option<u64> {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some((get("calls")?, get("usec")?))
}

pub async fn run(url: &str, settings: &Settings) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("peerbench:{}:{nanos}:", std::process::id());
    let ttl = Duration::from_secs(600);

    // Ours.
    let store = RedisStore::connect(
        RedisConfig::new(url)
            .prefix(&prefix)
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

    // Raw redis-rs, the same kind of connection the store uses.
    let client = redis::Client::open(url).unwrap();
    let raw = ConnectionManager::new(client)
        .await
        .expect("raw connection");
    let raw_keys: Arc<Vec<String>> =
        Arc::new((0..SESSIONS).map(|i| format!("{prefix}raw:{i}")).collect());
    let value: Arc<Vec<u8>> = Arc::new(md.json().as_bytes().to_vec());
    for key in raw_keys.iter() {
        let _: () = raw
            .clone()
            .set_ex(key, value.as_slice(), 600)
            .await
            .unwrap();
    }

    // tower-sessions' Redis store on one fred client (one connection,
    // pipelined like ours).
    let fred_client = fred::prelude::Client::new(
        fred::prelude::Config::from_url(url).expect("fred config"),
        None,
        None,
        None,
    );
    fred_client.init().await.expect("fred connect");
    let tower = Arc::new(tower_sessions_redis_store::RedisStore::new(
        fred_client.clone(),
    ));
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
            op("raw GET", {
                let (raw, keys) = (raw.clone(), raw_keys.clone());
                Arc::new(move |t, n| {
                    let (mut raw, keys) = (raw.clone(), keys.clone());
                    Box::pin(async move {
                        let v: Option<Vec<u8>> =
                            raw.get(&keys[session_of(t, tasks, n)]).await.unwrap();
                        assert!(v.is_some());
                    })
                })
            }),
            op("raw SET EX", {
                let (raw, keys, value) = (raw.clone(), raw_keys.clone(), value.clone());
                Arc::new(move |t, n| {
                    let (mut raw, keys, value) = (raw.clone(), keys.clone(), value.clone());
                    Box::pin(async move {
                        let _: () = raw
                            .set_ex(&keys[session_of(t, tasks, n)], value.as_slice(), 600)
                            .await
                            .unwrap();
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
        let conn = raw.clone();
        Arc::new(move || {
            let mut conn = conn.clone();
            Box::pin(async move { server_ns(&mut conn).await })
        })
    };
    let note = "Server CPU: the Redis server's `used_cpu_sys + used_cpu_user` over the window \
                divided by the operations (every client of that server counts: use a server of \
                its own).";
    let pairs = [
        ("our load", "tower-sessions load", Some(0.95)),
        ("our version", "tower-sessions load", Some(1.0)),
        ("our update", "tower-sessions save", Some(0.9)),
        ("our load", "raw GET", None),
        ("our version", "raw GET", None),
        ("our update", "raw SET EX", None),
        ("tower-sessions load", "raw GET", None),
        ("tower-sessions save", "raw SET EX", None),
    ];
    for tasks in [1, 64] {
        let rows = cell("Redis", &ops(tasks), tasks, settings, &server, note).await;
        // Targets are for 64 tasks; at 1 task the ratios are shown bare.
        let shown: Vec<_> = pairs
            .iter()
            .map(|&(a, b, t)| (a, b, if tasks == 64 { t } else { None }))
            .collect();
        ratios(&rows, &shown);
    }

    // Server time per call of what our operations send, from the deltas of
    // `INFO commandstats` over one window of each (no CONFIG RESETSTAT:
    // other clients' counters are left alone).
    println!("## Redis server time per call (INFO commandstats deltas, 64 tasks)\n");
    println!("| operation | command | calls per op | usec_per_call |");
    println!("|---|---|---|---|");
    let all = ops(64);
    for (name, commands) in [
        ("our update", &["evalsha"][..]),
        ("our load", &["get", "time", "pttl"][..]),
        ("our version", &["getrange"][..]),
        ("tower-sessions load", &["get"][..]),
        ("tower-sessions save", &["set"][..]),
    ] {
        let op = all.iter().find(|o| o.name == name).unwrap();
        let mut conn = raw.clone();
        let mut before = Vec::new();
        for c in commands {
            before.push(command_stats(&mut conn, c).await.unwrap_or((0, 0)));
        }
        let counted = crate::run::count(op, 64, settings.window).await;
        for (c, (calls0, usec0)) in commands.iter().zip(before) {
            let (calls1, usec1) = command_stats(&mut conn, c).await.unwrap_or((0, 0));
            let calls = calls1.saturating_sub(calls0);
            println!(
                "| {name} | {c} | {:.2} | {:.2} |",
                calls as f64 / counted.max(1) as f64,
                usec1.saturating_sub(usec0) as f64 / calls.max(1) as f64
            );
        }
    }
    println!();

    // Clean up what this run created, and nothing else.
    for id in ids.iter() {
        let _ = store.delete(id).await;
    }
    for key in raw_keys.iter() {
        let _: Result<i64, _> = raw.clone().del(key).await;
    }
    for record in records.iter() {
        let _ = tower.delete(&record.id).await;
    }
    let _ = fred_client.quit().await;
}
