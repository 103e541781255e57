//! SQLite-specific behaviour: WAL mode, persistence, concurrent opens,
//! table isolation and cleanup.
#![cfg(feature = "sqlite")]

#[path = "common/sqlite.rs"]
mod lite;

use std::time::Duration;

use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl};
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
        assert_eq!(recorded, 1);
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
