//! An embedded migration runner for a configurable schema and table.
//!
//! `sqlx::migrate!` cannot substitute a schema or table name, so the
//! migrations here are versioned SQL templates (embedded at compile time,
//! no database needed) into which only validated, quoted identifiers are
//! substituted. Postgres applies them in one transaction under
//! `pg_advisory_xact_lock`, so stores starting at once on the same schema
//! take turns; each applied version is recorded in the schema's
//! `_session_store_migrations` table (one row per table and version).
//! SQLite does the same under `BEGIN IMMEDIATE`.

use crate::ident::Ident;

/// One versioned migration template.
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) name: &'static str,
    template: &'static str,
}

/// The name of the per-schema table recording applied migrations.
pub const MIGRATIONS_TABLE: &str = "_session_store_migrations";

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "sessions table and expiry index",
        template: include_str!("../migrations/postgres/0001_sessions.sql"),
    },
    Migration {
        version: 2,
        name: "version in 1..=2^53-1",
        template: include_str!("../migrations/postgres/0002_version_check.sql"),
    },
    Migration {
        version: 3,
        name: "recent write ids",
        template: include_str!("../migrations/postgres/0003_write_ids.sql"),
    },
];

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "sessions table and expiry index",
        template: include_str!("../migrations/sqlite/0001_sessions.sql"),
    },
    Migration {
        version: 2,
        name: "version in 1..=2^53-1",
        template: include_str!("../migrations/sqlite/0002_version_check.sql"),
    },
    Migration {
        version: 3,
        name: "recent write ids",
        template: include_str!("../migrations/sqlite/0003_write_ids.sql"),
    },
];

impl Migration {
    /// The template with identifiers substituted: `{{table}}` is the
    /// quoted (schema-qualified when `schema` is given) table, `{{index}}`
    /// the quoted name `<table>_expires_at`, `{{name}}` the bare table
    /// name (validated: safe inside double quotes).
    pub(crate) fn render(&self, schema: Option<&Ident>, table: &Ident) -> String {
        let qualified = match schema {
            Some(s) => format!("{}.{}", s.quoted(), table.quoted()),
            None => table.quoted(),
        };
        self.template
            .replace("{{table}}", &qualified)
            .replace("{{index}}", &format!("\"{}_expires_at\"", table.as_str()))
            .replace("{{name}}", table.as_str())
    }
}

#[cfg(feature = "postgres")]
pub(crate) async fn postgres(
    conn: &mut sqlx::PgConnection,
    schema: &Ident,
    table: &Ident,
) -> Result<(), sqlx::Error> {
    use sqlx::{AssertSqlSafe, Connection, Row};

    let lock_key = i64::from_ne_bytes(
        crate::ident::fnv1a(format!("session-storage-sql:{schema}").as_bytes()).to_ne_bytes(),
    );
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key)
        .execute(&mut *tx)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema.as_str())
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {}", schema.quoted())))
            .execute(&mut *tx)
            .await?;
    }
    let record = format!("{}.\"{MIGRATIONS_TABLE}\"", schema.quoted());
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {record} (\
           table_name text NOT NULL, \
           version integer NOT NULL, \
           name text NOT NULL, \
           applied_at timestamptz NOT NULL DEFAULT now(), \
           PRIMARY KEY (table_name, version))"
    )))
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query(AssertSqlSafe(format!(
        "SELECT version FROM {record} WHERE table_name = $1"
    )))
    .bind(table.as_str())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.try_get::<i32, _>(0))
    .collect::<Result<_, _>>()?;
    for m in POSTGRES.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(%schema, %table, version = m.version, name = m.name, "applying migration");
        sqlx::raw_sql(AssertSqlSafe(m.render(Some(schema), table)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {record} (table_name, version, name) VALUES ($1, $2, $3)"
        )))
        .bind(table.as_str())
        .bind(m.version)
        .bind(m.name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite(pool: &sqlx::SqlitePool, table: &Ident) -> Result<(), sqlx::Error> {
    use sqlx::{AssertSqlSafe, Row};

    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    let record = format!("\"{MIGRATIONS_TABLE}\"");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {record} (\
           table_name TEXT NOT NULL, \
           version INTEGER NOT NULL, \
           name TEXT NOT NULL, \
           applied_at INTEGER NOT NULL DEFAULT (unixepoch()), \
           PRIMARY KEY (table_name, version))"
    )))
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> = sqlx::query(AssertSqlSafe(format!(
        "SELECT version FROM {record} WHERE table_name = ?1"
    )))
    .bind(table.as_str())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.try_get::<i64, _>(0))
    .collect::<Result<_, _>>()?;
    for m in SQLITE
        .iter()
        .filter(|m| !applied.contains(&i64::from(m.version)))
    {
        tracing::info!(%table, version = m.version, name = m.name, "applying migration");
        sqlx::raw_sql(AssertSqlSafe(m.render(None, table)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {record} (table_name, version, name) VALUES (?1, ?2, ?3)"
        )))
        .bind(table.as_str())
        .bind(m.version)
        .bind(m.name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
