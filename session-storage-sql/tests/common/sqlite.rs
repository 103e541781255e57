#![allow(dead_code)] // each test binary uses one of the harnesses
//! SQLite test harnesses: a temp file per harness (deleted at teardown),
//! or a private in-memory database.

use async_trait::async_trait;
use session_core::testing::{Corruption, Harness};
use session_core::{SessionId, StoreConfig, limits};
use session_storage_sql::{SqliteConfig, SqliteStore};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use tokio::sync::OnceCell;

/// The table the harnesses use.
pub const TABLE: &str = "sessions";

/// A unique temp file path.
pub fn temp_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vmcp-test-{}.db", uuid::Uuid::new_v4().simple()))
}

/// Removes a database file and its WAL side files.
pub fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn plant_row(pool: &SqlitePool, id: &SessionId, kind: Corruption) -> bool {
    let metadata = match kind {
        Corruption::MetadataNotJson => "{not json".to_owned(),
        Corruption::MetadataNotStringMap => r#"{"a":1,"b":["c"]}"#.to_owned(),
        Corruption::MetadataOversized => {
            format!(r#"{{"k":"{}"}}"#, "v".repeat(limits::MAX_VALUE_LEN + 1))
        }
        // STRICT INTEGER NOT NULL version cannot hold the others.
        _ => return false,
    };
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{TABLE}\" (id, version, metadata, created_at, expires_at, ttl_ms) \
         VALUES (?1, 1, ?2, 0, CAST(unixepoch('subsec') * 1000 AS INTEGER) + 3600000, 3600000)"
    )))
    .bind(id.as_str())
    .bind(metadata)
    .execute(pool)
    .await
    .expect("plant corrupt row");
    true
}

async fn raw_row(pool: &SqlitePool, id: &SessionId) -> Option<String> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT id || '|' || version || '|' || metadata || '|' || created_at || '|' || ttl_ms \
         FROM \"{TABLE}\" WHERE id = ?1"
    )))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
    .expect("raw read")
    .map(|r| r.get::<String, _>(0))
}

/// A harness on its own temp file; every `store` call opens the file anew
/// (a "second node" in the same process).
pub struct FileHarness {
    /// The database file.
    pub path: std::path::PathBuf,
    first: OnceCell<SqliteStore>,
}

#[async_trait]
impl Harness for FileHarness {
    type Store = SqliteStore;

    async fn setup() -> Self {
        Self {
            path: temp_path(),
            first: OnceCell::new(),
        }
    }

    async fn store(&self, config: StoreConfig) -> SqliteStore {
        let store = SqliteStore::open(SqliteConfig::file(&self.path).table(TABLE).store(config))
            .await
            .expect("open SqliteStore");
        let _ = self.first.set(store.clone());
        store
    }

    async fn teardown(&self) {
        if let Some(s) = self.first.get() {
            s.pool().close().await;
        }
        remove_db(&self.path);
    }

    async fn plant(&self, id: &SessionId, kind: Corruption) -> bool {
        let store = self.store(StoreConfig::default()).await;
        plant_row(store.pool(), id, kind).await
    }

    async fn raw(&self, id: &SessionId) -> Option<String> {
        let store = self.store(StoreConfig::default()).await;
        raw_row(store.pool(), id).await
    }
}

/// A harness on a private in-memory database; further handles share it.
pub struct MemoryHarness {
    store: OnceCell<SqliteStore>,
}

impl MemoryHarness {
    async fn base(&self) -> &SqliteStore {
        self.store
            .get_or_init(|| async {
                SqliteStore::open(SqliteConfig::in_memory().table(TABLE))
                    .await
                    .expect("open in-memory SqliteStore")
            })
            .await
    }
}

#[async_trait]
impl Harness for MemoryHarness {
    type Store = SqliteStore;

    async fn setup() -> Self {
        Self {
            store: OnceCell::new(),
        }
    }

    async fn store(&self, config: StoreConfig) -> SqliteStore {
        self.base().await.handle(config)
    }

    async fn teardown(&self) {
        if let Some(s) = self.store.get() {
            s.pool().close().await;
        }
    }

    async fn plant(&self, id: &SessionId, kind: Corruption) -> bool {
        plant_row(self.base().await.pool(), id, kind).await
    }

    async fn raw(&self, id: &SessionId) -> Option<String> {
        raw_row(self.base().await.pool(), id).await
    }
}
