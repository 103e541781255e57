//! SQLite-specific behaviour: WAL mode, persistence, concurrent opens,
//! table isolation and cleanup.
#![cfg(feature = "sqlite")]

#[path = "common/sqlite.rs"]
mod lite;

use std::time::Duration;

use session_core::{
    CorruptRecord, Error, Metadata, SessionId, SessionStore, StoreConfig, Ttl, Version,
};
use session_storage_sql::{CleanupConfig, SqliteConfig, SqliteStore};
use sqlx::AssertSqlSafe;

/// Runs `f` on a fresh temp file that is deleted afterwards, even on panic.
fn with_file<F, Fut>(f: F)
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let path = lite::temp_path();
    let fut = f(path.clone());
    let outcome = rt.block_on(async move { tokio::spawn(fut).await });
    drop(rt);
    lite::remove_db(&path);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[test]
fn file_is_wal_persistent_and_migrates_once_under_concurrent_opens() {
    with_file(|path| async move {
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(SqliteConfig::file(path)).await })
            })
            .collect();
        let mut stores = Vec::new();
        for o in opens {
            stores.push(o.await.unwrap().expect("concurrent open"));
        }
        let s = &stores[0];
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM _session_store_migrations WHERE table_name = 'vmcp_sessions'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap();
        assert_eq!(recorded, 3);
        let id = SessionId::generate();
        let md = Metadata::new().with("k", "v").unwrap();
        s.create(&id, &md, Ttl::Default).await.unwrap().unwrap();
        for s in stores {
            s.pool().close().await;
        }
        let reopened = SqliteStore::open(SqliteConfig::file(&path)).await.unwrap();
        assert_eq!(reopened.load(&id).await.unwrap().unwrap().metadata, md);
        reopened.pool().close().await;
    });
}

#[test]
fn tables_are_isolated() {
    with_file(|path| async move {
        let a = SqliteStore::open(SqliteConfig::file(&path).table("a"))
            .await
            .unwrap();
        let b = SqliteStore::open(SqliteConfig::file(&path).table("b"))
            .await
            .unwrap();
        let mut b_changes = b.changes().unwrap();
        let id = SessionId::generate();
        a.create(&id, &Metadata::new(), Ttl::Default)
            .await
            .unwrap()
            .unwrap();
        assert!(b.load(&id).await.unwrap().is_none());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), b_changes.recv())
                .await
                .is_err(),
            "b saw a's write"
        );
        assert!(
            SqliteStore::open(SqliteConfig::file(&path).table("Bad Name"))
                .await
                .is_err()
        );
        a.pool().close().await;
        b.pool().close().await;
    });
}

/// Every method, scan and the change stream, for two tables of one file
/// (`session_core::testing::isolation`).
#[test]
fn tables_are_isolated_for_every_method_scan_and_stream() {
    with_file(|path| async move {
        let a = SqliteStore::open(SqliteConfig::file(&path).table("a"))
            .await
            .unwrap();
        let b = SqliteStore::open(SqliteConfig::file(&path).table("b"))
            .await
            .unwrap();
        session_core::testing::isolation::assert_isolated(&a, &b).await;
        a.pool().close().await;
        b.pool().close().await;
    });
}

#[test]
fn cleanup_removes_only_expired_rows() {
    with_file(|path| async move {
        let store = SqliteStore::open(
            SqliteConfig::file(&path).store(StoreConfig::new(Duration::from_secs(600)).unwrap()),
        )
        .await
        .unwrap();
        let mut live = Vec::new();
        for _ in 0..4 {
            let id = SessionId::generate();
            store
                .create(&id, &Metadata::new(), Ttl::Default)
                .await
                .unwrap();
            live.push(id);
        }
        for _ in 0..11 {
            store
                .create(
                    &SessionId::generate(),
                    &Metadata::new(),
                    Ttl::Custom(Duration::from_millis(1)),
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cleanup = store.spawn_cleanup(CleanupConfig {
            interval: Duration::from_millis(50),
            batch_size: 3,
            max_batches: 100,
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while cleanup.stats().deleted < 11 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cleanup.stats().deleted, 11);
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(
            "SELECT count(*) FROM vmcp_sessions".to_owned(),
        ))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(rows, 4);
        for id in &live {
            assert!(store.version(id).await.unwrap().is_some());
        }
        cleanup.stop();
        store.pool().close().await;
    });
}

/// Migration 2 adds the version check (as triggers: SQLite cannot add a
/// CHECK to an existing table) to a table that already holds rows breaking
/// it: the migration succeeds and keeps them, the store reports them as
/// corrupt, and no new row can break it.
#[test]
fn version_check_migrates_over_old_bad_rows_and_refuses_new_ones() {
    with_file(|path| async move {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        // The table as migration 1 alone left it.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "{} ; CREATE TABLE _session_store_migrations (table_name TEXT NOT NULL, \
               version INTEGER NOT NULL, name TEXT NOT NULL, \
               applied_at INTEGER NOT NULL DEFAULT (unixepoch()), PRIMARY KEY (table_name, version)); \
             INSERT INTO _session_store_migrations (table_name, version, name) \
               VALUES ('{t}', 1, 'sessions table and expiry index')",
            include_str!("../migrations/sqlite/0001_sessions.sql")
                .replace("{{table}}", &format!("\"{}\"", lite::TABLE))
                .replace("{{index}}", &format!("\"{}_expires_at\"", lite::TABLE)),
            t = lite::TABLE,
        )))
        .execute(&pool)
        .await
        .unwrap();
        let ids: Vec<(SessionId, i64)> = [0, -1, 1 << 53, 7]
            .into_iter()
            .map(|v| (SessionId::generate(), v))
            .collect();
        for (id, v) in &ids {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO \"{}\" (id, version, metadata, created_at, expires_at, ttl_ms) \
                 VALUES (?1, ?2, '{{}}', 0, CAST(unixepoch('subsec') * 1000 AS INTEGER) + 3600000, 3600000)",
                lite::TABLE
            )))
            .bind(id.as_str())
            .bind(v)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
        let store = SqliteStore::open(SqliteConfig::file(&path).table(lite::TABLE))
            .await
            .expect("migration 2 over old bad rows");
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
        for sql in [
            format!(
                "INSERT INTO \"{}\" (id, version, metadata, created_at, expires_at, ttl_ms) \
                 VALUES ('x', 0, '{{}}', 0, 1, 1)",
                lite::TABLE
            ),
            format!(
                "UPDATE \"{}\" SET version = 9007199254740992 WHERE id = '{}'",
                lite::TABLE,
                ids[3].0
            ),
        ] {
            let refused = sqlx::query(AssertSqlSafe(sql))
                .execute(store.pool())
                .await
                .unwrap_err();
            assert!(
                refused.to_string().contains("version_in_range"),
                "{refused}"
            );
        }
        store.pool().close().await;
    });
}
