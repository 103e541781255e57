#![allow(dead_code)] // each test binary uses one of the harnesses
//! SQLite test harnesses: a temp file per harness (deleted at teardown),
//! or a private in-memory database.

use async_trait::async_trait;
use session_core::testing::{Corruption, Harness};
use session_core::{SessionId, StoreConfig, Version, limits};
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

/// `session_core::Version::MAX` as the column's type.
pub const MAX_VERSION: i64 = (1 << 53) - 1;

async fn plant_row(pool: &SqlitePool, id: &SessionId, kind: Corruption) -> bool {
    let ok = b"{}".to_vec();
    let (version, metadata): (i64, Vec<u8>) = match kind {
        Corruption::MetadataNotJson => (1, b"{not json".to_vec()),
        Corruption::MetadataNotStringMap => (1, br#"{"a":1,"b":["c"]}"#.to_vec()),
        Corruption::MetadataOversized => (
            1,
            format!(r#"{{"k":"{}"}}"#, "v".repeat(limits::MAX_VALUE_LEN + 1)).into_bytes(),
        ),
        Corruption::MetadataNotUtf8 => (1, b"{\"a\":\"\xff\"}".to_vec()),
        // Rows stored before migration 2 added the version check.
        Corruption::ZeroVersion => (0, ok),
        Corruption::NegativeVersion => (-5, ok),
        Corruption::VersionPastMax => (1 << 53, ok),
        // A STRICT INTEGER NOT NULL version cannot hold the others.
        _ => return false,
    };
    let insert = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{TABLE}\" (id, version, metadata, created_at, expires_at, ttl_ms) \
         VALUES (?1, ?2, CAST(?3 AS TEXT), 0, CAST(unixepoch('subsec') * 1000 AS INTEGER) + 3600000, 3600000)"
    )))
    .bind(id.as_str())
    .bind(version)
    .bind(metadata);
    if (1..=MAX_VERSION).contains(&version) {
        insert.execute(pool).await.expect("plant corrupt row");
        return true;
    }
    // The triggers refuse the row now; plant it as a row written before
    // the migration: without them, then recreated exactly as they were.
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
        .await
        .unwrap();
    let triggers: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1",
    )
    .bind(TABLE)
    .fetch_all(&mut *tx)
    .await
    .unwrap();

    for (name, _) in &triggers {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TRIGGER \"{name}\"")))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    insert.execute(&mut *tx).await.expect("plant corrupt row");
    for (_, sql) in &triggers {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    true
}

async fn set_row_version(pool: &SqlitePool, id: &SessionId, version: Version) {
    let n = sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{TABLE}\" SET version = ?2 WHERE id = ?1"
    )))
    .bind(id.as_str())
    .bind(i64::try_from(version.get()).unwrap())
    .execute(pool)
    .await
    .expect("set version")
    .rows_affected();
    assert_eq!(n, 1, "set_version on a row that does not exist");
}

async fn plant_bad_id_row(pool: &SqlitePool) -> bool {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{TABLE}\" (id, version, metadata, created_at, expires_at, ttl_ms) \
         VALUES (?1, 1, '{{}}', 0, CAST(unixepoch('subsec') * 1000 AS INTEGER) + 3600000, 3600000)"
    )))
    .bind(format!("bad id {}", uuid::Uuid::new_v4().simple()))
    .execute(pool)
    .await
    .expect("plant a row with an invalid id");
    true
}

async fn raw_row(pool: &SqlitePool, id: &SessionId) -> Option<String> {
    // hex(metadata): a corrupt row's text need not be UTF-8.
    sqlx::query(AssertSqlSafe(format!(
        "SELECT id || '|' || version || '|' || hex(metadata) || '|' || created_at || '|' || ttl_ms \
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

    async fn set_version(&self, id: &SessionId, version: Version) {
        let store = self.store(StoreConfig::default()).await;
        set_row_version(store.pool(), id, version).await;
    }

    async fn plant_bad_id(&self) -> bool {
        let store = self.store(StoreConfig::default()).await;
        plant_bad_id_row(store.pool()).await
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

    async fn set_version(&self, id: &SessionId, version: Version) {
        set_row_version(self.base().await.pool(), id, version).await;
    }

    async fn plant_bad_id(&self) -> bool {
        plant_bad_id_row(self.base().await.pool()).await
    }
}
