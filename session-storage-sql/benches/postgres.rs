//! PostgresStore against raw sqlx on the same server, in one run.
//!
//! Baselines: a raw point `SELECT` and a raw conditional `UPDATE ...
//! RETURNING` on a table laid out like the store's. Measured: `version`,
//! `load` and `update` at 1 task (median latency; criterion also reports
//! its own estimates) and at 16 concurrent tasks (throughput), then the
//! ratios against the issue's targets. `update` is measured with each
//! [`NotifyMode`] (the default, after commit, is `update`), and once more
//! on a table without the `expires_at` index, to see whether updates that
//! can be HOT (`pg_stat_user_tables.n_tup_hot_upd`, printed) pay.
//!
//! ```text
//! SESSION_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p session-storage-sql --bench postgres
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version};
use session_storage_sql::{NotifyMode, PoolConfig, PostgresConfig, PostgresStore};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

const IDS: usize = 1024;
const TASKS: usize = 16;
const LAT_ROUNDS: usize = 5;
const LAT_PER_ROUND: usize = 400;
const TPUT_ROUNDS: usize = 3;
const TPUT_WINDOW: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    RawSelect,
    RawUpdate,
    Version,
    Load,
    Update,
    UpdateInStatement,
    UpdateNoNotify,
    UpdateHot,
    VersionPinged,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::RawSelect => "raw SELECT",
            Op::RawUpdate => "raw UPDATE",
            Op::Version => "version",
            Op::Load => "load",
            Op::Update => "update",
            Op::UpdateInStatement => "update (NotifyMode::InStatement)",
            Op::UpdateNoNotify => "update (NotifyMode::Off)",
            Op::UpdateHot => "update (no expires_at index)",
            Op::VersionPinged => "version (test_before_acquire)",
        }
    }
}

struct Bench {
    raw: PgPool,
    store: PostgresStore,
    pinged: PostgresStore,
    in_statement: PostgresStore,
    silent: PostgresStore,
    /// Default notification, on a table without the `expires_at` index.
    hot: PostgresStore,
    /// Rows only the hot store updates.
    ids4: Vec<SessionId>,
    versions4: Vec<AtomicU64>,
    ids: Vec<SessionId>,
    /// Rows only the in-statement store updates.
    ids2: Vec<SessionId>,
    versions2: Vec<AtomicU64>,
    /// Rows only the silent store updates.
    ids3: Vec<SessionId>,
    versions3: Vec<AtomicU64>,
    /// Expected version per id, for the store's and the raw CAS.
    store_versions: Vec<AtomicU64>,
    raw_versions: Vec<AtomicU64>,
    md: Metadata,
    raw_select: String,
    raw_update: String,
}

impl Bench {
    /// One operation on id slot `i` (slots are owned by one task at a time).
    async fn run(&self, op: Op, i: usize) {
        let id = &self.ids[i];
        match op {
            Op::RawSelect => {
                let row = sqlx::query(AssertSqlSafe(self.raw_select.clone()))
                    .bind(id.as_str())
                    .fetch_optional(&self.raw)
                    .await
                    .unwrap()
                    .unwrap();
                let _: (i64, &str) = (row.get(0), row.get(1));
            }
            Op::RawUpdate => {
                let expected = self.raw_versions[i].load(Ordering::Relaxed);
                let v: Option<i64> = sqlx::query_scalar(AssertSqlSafe(self.raw_update.clone()))
                    .bind(id.as_str())
                    .bind(i64::try_from(expected).unwrap())
                    .bind(self.md.json())
                    .fetch_optional(&self.raw)
                    .await
                    .unwrap();
                self.raw_versions[i].store(u64::try_from(v.unwrap()).unwrap(), Ordering::Relaxed);
            }
            Op::Version => {
                assert!(self.store.version(id).await.unwrap().is_some());
            }
            Op::UpdateHot => {
                let id = &self.ids4[i];
                let expected = Version::new(self.versions4[i].load(Ordering::Relaxed));
                match self.hot.update(id, expected, &self.md).await.unwrap() {
                    Update::Applied(v) => self.versions4[i].store(v.get(), Ordering::Relaxed),
                    other => panic!("{other:?}"),
                }
            }
            Op::UpdateInStatement => {
                let id = &self.ids2[i];
                let expected = Version::new(self.versions2[i].load(Ordering::Relaxed));
                match self
                    .in_statement
                    .update(id, expected, &self.md)
                    .await
                    .unwrap()
                {
                    Update::Applied(v) => self.versions2[i].store(v.get(), Ordering::Relaxed),
                    other => panic!("{other:?}"),
                }
            }
            Op::UpdateNoNotify => {
                let id = &self.ids3[i];
                let expected = Version::new(self.versions3[i].load(Ordering::Relaxed));
                match self.silent.update(id, expected, &self.md).await.unwrap() {
                    Update::Applied(v) => self.versions3[i].store(v.get(), Ordering::Relaxed),
                    other => panic!("{other:?}"),
                }
            }
            Op::VersionPinged => {
                assert!(self.pinged.version(id).await.unwrap().is_some());
            }
            Op::Load => {
                assert!(self.store.load(id).await.unwrap().is_some());
            }
            Op::Update => {
                let expected = Version::new(self.store_versions[i].load(Ordering::Relaxed));
                match self.store.update(id, expected, &self.md).await.unwrap() {
                    Update::Applied(v) => self.store_versions[i].store(v.get(), Ordering::Relaxed),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn setup(url: &str, schema: &str) -> Bench {
    let store_cfg = |pinged: bool| {
        PostgresConfig::new(url)
            .schema(schema)
            .table("sessions")
            .store(StoreConfig::default())
            .pool(PoolConfig {
                max_connections: 16,
                test_before_acquire: pinged,
                ..PoolConfig::default()
            })
    };
    let store = PostgresStore::connect(store_cfg(false))
        .await
        .expect("connect");
    let pinged = PostgresStore::connect(store_cfg(true).listen(false))
        .await
        .expect("connect");
    let in_statement = PostgresStore::connect(
        store_cfg(false)
            .listen(false)
            .notify(NotifyMode::InStatement),
    )
    .await
    .expect("connect");
    let hot = PostgresStore::connect(store_cfg(false).listen(false).table("sessions_hot"))
        .await
        .expect("connect");
    let silent = PostgresStore::connect(store_cfg(false).listen(false).notify(NotifyMode::Off))
        .await
        .expect("connect");
    let raw = PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(url)
        .await
        .expect("raw pool");
    let raw_table = format!("\"{schema}\".raw_sessions");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE {raw_table} (id text COLLATE \"C\" PRIMARY KEY, version bigint NOT NULL, \
           metadata text NOT NULL, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, \
           ttl interval NOT NULL); \
         CREATE INDEX ON {raw_table} (expires_at)"
    )))
    .execute(&raw)
    .await
    .unwrap();
    let md = Metadata::from_pairs([
        ("vmcp.backend.ids", "github,jira,slack"),
        (
            "vmcp.backend.session.github",
            "4f1c2a9e-0d7b-4e55-9a61-2b8f3c7d1e90",
        ),
        (
            "vmcp.backend.session.jira",
            "b6e0d3f2-8c41-47a9-a5d2-93e1f07c6b18",
        ),
        (
            "vmcp.backend.session.slack",
            "0a9d7c3e-5b12-4f86-8e4d-c2f1a6b39d07",
        ),
        ("vmcp.identity.binding", "https://issuer.example\0user-1234"),
    ])
    .unwrap();
    let ids: Vec<SessionId> = (0..IDS).map(|_| SessionId::generate()).collect();
    let ids2: Vec<SessionId> = (0..IDS).map(|_| SessionId::generate()).collect();
    let ids3: Vec<SessionId> = (0..IDS).map(|_| SessionId::generate()).collect();
    let ids4: Vec<SessionId> = (0..IDS).map(|_| SessionId::generate()).collect();
    for id in ids2.iter().chain(&ids3) {
        store.create(id, &md, Ttl::Default).await.unwrap().unwrap();
    }
    for id in &ids4 {
        hot.create(id, &md, Ttl::Default).await.unwrap().unwrap();
    }
    let index: String = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'sessions_hot' \
         AND indexdef LIKE '%(expires_at)%'",
    )
    .bind(schema)
    .fetch_one(&raw)
    .await
    .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP INDEX \"{schema}\".\"{index}\"; ANALYZE \"{schema}\".sessions_hot"
    )))
    .execute(&raw)
    .await
    .unwrap();
    for id in &ids {
        store.create(id, &md, Ttl::Default).await.unwrap().unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {raw_table} VALUES ($1, 1, $2, now(), now() + interval '30 minutes', interval '30 minutes')"
        )))
        .bind(id.as_str())
        .bind(md.json())
        .execute(&raw)
        .await
        .unwrap();
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ANALYZE {raw_table}; ANALYZE \"{schema}\".sessions"
    )))
    .execute(&raw)
    .await
    .unwrap();
    Bench {
        raw_select: format!("SELECT version, metadata FROM {raw_table} WHERE id = $1"),
        raw_update: format!(
            "UPDATE {raw_table} SET version = version + 1, metadata = $3 \
             WHERE id = $1 AND version = $2 RETURNING version"
        ),
        raw,
        store,
        pinged,
        in_statement,
        silent,
        hot,
        ids4,
        versions4: (0..IDS).map(|_| AtomicU64::new(1)).collect(),
        ids2,
        ids3,
        versions3: (0..IDS).map(|_| AtomicU64::new(1)).collect(),
        versions2: (0..IDS).map(|_| AtomicU64::new(1)).collect(),
        store_versions: (0..IDS).map(|_| AtomicU64::new(1)).collect(),
        raw_versions: (0..IDS).map(|_| AtomicU64::new(1)).collect(),
        ids,
        md,
    }
}

/// Median single-task latency per op, rounds interleaved so drift hits
/// every op alike.
async fn latencies(b: &Bench, ops: &[Op]) -> Vec<Duration> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); ops.len()];
    let mut slot = 0;
    for op in ops {
        for _ in 0..100 {
            b.run(*op, slot % IDS).await; // warm-up
            slot += 1;
        }
    }
    for _ in 0..LAT_ROUNDS {
        for (k, op) in ops.iter().enumerate() {
            for _ in 0..LAT_PER_ROUND {
                let t = Instant::now();
                b.run(*op, slot % IDS).await;
                samples[k].push(t.elapsed());
                slot += 1;
            }
        }
    }
    samples.into_iter().map(median).collect()
}

/// Median throughput (ops/s) of `TASKS` concurrent tasks per op, each task
/// owning its own slice of ids.
async fn throughputs(b: &Arc<Bench>, ops: &[Op]) -> Vec<f64> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
    for _ in 0..TPUT_ROUNDS {
        for (k, op) in ops.iter().enumerate() {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (b, done, op) = (b.clone(), done.clone(), *op);
                    tokio::spawn(async move {
                        let per = IDS / TASKS;
                        let mut n = 0;
                        while start.elapsed() < TPUT_WINDOW {
                            b.run(op, t * per + n % per).await;
                            n += 1;
                        }
                        done.fetch_add(n as u64, Ordering::Relaxed);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            #[allow(clippy::cast_precision_loss)]
            let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
            rates[k].push(rate);
        }
    }
    rates.into_iter().map(median_f).collect()
}

fn criterion_report(c: &mut Criterion, rt: &tokio::runtime::Runtime, b: &Arc<Bench>) {
    let mut group = c.benchmark_group("postgres_1_task");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for op in [
        Op::RawSelect,
        Op::Version,
        Op::Load,
        Op::RawUpdate,
        Op::Update,
    ] {
        group.bench_function(op.name(), |bencher| {
            let b = b.clone();
            bencher.to_async(rt).iter_custom(move |iters| {
                let b = b.clone();
                async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        b.run(op, usize::try_from(i).unwrap() % IDS).await;
                    }
                    start.elapsed()
                }
            });
        });
    }
    group.finish();
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_nanos() as f64 / b.as_nanos() as f64
}

fn main() {
    let url = std::env::var("SESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let schema = format!(
        "vmcp_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let b = Arc::new(rt.block_on(setup(&url, &schema)));

    let mut c = Criterion::default().configure_from_args();
    criterion_report(&mut c, &rt, &b);

    let ops = [
        Op::RawSelect,
        Op::Version,
        Op::Load,
        Op::RawUpdate,
        Op::Update,
        Op::UpdateInStatement,
        Op::UpdateNoNotify,
        Op::UpdateHot,
        Op::VersionPinged,
    ];
    let lat = rt.block_on(latencies(&b, &ops));
    let tput = rt.block_on(throughputs(&b, &ops[..8]));
    let l = |op: Op| lat[ops.iter().position(|o| *o == op).unwrap()];
    let t = |op: Op| tput[ops.iter().position(|o| *o == op).unwrap()];

    println!("\n| operation | median latency, 1 task | throughput, {TASKS} tasks |");
    println!("|---|---|---|");
    for (k, op) in ops.iter().enumerate() {
        let tp = tput
            .get(k)
            .map_or("-".to_owned(), |r| format!("{r:.0} ops/s"));
        println!(
            "| {} | {:.1} µs | {tp} |",
            op.name(),
            lat[k].as_secs_f64() * 1e6
        );
    }
    println!("\n| ratio | latency (target) | throughput (target) |");
    println!("|---|---|---|");
    for (op, base, lt, tt) in [
        (Op::Version, Op::RawSelect, 1.2, 0.85),
        (Op::Load, Op::RawSelect, 1.3, 0.75),
        (Op::Update, Op::RawUpdate, 1.2, 0.85),
        (Op::UpdateInStatement, Op::RawUpdate, 1.2, 0.85),
        (Op::UpdateNoNotify, Op::RawUpdate, 1.2, 0.85),
        (Op::UpdateHot, Op::RawUpdate, 1.2, 0.85),
        (Op::UpdateHot, Op::Update, 1.2, 1.0),
    ] {
        let lr = ratio(l(op), l(base));
        let tr = t(op) / t(base);
        let ok = |pass: bool| if pass { "ok" } else { "MISSED" };
        println!(
            "| {} / {} | {lr:.2}x (<= {lt}x, {}) | {tr:.2}x (>= {tt}x, {}) |",
            op.name(),
            base.name(),
            ok(lr <= lt),
            ok(tr >= tt)
        );
    }
    println!(
        "\ntest_before_acquire=true costs {:.2}x on version latency",
        ratio(l(Op::VersionPinged), l(Op::Version))
    );

    rt.block_on(async {
        // Statistics reach the view within about half a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rows = sqlx::query(
            "SELECT relname::text, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables \
             WHERE schemaname = $1 ORDER BY relname",
        )
        .bind(&schema)
        .fetch_all(&b.raw)
        .await
        .unwrap();
        println!("\n| table | updates | HOT updates |\n|---|---|---|");
        for r in rows {
            let (name, upd, hot): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
            println!("| {name} | {upd} | {hot} |");
        }
        sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(&b.raw)
            .await
            .unwrap();
    });
    c.final_summary();
}
