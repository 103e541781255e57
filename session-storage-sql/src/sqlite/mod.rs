//! [`SqliteStore`]: the persistent embedded store for a single node.

mod sql;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use session_core::{
    Change, ChangeHub, ChangeStream, Cursor, Error, InvalidInput, Metadata, Page, Record, Result,
    SessionId, SessionStore, StoreConfig, Ttl, Update, Version, WriteId, write_log,
};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::cleanup::{self, Batch, CleanupConfig, CleanupHandle};
use crate::config::{SqliteConfig, SqliteLocation, check_fraction};
use crate::error::{self, millis, version, version_param};
use crate::ident::Ident;
use crate::migrate;
use crate::scan::page;

use self::sql::Statements;

/// "No absolute lifetime": far enough out never to bind, small enough
/// that adding it to a Unix-ms timestamp cannot overflow.
const NO_MAX_LIFETIME_MS: i64 = i64::MAX / 4;

/// A [`SessionStore`] on SQLite (sqlx's SQLite driver, bundled SQLite).
///
/// A file database runs in WAL mode (readers never block the writer);
/// `SqliteConfig::in_memory` keeps a private database on one connection.
/// Semantics match [`crate::PostgresStore`] and the reference
/// `MemoryStore`, on SQLite's clock: create replaces only an expired row,
/// update is a compare-and-set in one `BEGIN IMMEDIATE` transaction (so it
/// tells a conflict from a missing record without a race), loads throttle
/// their slide.
///
/// The change stream is local to the process: every `SqliteStore` in this
/// process on the same file and table (and every clone or
/// [`SqliteStore::handle`]) shares one hub, but writes by other processes
/// are not reported. Use Postgres or Redis when several nodes share
/// sessions.
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    config: StoreConfig,
    ttl_ms: i64,
    max_ms: i64,
}

struct Shared {
    pool: SqlitePool,
    sql: Statements,
    hub: Arc<ChangeHub>,
    table: Ident,
    fraction: f64,
    busy_timeout: Duration,
}

/// Hubs shared by every store in the process on the same file and table.
type HubKey = (PathBuf, String);

fn hubs() -> &'static Mutex<HashMap<HubKey, Weak<ChangeHub>>> {
    static HUBS: std::sync::OnceLock<Mutex<HashMap<HubKey, Weak<ChangeHub>>>> =
        std::sync::OnceLock::new();
    HUBS.get_or_init(Mutex::default)
}

fn shared_hub(key: HubKey, capacity: usize) -> Arc<ChangeHub> {
    let mut map = hubs().lock().unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, hub| hub.strong_count() > 0);
    if let Some(hub) = map.get(&key).and_then(Weak::upgrade) {
        return hub;
    }
    let hub = Arc::new(ChangeHub::new(capacity));
    map.insert(key, Arc::downgrade(&hub));
    hub
}

impl SqliteStore {
    /// Opens (creating if missing) the database and applies pending
    /// migrations.
    pub async fn open(cfg: SqliteConfig) -> Result<Self> {
        let table = Ident::new("table", &cfg.table).map_err(error::config)?;
        let fraction = check_fraction(cfg.slide_fraction).map_err(error::config)?;
        let pool = match &cfg.location {
            SqliteLocation::File(path) => {
                let options = cfg
                    .options
                    .clone()
                    .unwrap_or_else(|| {
                        SqliteConnectOptions::new()
                            .filename(path)
                            .create_if_missing(true)
                    })
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(if cfg.synchronous_full {
                        SqliteSynchronous::Full
                    } else {
                        SqliteSynchronous::Normal
                    })
                    .busy_timeout(cfg.busy_timeout);
                // Several stores opening one new file at once race to switch
                // it to WAL, and SQLite answers that race with an immediate
                // SQLITE_BUSY that its busy handler never retries: retry here,
                // within the same busy_timeout.
                let deadline = tokio::time::Instant::now() + cfg.busy_timeout;
                let mut pause = Duration::from_millis(5);
                loop {
                    let opened = SqlitePoolOptions::new()
                        .max_connections(cfg.max_connections.max(1))
                        .acquire_timeout(cfg.busy_timeout.max(Duration::from_secs(1)))
                        .connect_with(options.clone())
                        .await;
                    match opened {
                        Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(200));
                        }
                        other => break other,
                    }
                }
            }
            SqliteLocation::Memory => {
                // One connection that is never recycled: the database lives
                // exactly as long as the pool.
                let options = match &cfg.options {
                    Some(options) => Ok(options.clone()),
                    None => "sqlite::memory:".parse::<SqliteConnectOptions>(),
                }
                .map(|o| o.busy_timeout(cfg.busy_timeout));
                match options {
                    Ok(options) => {
                        SqlitePoolOptions::new()
                            .max_connections(1)
                            .min_connections(1)
                            .idle_timeout(None)
                            .max_lifetime(None)
                            .acquire_timeout(cfg.busy_timeout.max(Duration::from_secs(1)))
                            .connect_with(options)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        }
        .map_err(|e| sqlite_err(e, cfg.busy_timeout))?;
        migrate::sqlite(&pool, &table)
            .await
            .map_err(|e| sqlite_err(e, cfg.busy_timeout))?;
        let hub = match &cfg.location {
            SqliteLocation::File(path) => {
                let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                shared_hub((canonical, table.as_str().to_owned()), cfg.change_capacity)
            }
            SqliteLocation::Memory => Arc::new(ChangeHub::new(cfg.change_capacity)),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                sql: Statements::new(&table),
                hub,
                table,
                fraction,
                busy_timeout: cfg.busy_timeout,
            }),
            ttl_ms: millis(cfg.store.ttl()),
            max_ms: cfg.store.max_lifetime().map_or(NO_MAX_LIFETIME_MS, millis),
            config: cfg.store,
        })
    }

    /// Another handle on the same database, pool and change stream with
    /// different expiry settings.
    #[must_use]
    pub fn handle(&self, config: StoreConfig) -> Self {
        Self {
            shared: self.shared.clone(),
            ttl_ms: millis(config.ttl()),
            max_ms: config.max_lifetime().map_or(NO_MAX_LIFETIME_MS, millis),
            config,
        }
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.shared.pool
    }

    /// The table.
    pub fn table(&self) -> &Ident {
        &self.shared.table
    }

    /// Deletes up to `batch` expired rows now; returns how many.
    pub async fn purge_expired(&self, batch: u32) -> Result<u64> {
        purge(&self.shared, batch).await
    }

    /// Starts the batched expired-row cleanup task (see
    /// [`crate::PostgresStore::spawn_cleanup`]).
    pub fn spawn_cleanup(&self, config: CleanupConfig) -> CleanupHandle {
        let weak = Arc::downgrade(&self.shared);
        let name = format!("sqlite:{}", self.shared.table);
        cleanup::spawn(name, config, move |batch| {
            let weak = weak.clone();
            async move {
                match weak.upgrade() {
                    Some(shared) => purge(&shared, batch).await.map(Batch::Deleted),
                    None => Ok(Batch::StoreGone),
                }
            }
        })
    }

    /// The row read `load` and `peek` share: the live row decoded (by the
    /// shared [`error::record`]), and whether the slide throttle's window
    /// has passed. Writes nothing.
    async fn read(&self, id: &SessionId) -> Result<Option<(Record, bool)>> {
        let sh = &*self.shared;
        let row = sqlx::query(sh.sql.load.clone())
            .bind(id.as_str())
            .bind(self.max_ms)
            .bind(sh.fraction)
            .fetch_optional(&sh.pool)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let v: i64 = row.try_get(0).map_err(|e| self.err(e))?;
        // Bytes: TEXT can hold bytes that are not UTF-8 (corrupt, not an outage).
        let md: &[u8] = row.try_get(1).map_err(|e| self.err(e))?;
        let stale: bool = row.try_get(2).map_err(|e| self.err(e))?;
        Ok(Some((error::record(id.as_str(), v, md)?, stale)))
    }

    fn err(&self, e: sqlx::Error) -> Error {
        sqlite_err(e, self.shared.busy_timeout)
    }

    /// Deletes `id` if it is live but past its capped deadline (max_lifetime
    /// lowered since it was created), publishing the delete. `true` if so.
    async fn expire(&self, id: &SessionId) -> Result<bool> {
        let gone: Option<i64> = sqlx::query_scalar(self.shared.sql.expire.clone())
            .bind(id.as_str())
            .bind(self.max_ms)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| self.err(e))?;
        if gone.is_some() {
            self.publish(Change::Deleted { id: id.clone() });
        }
        Ok(gone.is_some())
    }

    fn publish(&self, change: Change) {
        self.shared.hub.publish(change);
    }
}

/// SQLite's busy/locked codes (`SQLITE_BUSY`, `SQLITE_LOCKED` and their
/// extended forms).
fn is_busy(e: &sqlx::Error) -> bool {
    if let sqlx::Error::Database(db) = e
        && let Some(code) = db.code()
        && let Ok(code) = code.parse::<i32>()
    {
        return matches!(code & 0xff, 5 | 6);
    }
    false
}

/// SQLite's busy/locked codes (after `busy_timeout`) become timeouts.
fn sqlite_err(e: sqlx::Error, busy: Duration) -> Error {
    if is_busy(&e) {
        return Error::Timeout(busy);
    }
    crate::error::from_sqlx(e, busy, None)
}

async fn purge(shared: &Shared, batch: u32) -> Result<u64> {
    sqlx::query(shared.sql.purge.clone())
        .bind(i64::from(batch.max(1)))
        .execute(&shared.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| sqlite_err(e, shared.busy_timeout))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        let ttl_ms = millis(self.config.effective_ttl(ttl));
        let created: Option<i64> = sqlx::query_scalar(self.shared.sql.create.clone())
            .bind(id.as_str())
            .bind(metadata.json())
            .bind(ttl_ms)
            .bind(self.max_ms)
            .bind(write.log_entry(Version::INITIAL))
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| self.err(e))?;
        if created.is_none() {
            // Taken: by this very create, applied before (a retry)?
            let writes: Option<String> = sqlx::query_scalar(self.shared.sql.writes.clone())
                .bind(id.as_str())
                .fetch_optional(&self.shared.pool)
                .await
                .map_err(|e| self.err(e))?;
            let mine = writes.is_some_and(|w| write_log::find(&w, write) == Some(Version::INITIAL));
            return Ok(mine.then_some(Version::INITIAL));
        }
        self.publish(Change::Written {
            id: id.clone(),
            version: Version::INITIAL,
        });
        Ok(Some(Version::INITIAL))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let sh = &*self.shared;
        let Some((record, stale)) = self.read(id).await? else {
            return Ok(None);
        };
        if stale {
            // Re-checked in the statement: a concurrent slide or delete
            // makes this a no-op. A row past its capped deadline does not
            // slide: it is deleted and reported absent.
            let slid = sqlx::query(sh.sql.slide.clone())
                .bind(id.as_str())
                .bind(self.max_ms)
                .bind(sh.fraction)
                .execute(&sh.pool)
                .await
                .map_err(|e| self.err(e))?;
            if slid.rows_affected() == 0 && self.expire(id).await? {
                return Ok(None);
            }
        }
        Ok(Some(record))
    }

    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        // `load`'s row read, never its slide.
        Ok(self.read(id).await?.map(|(record, _)| record))
    }

    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        let v: Option<i64> = sqlx::query_scalar(self.shared.sql.version.clone())
            .bind(id.as_str())
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| self.err(e))?;
        v.map(|v| version(id.as_str(), v)).transpose()
    }

    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        let sh = &*self.shared;
        let mut tx = sh
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        let applied: Option<i64> = sqlx::query_scalar(sh.sql.update.clone())
            .bind(id.as_str())
            .bind(version_param(expected))
            .bind(metadata.json())
            .bind(self.ttl_ms)
            .bind(self.max_ms)
            .bind(write.log_entry(expected.checked_next().unwrap_or(Version::MAX)))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut expired = false;
        let fresh = applied.is_some();
        let outcome = if let Some(v) = applied {
            Update::Applied(version(id.as_str(), v)?)
        } else {
            // Same transaction: nothing can change between the reads.
            let current: Option<(i64, bool, String)> = sqlx::query_as(sh.sql.current.clone())
                .bind(id.as_str())
                .bind(self.max_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            match current {
                // Written before by this very write (a retry after a lost
                // reply): its original outcome, nothing written.
                Some((v, _, writes)) if v != version_param(expected) => {
                    match write_log::find(&writes, write) {
                        Some(before) => Update::Applied(before),
                        None => Update::Conflict {
                            current: version(id.as_str(), v)?,
                        },
                    }
                }
                // At the expected version, yet not applied: the ceiling
                // (nothing written), or past its capped deadline (deleted).
                Some(_) if expected >= Version::MAX => {
                    return Err(error::version_limit(id.as_str()));
                }
                Some((_, past, _)) => {
                    debug_assert!(past, "the update matched nothing for no reason");
                    let gone: Option<i64> = sqlx::query_scalar(sh.sql.expire.clone())
                        .bind(id.as_str())
                        .bind(self.max_ms)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| self.err(e))?;
                    expired = gone.is_some();
                    Update::Missing
                }
                None => Update::Missing,
            }
        };
        tx.commit().await.map_err(|e| self.err(e))?;
        match outcome {
            Update::Applied(version) if fresh => self.publish(Change::Written {
                id: id.clone(),
                version,
            }),
            Update::Missing if expired => self.publish(Change::Deleted { id: id.clone() }),
            _ => {}
        }
        Ok(outcome)
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        // Checked like `load` first (a corrupt row is reported and never
        // slid), then the slide, which re-checks liveness; a row past its
        // capped deadline is deleted instead.
        if self.read(id).await?.is_none() {
            return Ok(false);
        }
        let done = sqlx::query(self.shared.sql.touch.clone())
            .bind(id.as_str())
            .bind(self.max_ms)
            .execute(&self.shared.pool)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        self.expire(id).await?;
        Ok(false)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let live: Option<bool> = sqlx::query_scalar(self.shared.sql.delete.clone())
            .bind(id.as_str())
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| self.err(e))?;
        let live = live.unwrap_or(false);
        if live {
            self.publish(Change::Deleted { id: id.clone() });
        }
        Ok(live)
    }

    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        if limit == 0 {
            return Err(InvalidInput::ScanLimit.into());
        }
        let sh = &*self.shared;
        let fetch = i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let rows: Vec<String> = match cursor {
            None => {
                sqlx::query_scalar(sh.sql.scan_first.clone())
                    .bind(fetch)
                    .fetch_all(&sh.pool)
                    .await
            }
            Some(c) => {
                sqlx::query_scalar(sh.sql.scan_next.clone())
                    .bind(c.as_str())
                    .bind(fetch)
                    .fetch_all(&sh.pool)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        Ok(page(rows, limit, sh.table.as_str()))
    }

    fn changes(&self) -> Option<ChangeStream> {
        Some(self.shared.hub.subscribe())
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.shared.table)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
