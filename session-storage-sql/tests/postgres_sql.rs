//! Postgres-specific behaviour beyond the core contract: migrations,
//! isolation, cleanup, listener resync and the slide throttle.
#![cfg(feature = "postgres")]

#[path = "common/postgres.rs"]
mod pg;

use std::future::Future;
use std::time::Duration;

use session_core::{
    Change, CorruptRecord, Error, InvalidInput, Metadata, SessionId, SessionStore, StoreConfig,
    Ttl, Version,
};
use session_storage_sql::{CleanupConfig, PostgresConfig, PostgresStore};
use sqlx::{AssertSqlSafe, PgPool};

/// Runs `f` with a fresh schema that is dropped afterwards, even on panic.
fn with_schema<F, Fut>(f: F)
where
    F: FnOnce(String, String, PgPool) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = pg::url();
        let admin = pg::admin(&url);
        let schema = pg::schema_name();
        let outcome = tokio::spawn(f(url, schema.clone(), admin.clone())).await;
        pg::drop_schema(&admin, &schema).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    });
}

fn cfg(ttl: Duration) -> StoreConfig {
    StoreConfig::new(ttl).unwrap()
}

async fn connect(url: &str, schema: &str, store: StoreConfig) -> PostgresStore {
    PostgresStore::connect(pg::config(url, schema, store))
        .await
        .unwrap()
}

async fn count(admin: &PgPool, sql: String) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(admin)
        .await
        .unwrap()
}

#[test]
fn migrations_are_idempotent_and_safe_concurrently() {
    with_schema(|url, schema, admin| async move {
        // Eight stores start at once on a schema that does not exist yet.
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let (url, schema) = (url.clone(), schema.clone());
                tokio::spawn(async move {
                    PostgresStore::connect(
                        pg::config(&url, &schema, StoreConfig::default()).listen(false),
                    )
                    .await
                })
            })
            .collect();
        for s in starts {
            s.await.unwrap().expect("concurrent start");
        }
        // And once more, later.
        let store = connect(&url, &schema, StoreConfig::default()).await;
        let applied = count(
            &admin,
            format!("SELECT count(*) FROM \"{schema}\"._session_store_migrations WHERE table_name = 'sessions'"),
        )
        .await;
        assert_eq!(applied, 3, "each migration recorded exactly once");
        let indexes = count(
            &admin,
            format!(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'sessions' \
                 AND indexdef LIKE '%(expires_at)%'"
            ),
        )
        .await;
        assert_eq!(indexes, 1, "one index on expires_at");
        let id = SessionId::generate();
        assert!(
            store
                .create(&id, &Metadata::new(), Ttl::Default)
                .await
                .unwrap()
                .is_some()
        );
    });
}

#[test]
fn schemas_and_tables_are_isolated() {
    with_schema(|url, schema, admin| async move {
        let other_schema = pg::schema_name();
        let a = connect(&url, &schema, StoreConfig::default()).await;
        let b = connect(&url, &other_schema, StoreConfig::default()).await;
        let c = PostgresStore::connect(
            pg::config(&url, &schema, StoreConfig::default()).table("other"),
        )
        .await
        .unwrap();
        let mut b_changes = b.changes().unwrap();
        let id = SessionId::generate();
        for (n, s) in [&a, &b, &c].into_iter().enumerate() {
            let md = Metadata::new().with("store", n.to_string()).unwrap();
            assert!(s.create(&id, &md, Ttl::Default).await.unwrap().is_some());
        }
        for (n, s) in [&a, &b, &c].into_iter().enumerate() {
            let rec = s.load(&id).await.unwrap().unwrap();
            assert_eq!(rec.metadata.get("store"), Some(n.to_string().as_str()));
        }
        // b saw its own create, and nothing from a or c.
        let first = tokio::time::timeout(Duration::from_secs(5), b_changes.recv())
            .await
            .unwrap();
        assert!(matches!(first, Some(Change::Written { .. })));
        assert!(a.delete(&id).await.unwrap());
        assert!(a.load(&id).await.unwrap().is_none());
        assert!(b.load(&id).await.unwrap().is_some());
        assert!(c.load(&id).await.unwrap().is_some());
        assert!(
            tokio::time::timeout(Duration::from_millis(500), b_changes.recv())
                .await
                .is_err(),
            "b saw a change made in another schema"
        );
        assert_ne!(a.channel(), b.channel());
        assert_ne!(a.channel(), c.channel());
        pg::drop_schema(&admin, &other_schema).await;
    });
}

/// Every method, scan and the change stream, for two schemas and for two
/// tables of one schema (`session_core::testing::isolation`).
#[test]
fn schemas_and_tables_are_isolated_for_every_method_scan_and_stream() {
    with_schema(|url, schema, admin| async move {
        let other_schema = pg::schema_name();
        let a = connect(&url, &schema, StoreConfig::default()).await;
        let b = connect(&url, &other_schema, StoreConfig::default()).await;
        session_core::testing::isolation::assert_isolated(&a, &b).await;
        let c = PostgresStore::connect(
            pg::config(&url, &schema, StoreConfig::default()).table("other"),
        )
        .await
        .unwrap();
        session_core::testing::isolation::assert_isolated(&a, &c).await;
        pg::drop_schema(&admin, &other_schema).await;
    });
}

#[test]
fn invalid_identifiers_are_rejected_before_connecting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (schema, table) in [
            ("Bad", "t"),
            ("ok", "x; drop table y"),
            ("a\"b", "t"),
            ("", "t"),
        ] {
            let r = PostgresStore::connect(
                PostgresConfig::new("postgres://nobody@127.0.0.1:1/none")
                    .schema(schema)
                    .table(table),
            )
            .await;
            assert!(
                matches!(r, Err(Error::InvalidInput(InvalidInput::Config(_)))),
                "{schema:?}.{table:?} accepted"
            );
        }
    });
}

async fn terminate(admin: &PgPool, application_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(application_name)
    .fetch_one(admin)
    .await
    .unwrap()
}

async fn plant_expired(admin: &PgPool, schema: &str, n: usize) {
    for _ in 0..n {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".sessions (id, version, metadata, created_at, expires_at, ttl) \
             VALUES ($1, 1, '{{}}', now() - interval '1 hour', now() - interval '1 second', interval '1 second')"
        )))
        .bind(SessionId::generate().as_str())
        .execute(admin)
        .await
        .unwrap();
    }
}

async fn wait_for_count(admin: &PgPool, sql: &str, want: i64, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if count(admin, sql.to_owned()).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn cleanup_removes_only_expired_rows_and_survives_a_killed_connection() {
    with_schema(|url, schema, admin| async move {
        let store = connect(&url, &schema, cfg(Duration::from_secs(600))).await;
        let mut live = Vec::new();
        for _ in 0..5 {
            let id = SessionId::generate();
            store
                .create(&id, &Metadata::new(), Ttl::Default)
                .await
                .unwrap();
            live.push(id);
        }
        plant_expired(&admin, &schema, 23).await;
        let cleanup = store.spawn_cleanup(CleanupConfig {
            interval: Duration::from_millis(100),
            batch_size: 7,
            max_batches: 100,
        });
        let total = format!("SELECT count(*) FROM \"{schema}\".sessions");
        assert!(
            wait_for_count(&admin, &total, 5, Duration::from_secs(10)).await,
            "expired rows not removed"
        );
        for id in &live {
            assert!(
                store.version(id).await.unwrap().is_some(),
                "cleanup removed a live row"
            );
        }
        // Kill every store connection (the cleanup's included), then
        // expire more rows: the task must carry on.
        let killed = terminate(&admin, &format!("vmcp-store:{schema}.sessions")).await;
        assert!(killed >= 1, "no store connection to kill");
        plant_expired(&admin, &schema, 9).await;
        assert!(
            wait_for_count(&admin, &total, 5, Duration::from_secs(10)).await,
            "cleanup did not recover after its connection was killed: {:?}",
            cleanup.stats()
        );
        assert!(!cleanup.is_finished());
        let stats = cleanup.stats();
        assert_eq!(stats.deleted, 32, "{stats:?}");
        eprintln!("cleanup stats after a killed connection: {stats:?}");
        cleanup.stop();
        for id in &live {
            assert!(store.load(id).await.unwrap().is_some());
        }
    });
}

#[test]
fn listener_resyncs_after_its_connection_is_terminated() {
    with_schema(|url, schema, admin| async move {
        let watcher = connect(&url, &schema, StoreConfig::default()).await;
        let writer =
            PostgresStore::connect(pg::config(&url, &schema, StoreConfig::default()).listen(false))
                .await
                .unwrap();
        let mut changes = watcher.changes().unwrap();
        let killed = terminate(&admin, &format!("vmcp-listen:{schema}.sessions")).await;
        assert_eq!(killed, 1, "exactly one listener connection");
        let resync = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let Some(Change::Resync) = changes.recv().await {
                    return;
                }
            }
        })
        .await;
        assert!(
            resync.is_ok(),
            "no resync after the listener's connection was terminated"
        );
        // Listening again: a write after the resync is reported.
        let id = SessionId::generate();
        writer
            .create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(Change::Written { id: got, .. }) = changes.recv().await
                    && got == id
                {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "no change event after the resync");
    });
}

#[test]
fn slide_throttle_writes_at_most_once_per_window() {
    with_schema(|url, schema, admin| async move {
        // ttl 10 s, fraction 0.1: a load rewrites the row at most once a second.
        let store = connect(&url, &schema, cfg(Duration::from_secs(10))).await;
        let id = SessionId::generate();
        store
            .create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap();
        let xmin = format!(
            "SELECT xmin::text FROM \"{schema}\".sessions WHERE id = '{}'",
            id.as_str()
        );
        let created = row_version(&admin, &xmin).await;
        let started = tokio::time::Instant::now();
        for _ in 0..50 {
            assert!(store.load(&id).await.unwrap().is_some());
        }
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "machine too slow for this test"
        );
        assert_eq!(
            row_version(&admin, &xmin).await,
            created,
            "a load inside the window rewrote the row"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut versions = std::collections::HashSet::new();
        let window = tokio::time::Instant::now();
        for _ in 0..50 {
            assert!(store.load(&id).await.unwrap().is_some());
            versions.insert(row_version(&admin, &xmin).await);
        }
        if window.elapsed() < Duration::from_millis(900) {
            assert_eq!(versions.len(), 1, "more than one slide in one window");
        }
        assert!(
            !versions.contains(&created),
            "no slide after the window passed"
        );
        // version() never writes.
        let before = row_version(&admin, &xmin).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..10 {
            store.version(&id).await.unwrap();
        }
        assert_eq!(
            row_version(&admin, &xmin).await,
            before,
            "version() rewrote the row"
        );
    });
}

async fn row_version(admin: &PgPool, sql: &str) -> String {
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_one(admin)
        .await
        .unwrap()
}

#[test]
fn after_commit_notify_mode_reports_writes() {
    with_schema(|url, schema, _admin| async move {
        let watcher = connect(&url, &schema, StoreConfig::default()).await;
        let writer = PostgresStore::connect(
            pg::config(&url, &schema, StoreConfig::default())
                .listen(false)
                .notify(session_storage_sql::NotifyMode::AfterCommit),
        )
        .await
        .unwrap();
        let mut changes = watcher.changes().unwrap();
        let id = SessionId::generate();
        let v1 = writer
            .create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        let md = Metadata::new().with("k", "v").unwrap();
        let session_core::Update::Applied(v2) = writer.update(&id, v1, &md).await.unwrap() else {
            panic!("update not applied")
        };
        assert!(writer.delete(&id).await.unwrap());
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(10), changes.recv()).await {
                Ok(Some(Change::Resync)) => {}
                Ok(Some(c)) => seen.push(c),
                other => panic!("change stream ended or stalled: {other:?} after {seen:?}"),
            }
        }
        assert_eq!(
            seen,
            vec![
                Change::Written {
                    id: id.clone(),
                    version: v1
                },
                Change::Written {
                    id: id.clone(),
                    version: v2
                },
                Change::Deleted { id: id.clone() },
            ]
        );
    });
}

#[test]
fn statement_timeout_is_reported_as_timeout() {
    with_schema(|url, schema, admin| async move {
        let store = PostgresStore::connect(
            pg::config(&url, &schema, StoreConfig::default())
                .listen(false)
                .pool(session_storage_sql::PoolConfig {
                    statement_timeout: Some(Duration::from_millis(300)),
                    ..session_storage_sql::PoolConfig::default()
                }),
        )
        .await
        .unwrap();
        let id = SessionId::generate();
        let v1 = store
            .create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        // Hold the row lock from another transaction: the CAS must wait, and
        // statement_timeout cancels it.
        let mut tx = admin.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "SELECT 1 FROM \"{schema}\".sessions WHERE id = $1 FOR UPDATE"
        )))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
        let r = store.update(&id, v1, &Metadata::new()).await;
        assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
        tx.rollback().await.unwrap();
        // Nothing was applied; the store works again.
        assert_eq!(store.version(&id).await.unwrap(), Some(v1));
    });
}

#[test]
fn unreachable_server_is_a_transient_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = PostgresStore::connect(
            PostgresConfig::new("postgres://postgres@127.0.0.1:1/test").pool(
                session_storage_sql::PoolConfig {
                    acquire_timeout: Duration::from_millis(500),
                    ..session_storage_sql::PoolConfig::default()
                },
            ),
        )
        .await;
        match r {
            Err(e) => assert!(e.is_transient(), "{e:?}"),
            Ok(_) => panic!("connected to port 1"),
        }
    });
}

/// `sslmode=require` in the URL gives a TLS connection (rustls). Needs a
/// server with `ssl = on` (Debian's default, with its snakeoil cert).
#[cfg(feature = "tls-rustls")]
#[test]
fn sslmode_require_connects_over_tls() {
    with_schema(|url, schema, admin| async move {
        let sep = if url.contains('?') { '&' } else { '?' };
        let tls_url = format!("{url}{sep}sslmode=require");
        let store = PostgresStore::connect(
            pg::config(&tls_url, &schema, StoreConfig::default()).listen(false),
        )
        .await
        .expect("TLS connect (is ssl on in the server?)");
        let id = SessionId::generate();
        store
            .create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        let ssl: bool = sqlx::query_scalar(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
        )
        .bind(format!("vmcp-store:{schema}.sessions"))
        .fetch_one(&admin)
        .await
        .unwrap();
        assert!(ssl, "store connections are not using TLS");
    });
}

#[test]
fn change_stream_ends_when_the_store_is_gone() {
    with_schema(|url, schema, admin| async move {
        let store = connect(&url, &schema, StoreConfig::default()).await;
        let mut changes = store.changes().unwrap();
        drop(store);
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if changes.recv().await.is_none() {
                    return;
                }
            }
        })
        .await;
        assert!(end.is_ok(), "change stream outlived its store");
        // The listener's connection is closed too.
        let listening = format!("vmcp-listen:{schema}.sessions");
        let mut left = 1;
        for _ in 0..50 {
            left = count(
                &admin,
                format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{listening}'"
                ),
            )
            .await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, 0, "listener connection left open");
    });
}

/// Migration 2 adds `CHECK (version BETWEEN 1 AND 2^53-1)` to a table that
/// already holds rows breaking it (written before the migration): the
/// migration succeeds and keeps them (`NOT VALID`), the store reports them
/// as corrupt, and no new row can break it.
#[test]
fn version_check_migrates_over_old_bad_rows_and_refuses_new_ones() {
    with_schema(|url, schema, admin| async move {
        // The table as migration 1 alone left it.
        let table = format!("\"{schema}\".\"{}\"", pg::TABLE);
        let mut tx = admin.begin().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA \"{schema}\"; {} ; \
             CREATE TABLE \"{schema}\"._session_store_migrations (table_name text NOT NULL, \
               version integer NOT NULL, name text NOT NULL, \
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, version)); \
             INSERT INTO \"{schema}\"._session_store_migrations (table_name, version, name) \
               VALUES ('{}', 1, 'sessions table and expiry index')",
            include_str!("../migrations/postgres/0001_sessions.sql").replace("{{table}}", &table),
            pg::TABLE,
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let ids: Vec<(SessionId, i64)> = [0, -1, 1 << 53, 7]
            .into_iter()
            .map(|v| (SessionId::generate(), v))
            .collect();
        for (id, v) in &ids {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (id, version, metadata, created_at, expires_at, ttl) \
                 VALUES ($1, $2, '{{}}', now(), now() + interval '1 hour', interval '1 hour')"
            )))
            .bind(id.as_str())
            .bind(v)
            .execute(&admin)
            .await
            .unwrap();
        }
        let store = connect(&url, &schema, StoreConfig::default()).await;
        for (id, v) in &ids[..3] {
            for r in [
                store.load(id).await.map(|_| ()),
                store.version(id).await.map(|_| ()),
                store.touch(id).await.map(|_| ()),
                store
                    .update(id, Version::INITIAL, &Metadata::new())
                    .await
                    .map(|_| ()),
            ] {
                assert!(
                    matches!(
                        &r,
                        Err(Error::Corrupt {
                            source: CorruptRecord::InvalidVersion(s),
                            ..
                        }) if *s == v.to_string()
                    ),
                    "version {v}: {r:?}"
                );
            }
        }
        assert_eq!(
            store.version(&ids[3].0).await.unwrap(),
            Some(Version::new(7))
        );
        // Migration 3 (the write list) applied over the old rows too: an
        // old row takes write ids, and a retried write is recognised.
        let w = session_core::WriteId::generate();
        for _ in 0..2 {
            assert_eq!(
                store
                    .update_once(&ids[3].0, Version::new(7), &Metadata::new(), &w)
                    .await
                    .unwrap(),
                session_core::Update::Applied(Version::new(8))
            );
        }
        // New rows cannot break the check.
        let refused = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (id, version, metadata, created_at, expires_at, ttl) \
             VALUES ('x', 0, '{{}}', now(), now() + interval '1 hour', interval '1 hour')"
        )))
        .execute(&admin)
        .await
        .unwrap_err();
        assert_eq!(
            refused
                .as_database_error()
                .and_then(sqlx::error::DatabaseError::code)
                .as_deref(),
            Some("23514"),
            "{refused}"
        );
        let refused = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table} SET version = 9007199254740992 WHERE id = $1"
        )))
        .bind(ids[3].0.as_str())
        .execute(&admin)
        .await
        .unwrap_err();
        assert!(refused.as_database_error().is_some(), "{refused}");
    });
}

/// A server that refuses the connection is reported at once as
/// `Unavailable` (the refusal), not after the pool's 5 s acquire timeout
/// (or the listener's 10 s) as a `Timeout`: with migrations, with only the
/// listener, and with both.
#[test]
fn refused_connection_fails_fast() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Port 1 on loopback: nothing listens, the kernel refuses at once.
        let url = "postgres://postgres@127.0.0.1:1/test";
        for (migrate, listen) in [(true, true), (true, false), (false, true)] {
            let started = std::time::Instant::now();
            let outcome =
                PostgresStore::connect(PostgresConfig::new(url).migrate(migrate).listen(listen))
                    .await;
            let took = started.elapsed();
            match outcome {
                Err(Error::Unavailable(source)) => {
                    let text = format!("{source:?}");
                    assert!(text.contains("ConnectionRefused"), "{text}");
                }
                Err(other) => panic!(
                    "migrate {migrate}, listen {listen}: expected the refusal, got {other:?}"
                ),
                Ok(_) => panic!("connected to a closed port"),
            }
            assert!(
                took < Duration::from_secs(2),
                "migrate {migrate}, listen {listen}: the refusal took {took:?}"
            );
        }
    });
}

/// The next `Resync` within `within`, skipping other changes; whether one came.
async fn resync_within(changes: &mut session_core::ChangeStream, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match changes.recv().await {
                Some(Change::Resync) => return,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .is_ok()
}

async fn notify(admin: &PgPool, channel: &str, payloads: &[&str]) {
    let payloads: Vec<String> = payloads.iter().map(|p| (*p).to_owned()).collect();
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS u(p)")
        .bind(channel)
        .bind(payloads)
        .execute(admin)
        .await
        .unwrap();
}

/// The after-commit notifier's gaps reach subscribers as resyncs: a batch
/// marker that skips a number, a notifier silent for longer than 3 s
/// without a goodbye (its process died, perhaps between a commit and its
/// batch); a live idle notifier (heartbeats) and one that said goodbye are
/// no gap.
#[test]
fn after_commit_gaps_and_silent_notifiers_are_resyncs() {
    with_schema(|url, schema, admin| async move {
        let watcher = connect(&url, &schema, StoreConfig::default()).await;
        let channel = watcher.channel().to_owned();
        let mut changes = watcher.changes().unwrap();
        let writer =
            PostgresStore::connect(pg::config(&url, &schema, StoreConfig::default()).listen(false))
                .await
                .unwrap();
        // The resync that follows every connect by the silence limit.
        assert!(
            resync_within(&mut changes, Duration::from_secs(8)).await,
            "no resync after the connect-time silence limit"
        );
        // An idle but live notifier heartbeats: no resync.
        assert!(
            !resync_within(&mut changes, Duration::from_secs(7)).await,
            "resync although the only notifier is alive and idle"
        );
        // A writer that is heard of and then skips a batch.
        notify(
            &admin,
            &channel,
            &["b:00000000000000aa:0", "b:00000000000000aa:2"],
        )
        .await;
        assert!(
            resync_within(&mut changes, Duration::from_millis(1500)).await,
            "a skipped sequence number is no resync"
        );
        // ... and then falls silent without a goodbye.
        assert!(
            resync_within(&mut changes, Duration::from_secs(6)).await,
            "a silent notifier is no resync"
        );
        // One that says goodbye is no gap, and writes are still reported.
        notify(
            &admin,
            &channel,
            &["b:00000000000000bb:0", "e:00000000000000bb"],
        )
        .await;
        let id = SessionId::generate();
        writer
            .create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match changes.recv().await {
                    Some(Change::Written { id: got, .. }) if got == id => return,
                    Some(Change::Resync) => panic!("resync before the write"),
                    _ => {}
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "the write was not reported");
        assert!(
            !resync_within(&mut changes, Duration::from_secs(6)).await,
            "a notifier that said goodbye counted as a gap"
        );
        // The writer's own goodbye: dropping it is no gap either.
        drop(writer);
        assert!(
            !resync_within(&mut changes, Duration::from_secs(6)).await,
            "a dropped store's notifier counted as a gap"
        );
    });
}
