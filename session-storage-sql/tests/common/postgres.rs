#![allow(dead_code)] // not every test binary uses every helper
//! The Postgres test harness: each harness gets its own schema
//! (`vmcp_test_<hex>`), dropped at teardown.

use std::time::Duration;

use async_trait::async_trait;
use session_core::testing::{Corruption, Harness};
use session_core::{SessionId, StoreConfig, Version, limits};
use session_storage_sql::{PoolConfig, PostgresConfig, PostgresStore};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

/// The table the harness uses.
pub const TABLE: &str = "sessions";

/// The database URL: `SESSION_TEST_POSTGRES_URL`, else (feature
/// `testcontainers`, Docker answering) a pinned `postgres:16` container,
/// else a panic that says how to provide one.
pub fn url() -> String {
    const VAR: &str = "SESSION_TEST_POSTGRES_URL";
    const EXAMPLE: &str = "postgres://postgres@127.0.0.1:5432/test";
    if let Ok(url) = std::env::var(VAR)
        && !url.is_empty()
    {
        return url;
    }
    #[cfg(feature = "testcontainers")]
    if let Some(url) = container::url() {
        return url;
    }
    session_core::testing::require_url(VAR, EXAMPLE)
}

#[cfg(feature = "testcontainers")]
mod container {
    use std::sync::OnceLock;

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    fn docker_answers() -> bool {
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            return !host.is_empty();
        }
        std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
    }

    /// Starts one container per test process, on a thread that keeps it
    /// alive until the process exits (the testcontainers reaper removes it).
    pub fn url() -> Option<String> {
        static URL: OnceLock<Option<String>> = OnceLock::new();
        URL.get_or_init(|| {
            if !docker_answers() {
                return None;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let started = GenericImage::new("postgres", "16")
                        .with_exposed_port(5432.tcp())
                        .with_wait_for(WaitFor::message_on_stderr(
                            "database system is ready to accept connections",
                        ))
                        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
                        .with_env_var("POSTGRES_DB", "test")
                        .start()
                        .await;
                    let container = match started {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("could not start postgres:16: {e}");
                            let _ = tx.send(None);
                            return;
                        }
                    };
                    let port = container.get_host_port_ipv4(5432).await.ok();
                    let _ =
                        tx.send(port.map(|p| format!("postgres://postgres@127.0.0.1:{p}/test")));
                    std::future::pending::<()>().await;
                    drop(container);
                });
            });
            rx.recv().ok().flatten()
        })
        .clone()
    }
}

/// A fresh, unique schema name.
pub fn schema_name() -> String {
    format!(
        "vmcp_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// An admin pool on the test database.
pub fn admin(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy(url)
        .expect("valid test database URL")
}

/// A store config for `schema` with a small pool.
pub fn config(url: &str, schema: &str, store: StoreConfig) -> PostgresConfig {
    PostgresConfig::new(url)
        .schema(schema)
        .table(TABLE)
        .store(store)
        .pool(PoolConfig {
            max_connections: 8,
            ..PoolConfig::default()
        })
}

/// Drops `schema` and everything in it.
pub async fn drop_schema(admin: &PgPool, schema: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(admin)
    .await
    .expect("drop test schema");
}

/// A harness on its own schema.
pub struct PgHarness {
    /// The database URL.
    pub url: String,
    /// The harness's schema.
    pub schema: String,
    /// An admin pool for raw access.
    pub admin: PgPool,
}

/// `session_core::Version::MAX` as the column's type.
pub const MAX_VERSION: i64 = (1 << 53) - 1;

impl PgHarness {
    fn qualified(&self) -> String {
        format!("\"{}\".\"{TABLE}\"", self.schema)
    }

    /// Makes sure the table exists (migrations run on connect).
    pub async fn ensure_table(&self) {
        drop(
            PostgresStore::connect(
                self::config(&self.url, &self.schema, StoreConfig::default()).listen(false),
            )
            .await
            .expect("connect"),
        );
    }

    /// The definition of the version CHECK that migration 2 adds.
    pub async fn version_check(&self) -> Option<String> {
        sqlx::query_scalar(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname = $2 AND c.conname = 'version_in_range'",
        )
        .bind(&self.schema)
        .bind(TABLE)
        .fetch_optional(&self.admin)
        .await
        .expect("read the version CHECK")
    }
}

#[async_trait]
impl Harness for PgHarness {
    type Store = PostgresStore;

    async fn setup() -> Self {
        let url = url();
        let admin = admin(&url);
        Self {
            schema: schema_name(),
            url,
            admin,
        }
    }

    async fn store(&self, config: StoreConfig) -> PostgresStore {
        PostgresStore::connect(self::config(&self.url, &self.schema, config))
            .await
            .expect("connect PostgresStore")
    }

    async fn teardown(&self) {
        drop_schema(&self.admin, &self.schema).await;
        self.admin.close().await;
    }

    async fn plant(&self, id: &SessionId, kind: Corruption) -> bool {
        let ok = "{}".to_owned();
        let (version, metadata) = match kind {
            Corruption::MetadataNotJson => (1, "{not json".to_owned()),
            Corruption::MetadataNotStringMap => (1, r#"{"a":1,"b":["c"]}"#.to_owned()),
            Corruption::MetadataOversized => (
                1,
                format!(r#"{{"k":"{}"}}"#, "v".repeat(limits::MAX_VALUE_LEN + 1)),
            ),
            // Rows stored before migration 2 added the version CHECK.
            Corruption::ZeroVersion => (0, ok),
            Corruption::NegativeVersion => (-5, ok),
            Corruption::VersionPastMax => (1 << 53, ok),
            // A bigint NOT NULL version, typed columns and UTF-8 text
            // cannot hold the others.
            _ => return false,
        };
        self.ensure_table().await;
        let insert = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (id, version, metadata, created_at, expires_at, ttl) \
             VALUES ($1, $2, $3, now(), now() + interval '1 hour', interval '1 hour')",
            self.qualified()
        )))
        .bind(id.as_str())
        .bind(version)
        .bind(metadata);
        let check = if (1..=MAX_VERSION).contains(&version) {
            None
        } else {
            self.version_check().await
        };
        if let Some(def) = check {
            // The CHECK refuses the row now; plant it as a row written
            // before the migration: without the constraint, which is then
            // added back exactly as the migration adds it (NOT VALID).
            let mut tx = self.admin.begin().await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "ALTER TABLE {} DROP CONSTRAINT version_in_range",
                self.qualified()
            )))
            .execute(&mut *tx)
            .await
            .unwrap();
            insert.execute(&mut *tx).await.expect("plant corrupt row");
            sqlx::raw_sql(AssertSqlSafe(format!(
                "ALTER TABLE {} ADD CONSTRAINT version_in_range {def}",
                self.qualified()
            )))
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        } else {
            insert
                .execute(&self.admin)
                .await
                .expect("plant corrupt row");
        }
        true
    }

    async fn set_version(&self, id: &SessionId, version: Version) {
        let n = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET version = $2 WHERE id = $1",
            self.qualified()
        )))
        .bind(id.as_str())
        .bind(i64::try_from(version.get()).unwrap())
        .execute(&self.admin)
        .await
        .expect("set version")
        .rows_affected();
        assert_eq!(n, 1, "set_version on a row that does not exist");
    }

    async fn plant_bad_id(&self) -> bool {
        self.ensure_table().await;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (id, version, metadata, created_at, expires_at, ttl) \
             VALUES ($1, 1, '{{}}', now(), now() + interval '1 hour', interval '1 hour')",
            self.qualified()
        )))
        .bind(format!("bad id {}", uuid::Uuid::new_v4().simple()))
        .execute(&self.admin)
        .await
        .expect("plant a row with an invalid id");
        true
    }

    async fn raw(&self, id: &SessionId) -> Option<String> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT id || '|' || version || '|' || metadata || '|' || created_at::text || '|' || ttl::text \
             FROM {} WHERE id = $1",
            self.qualified()
        )))
        .bind(id.as_str())
        .fetch_optional(&self.admin)
        .await
        .expect("raw read");
        row.map(|r| r.get::<String, _>(0))
    }

    fn ttl_unit(&self) -> Duration {
        Duration::from_secs(2)
    }

    async fn interrupt_changes(&self, store: &PostgresStore) -> bool {
        // The listener's connection is named after its schema and table
        // (`vmcp-listen:<schema>.<table>`), and the schema is this
        // harness's own: no other test's connection matches.
        let name = format!("vmcp-listen:{}.{}", store.schema(), store.table());
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = left($1, 63) AND pid <> pg_backend_pid()) AS t",
        )
        .bind(name)
        .fetch_one(&self.admin)
        .await
        .expect("pg_terminate_backend");
        assert!(killed >= 1, "no listener connection to terminate");
        true
    }
}
