//! Cost per operation from 1k to 1M sessions, against a baseline measured
//! at the same size in the same run.
//!
//! ```text
//! SESSION_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//! SESSION_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p session-manager --bench scale --features redis,postgres
//! ```
//!
//! For each backend the population grows 1k → 100k → 1M (`SCALE_SIZES`
//! overrides, e.g. `1000,10000`; `SCALE_BACKENDS` picks from
//! `memory,redis,postgres`). At each size every store operation runs on
//! random sessions of the population (and `create`/`delete` on fresh
//! ones), interleaved with its baseline in rounds, and the median of the
//! rounds' per-operation means is reported:
//!
//! - in process: `MemoryStore`'s operations and a `SessionManager`'s cache
//!   hit (`get` of a cached session, `Push` policy) and miss (`get` of a
//!   stored session the node has not cached: a restore), against a plain
//!   `HashMap` lookup; and the memory per cached session (the RSS delta
//!   while the node caches the sessions added at that size; freed memory
//!   the allocator reuses makes it a lower bound, so read the 1M figure);
//! - Redis (`RedisStore`, a unique key prefix) against a raw `GET`;
//! - Postgres (`PostgresStore`, a unique schema) against a raw point
//!   `SELECT version, metadata` on the store's own table and pool (and, for
//!   the writes, a raw conditional `UPDATE` row to read them against: the
//!   writes wait for WAL flushes, whose time drifts).
//!
//! A plain map itself slows from 1k to 1M (caches), so flatness is judged
//! on the ratio to the baseline: `ratio at 1M / ratio at 1k` (target
//! ≤ 1.3). Everything the bench writes is removed at the end.
#![allow(missing_docs, clippy::missing_panics_doc)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{Rng, backends};
use futures_util::StreamExt;
use session_core::Snapshot;
use session_core::{MemoryStore, Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update};
use session_manager::{BuildCause, Built, SessionFactory, SessionManager, ValidationPolicy};
use tokio::runtime::Runtime;

/// Resident set size in bytes (`/proc/self/statm`; 0 where there is none).
fn rss() -> isize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<isize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A factory whose live session is `()`: what the bench counts per cached
/// session is the manager's own (entry, snapshot, metadata), not an
/// application's backend connections.
struct Bare;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[async_trait::async_trait]
impl SessionFactory for Bare {
    type Session = ();
    type Error = Never;

    async fn build(&self, snapshot: &Snapshot, _: BuildCause) -> Result<Built<()>, Never> {
        Ok(Built::new((), snapshot.metadata.clone()))
    }

    async fn close(&self, (): ()) {}
}

/// Rounds per size; each op's result is the median of its round means.
const ROUNDS: usize = 7;
/// Operations per op and round.
const PER_ROUND: usize = 200;
/// Sessions of the population the ops pick from (at random).
const SAMPLE: usize = 4096;

/// The id of population member `i`: random-looking, so neither a btree
/// nor a hash table sees them in order.
fn id_of(salt: u64, i: u64) -> SessionId {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    SessionId::parse(&format!(
        "{:016x}-{:016x}",
        mix(salt ^ i),
        mix(i.wrapping_add(salt.rotate_left(17)))
    ))
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

type Op<'a> = Box<dyn FnMut(usize) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// Operations that write (on a server: wait for a WAL flush or an AOF
/// write).
const WRITES: &[&str] = &["raw UPDATE", "update", "touch", "create", "delete"];

/// [`measure_group`] on the reads, then on the writes: a write's flush
/// work (Postgres' WAL writer, checkpoints) would otherwise slow whichever
/// read follows it in the round. Results in `ops`' order.
async fn measure(ops: &mut [(&'static str, Op<'_>)]) -> Vec<Duration> {
    let mut times = vec![Duration::ZERO; ops.len()];
    for writes in [false, true] {
        let mut group: Vec<(usize, &mut (&'static str, Op<'_>))> = ops
            .iter_mut()
            .enumerate()
            .filter(|(_, (name, _))| WRITES.contains(name) == writes)
            .collect();
        let got = measure_group(&mut group).await;
        for ((k, _), t) in group.iter().zip(got) {
            times[*k] = t;
        }
    }
    times
}

/// Runs every op `PER_ROUND` times per round for `ROUNDS` rounds, ops
/// interleaved so drift hits all alike. Returns each op's median
/// per-operation time.
async fn measure_group(ops: &mut [(usize, &mut (&'static str, Op<'_>))]) -> Vec<Duration> {
    let mut means = vec![Vec::new(); ops.len()];
    let mut step = 0;
    for (_, (_, op)) in ops.iter_mut() {
        for _ in 0..PER_ROUND / 4 {
            op(step).await; // warm-up
            step += 1;
        }
    }
    for _ in 0..ROUNDS {
        for (k, (_, (_, op))) in ops.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                op(step).await;
                step += 1;
            }
            means[k].push(start.elapsed() / u32::try_from(PER_ROUND).unwrap());
        }
    }
    means.into_iter().map(median).collect()
}

/// One size's results: (op, median, ratio to the baseline).
struct Row {
    size: usize,
    results: Vec<(&'static str, Duration)>,
}

fn report(backend: &str, baseline: &str, rows: &[Row], extra: &[(usize, String)]) {
    println!("\n### {backend}\n");
    let names: Vec<&str> = rows[0].results.iter().map(|(n, _)| *n).collect();
    let base = |r: &Row| r.results.iter().find(|(n, _)| *n == baseline).unwrap().1;
    #[allow(clippy::cast_precision_loss)]
    let ratio = |r: &Row, name: &str| {
        let d = r.results.iter().find(|(n, _)| *n == name).unwrap().1;
        d.as_nanos() as f64 / base(r).as_nanos() as f64
    };
    print!("| op |");
    for r in rows {
        print!(" {} sessions: median (÷ {baseline}) |", r.size);
    }
    println!(
        " ratio {} ÷ {} (≤ 1.3) |",
        rows[rows.len() - 1].size,
        rows[0].size
    );
    print!("|---|");
    for _ in rows {
        print!("---|");
    }
    println!("---|");
    for name in names {
        print!("| {name} |");
        for r in rows {
            let d = r.results.iter().find(|(n, _)| *n == name).unwrap().1;
            print!(
                " {:.2} µs ({:.2}x) |",
                d.as_secs_f64() * 1e6,
                ratio(r, name)
            );
        }
        let growth = ratio(&rows[rows.len() - 1], name) / ratio(&rows[0], name);
        let flag = if growth <= 1.3 { "flat" } else { "NOT FLAT" };
        println!(" {growth:.2} {flag} |");
    }
    // The same as cost above the baseline: what the op adds to a lookup of
    // the same population (flat when it does not grow with the size).
    print!("\n| op, cost above {baseline} |");
    for r in rows {
        print!(" {} |", r.size);
    }
    println!();
    print!("|---|");
    for _ in rows {
        print!("---|");
    }
    println!();
    for (name, _) in rows[0].results.iter().filter(|(n, _)| *n != baseline) {
        print!("| {name} |");
        for r in rows {
            let d = r.results.iter().find(|(n, _)| n == name).unwrap().1;
            print!(
                " {:+.2} µs |",
                (d.as_secs_f64() - base(r).as_secs_f64()) * 1e6
            );
        }
        println!();
    }
    for (size, line) in extra {
        println!("\n{size} sessions: {line}");
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("SCALE_SIZES").map_or_else(
        |_| vec![1_000, 100_000, 1_000_000],
        |s| s.split(',').map(|n| n.trim().parse().unwrap()).collect(),
    )
}

fn wanted(backend: &str) -> bool {
    std::env::var("SCALE_BACKENDS").map_or(true, |s| s.split(',').any(|b| b.trim() == backend))
}

fn md() -> Metadata {
    backends(&["github", "jira"])
        .with("vmcp.identity.binding", "https://issuer.example\0user-1234")
        .unwrap()
}

/// Sessions a store op works on: a random sample of the population, with
/// the version each holds.
struct Sample {
    ids: Vec<SessionId>,
    versions: Vec<u64>,
}

impl Sample {
    /// `known`: versions earlier sizes' updates left (the rest are 1).
    fn new(salt: u64, population: usize, rng: &mut Rng, known: &HashMap<SessionId, u64>) -> Self {
        let ids: Vec<SessionId> = (0..SAMPLE.min(population))
            .map(|_| id_of(salt, rng.below(population as u64)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut ids = ids;
        // A random order, not the sorted one.
        for i in (1..ids.len()).rev() {
            ids.swap(i, usize::try_from(rng.below(i as u64 + 1)).unwrap());
        }
        // Every population member is stored at version 1 until updated.
        let versions = ids
            .iter()
            .map(|id| known.get(id).copied().unwrap_or(1))
            .collect();
        Self { ids, versions }
    }

    /// Records the versions this sample's updates left.
    fn remember(self, known: &mut HashMap<SessionId, u64>) {
        known.extend(self.ids.into_iter().zip(self.versions));
    }
}

/// The store operations, for any store; `fresh` are ids never stored.
fn store_ops<'a>(
    store: &'a dyn SessionStore,
    sample: &'a RwLock<Sample>,
    fresh: &'a RwLock<Vec<SessionId>>,
    md: &'a Metadata,
) -> Vec<(&'static str, Op<'a>)> {
    let pick = move |i: usize| {
        let s = sample.read().unwrap();
        s.ids[i % s.ids.len()].clone()
    };
    vec![
        (
            "load",
            Box::new(move |i| {
                Box::pin(async move {
                    assert!(store.load(&pick(i)).await.unwrap().is_some());
                })
            }),
        ),
        (
            "peek",
            Box::new(move |i| {
                Box::pin(async move {
                    assert!(store.peek(&pick(i)).await.unwrap().is_some());
                })
            }),
        ),
        (
            "version",
            Box::new(move |i| {
                Box::pin(async move {
                    assert!(store.version(&pick(i)).await.unwrap().is_some());
                })
            }),
        ),
        (
            "update",
            Box::new(move |i| {
                Box::pin(async move {
                    let (id, expected) = {
                        let s = sample.read().unwrap();
                        let k = i % s.ids.len();
                        (s.ids[k].clone(), session_core::Version::new(s.versions[k]))
                    };
                    match store.update(&id, expected, md).await.unwrap() {
                        Update::Applied(v) => {
                            let mut s = sample.write().unwrap();
                            let k = i % s.ids.len();
                            s.versions[k] = v.get();
                        }
                        other => panic!("{other:?}"),
                    }
                })
            }),
        ),
        (
            "touch",
            Box::new(move |i| {
                Box::pin(async move {
                    assert!(store.touch(&pick(i)).await.unwrap());
                })
            }),
        ),
        (
            "create",
            Box::new(move |_| {
                Box::pin(async move {
                    let id = SessionId::generate();
                    store.create(&id, md, Ttl::Default).await.unwrap().unwrap();
                    fresh.write().unwrap().push(id);
                })
            }),
        ),
        (
            "delete",
            Box::new(move |_| {
                Box::pin(async move {
                    // The sessions `create` made, so the population stays.
                    let id = fresh.write().unwrap().pop();
                    if let Some(id) = id {
                        assert!(store.delete(&id).await.unwrap());
                    }
                })
            }),
        ),
    ]
}

fn in_process(rt: &Runtime) {
    let md = md();
    let config = StoreConfig::new(Duration::from_secs(3600)).unwrap();
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(config));
    let sizes = sizes();
    let max = *sizes.iter().max().unwrap();
    let node = rt.block_on(async {
        SessionManager::builder(memory.clone(), Bare)
            .policy(ValidationPolicy::Push)
            .capacity(max * 2)
            .idle_timeout(Duration::from_secs(3600))
            // No periodic resync during the run: after each one (default
            // every 60 s) every entry's next hit probes once, which would
            // make the sizes measured later (populating 1M takes longer
            // than a minute) look like a slower cache. That once-per-
            // interval probe is the policy's cost, not the cache's.
            .resync_interval(Duration::from_secs(24 * 3600))
            .build()
    });
    let mut baseline: HashMap<SessionId, Arc<String>> = HashMap::new();
    let mut rng = Rng::new(7);
    let salt = 1;
    let mut rows = Vec::new();
    let mut extra = Vec::new();
    let mut have = 0;
    let mut known = HashMap::new();
    for size in sizes {
        // Stored, never cached by the node: one per miss (so the store
        // holds this many more than `size` while the ops run). Created
        // before the node caches the population: their change events can
        // overflow the change stream, whose resync makes every cached entry
        // probe once, and that must not land in the hit measurement.
        let misses: RwLock<Vec<SessionId>> = RwLock::new(rt.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..PER_ROUND / 4 + ROUNDS * PER_ROUND {
                let id = SessionId::generate();
                memory
                    .create(&id, &md, Ttl::Default)
                    .await
                    .unwrap()
                    .unwrap();
                ids.push(id);
            }
            ids
        }));
        let (store_bytes, cache_bytes) = rt.block_on(async {
            let before = rss();
            for i in have..size {
                let id = id_of(salt, i as u64);
                memory
                    .create(&id, &md, Ttl::Default)
                    .await
                    .unwrap()
                    .unwrap();
            }
            let stored = rss();
            for i in have..size {
                node.get(&id_of(salt, i as u64)).await.unwrap();
            }
            let cached = rss();
            (stored - before, cached - stored)
        });
        let added = isize::try_from(size - have).unwrap();
        for i in have..size {
            baseline.insert(id_of(salt, i as u64), Arc::new(md.json().to_owned()));
        }
        have = size;
        // (Plus the sessions earlier sizes' misses cached, until their
        // deletes below reach the node.)
        assert!(node.cached_len() >= size);
        extra.push((
            size,
            format!(
                "RSS per cached session (manager cache) {} B; per stored session (MemoryStore) {} B",
                cache_bytes / added,
                store_bytes / added
            ),
        ));
        let sample = RwLock::new(Sample::new(salt, size, &mut rng, &known));
        // One hit per sampled session first: an entry cached at an earlier
        // size may owe the one probe a change-stream resync asks for (the
        // earlier size's misses were deleted, and their events can
        // overflow the stream); the hits measured are the steady state.
        rt.block_on(async {
            let ids = sample.read().unwrap().ids.clone();
            for id in &ids {
                node.get(id).await.unwrap();
            }
        });
        let fresh = RwLock::new(Vec::new());
        let map = RwLock::new(std::mem::take(&mut baseline));
        let results = rt.block_on(async {
            let mut ops = store_ops(&*memory, &sample, &fresh, &md);
            let (map, sample, node, misses) = (&map, &sample, &node, &misses);
            ops.insert(
                0,
                (
                    "baseline HashMap get",
                    Box::new(move |i| {
                        Box::pin(async move {
                            let id = {
                                let s = sample.read().unwrap();
                                s.ids[i % s.ids.len()].clone()
                            };
                            assert!(black_box(map.read().unwrap().get(&id).cloned()).is_some());
                        })
                    }),
                ),
            );
            ops.push((
                "manager hit (Push)",
                Box::new(move |i| {
                    Box::pin(async move {
                        let id = {
                            let s = sample.read().unwrap();
                            s.ids[i % s.ids.len()].clone()
                        };
                        black_box(node.get(&id).await.unwrap());
                    })
                }),
            ));
            ops.push((
                "manager miss (restore)",
                Box::new(move |_| {
                    Box::pin(async move {
                        let id = misses.write().unwrap().pop().unwrap();
                        black_box(node.get(&id).await.unwrap());
                    })
                }),
            ));
            let times = measure(&mut ops).await;
            ops.iter().map(|(n, _)| *n).zip(times).collect::<Vec<_>>()
        });
        baseline = map.into_inner().unwrap();
        // The missed sessions leave the store again (and, by the change
        // stream, the node): the next size starts from its population.
        rt.block_on(async {
            let used = misses.into_inner().unwrap();
            for id in &used {
                memory.delete(id).await.unwrap();
            }
        });
        sample.into_inner().unwrap().remember(&mut known);
        rows.push(Row { size, results });
    }
    report(
        "in process (MemoryStore, SessionManager cache)",
        "baseline HashMap get",
        &rows,
        &extra,
    );
    rt.block_on(node.shutdown());
}

#[cfg(feature = "redis")]
fn redis(rt: &Runtime) {
    use redis::AsyncCommands;

    let url = std::env::var("SESSION_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("scale_{}:", SessionId::generate().as_str().replace('-', ""));
    let md = md();
    let (store, mut conn) = rt.block_on(async {
        let store = session_manager::RedisStore::connect(
            session_manager::RedisConfig::new(url.clone()).prefix(prefix.clone()),
        )
        .await
        .unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        (store, conn)
    });
    let mut rng = Rng::new(11);
    let salt = 2;
    let mut rows = Vec::new();
    let mut have = 0;
    let mut known = HashMap::new();
    for size in sizes() {
        rt.block_on(async {
            // Through the store API, many in flight on the multiplexed
            // connection (pipelined), so it works on any record layout.
            futures_util::stream::iter(have..size)
                .map(|i| {
                    let (store, md) = (&store, &md);
                    async move {
                        store
                            .create(&id_of(salt, i as u64), md, Ttl::Default)
                            .await
                            .unwrap()
                            .unwrap();
                    }
                })
                .buffer_unordered(512)
                .collect::<Vec<()>>()
                .await;
        });
        have = size;
        let sample = RwLock::new(Sample::new(salt, size, &mut rng, &known));
        let fresh = RwLock::new(Vec::new());
        let raw_keys: Vec<String> = (0..SAMPLE).map(|i| format!("{prefix}raw:{i}")).collect();
        rt.block_on(async {
            for k in &raw_keys {
                let () = conn.set(k, md.json()).await.unwrap();
            }
        });
        let results = rt.block_on(async {
            let mut ops = store_ops(&store, &sample, &fresh, &md);
            let (raw_keys, conn) = (&raw_keys, &conn);
            ops.insert(
                0,
                (
                    "raw GET",
                    Box::new(move |i| {
                        Box::pin(async move {
                            let mut c = conn.clone();
                            let v: Option<String> =
                                c.get(&raw_keys[i % raw_keys.len()]).await.unwrap();
                            assert!(v.is_some());
                        })
                    }),
                ),
            );
            let times = measure(&mut ops).await;
            ops.iter().map(|(n, _)| *n).zip(times).collect::<Vec<_>>()
        });
        sample.into_inner().unwrap().remember(&mut known);
        rows.push(Row { size, results });
    }
    report("Redis (RedisStore)", "raw GET", &rows, &[]);
    rt.block_on(async {
        // Remove everything under the prefix.
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: usize = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    });
}

#[cfg(feature = "postgres")]
fn postgres(rt: &Runtime) {
    use sqlx::AssertSqlSafe;

    let url = std::env::var("SESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!(
        "scale_{}",
        &SessionId::generate().as_str().replace('-', "")[..16]
    );
    let md = md();
    let (store, raw) = rt.block_on(async {
        let store = session_manager::PostgresStore::connect(
            session_manager::PostgresConfig::new(url.clone())
                .schema(&schema)
                .table("sessions"),
        )
        .await
        .unwrap();
        let raw = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect(&url)
            .await
            .unwrap();
        (store, raw)
    });
    let table = format!("\"{schema}\".sessions");
    let mut rng = Rng::new(13);
    let salt = 3;
    let mut rows = Vec::new();
    let mut have = 0;
    let mut known = HashMap::new();
    for size in sizes() {
        rt.block_on(async {
            // Bulk insert, 50k rows a statement, laid out as the store
            // writes them.
            let mut i = have;
            while i < size {
                let end = (i + 50_000).min(size);
                let ids: Vec<String> = (i..end)
                    .map(|k| id_of(salt, k as u64).as_str().to_owned())
                    .collect();
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {table} (id, version, metadata, created_at, expires_at, ttl) \
                     SELECT u, 1, $2, now(), now() + interval '1 hour', interval '1 hour' \
                     FROM unnest($1::text[]) AS u"
                )))
                .bind(ids)
                .bind(md.json())
                .execute(&raw)
                .await
                .unwrap();
                i = end;
            }
            sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .execute(&raw)
                .await
                .unwrap();
        });
        have = size;
        let sample = RwLock::new(Sample::new(salt, size, &mut rng, &known));
        let fresh = RwLock::new(Vec::new());
        let select = format!("SELECT version, metadata FROM {table} WHERE id = $1");
        // A raw conditional write (leaves the version alone, so the store's
        // compare-and-set still finds the version it expects).
        let update = format!(
            "UPDATE {table} SET metadata = $2 WHERE id = $1 AND version > 0 RETURNING version"
        );
        let results = rt.block_on(async {
            let mut ops = store_ops(&store, &sample, &fresh, &md);
            // On the store's own pool (same connections, no
            // `test_before_acquire`): only the statement differs.
            let (raw, sample, select, md) = (store.pool(), &sample, &select, &md);
            ops.insert(
                0,
                (
                    "raw SELECT",
                    Box::new(move |i| {
                        Box::pin(async move {
                            let id = {
                                let s = sample.read().unwrap();
                                s.ids[i % s.ids.len()].clone()
                            };
                            let row = sqlx::query(AssertSqlSafe(select.clone()))
                                .bind(id.as_str())
                                .fetch_optional(raw)
                                .await
                                .unwrap();
                            assert!(row.is_some());
                        })
                    }),
                ),
            );
            let update = &update;
            ops.insert(
                1,
                (
                    "raw UPDATE",
                    Box::new(move |i| {
                        Box::pin(async move {
                            let id = {
                                let s = sample.read().unwrap();
                                s.ids[i % s.ids.len()].clone()
                            };
                            let row = sqlx::query(AssertSqlSafe(update.clone()))
                                .bind(id.as_str())
                                .bind(md.json())
                                .fetch_optional(raw)
                                .await
                                .unwrap();
                            assert!(row.is_some());
                        })
                    }),
                ),
            );
            let times = measure(&mut ops).await;
            ops.iter().map(|(n, _)| *n).zip(times).collect::<Vec<_>>()
        });
        sample.into_inner().unwrap().remember(&mut known);
        rows.push(Row { size, results });
    }
    report("Postgres (PostgresStore)", "raw SELECT", &rows, &[]);
    rt.block_on(async {
        drop(store);
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(&raw)
            .await
            .unwrap();
    });
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the
    // command line.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("sizes {:?}, {ROUNDS} rounds of {PER_ROUND} per op", sizes());
    if wanted("memory") {
        in_process(&rt);
    }
    #[cfg(feature = "redis")]
    if wanted("redis") {
        redis(&rt);
    }
    #[cfg(feature = "postgres")]
    if wanted("postgres") {
        postgres(&rt);
    }
}
