//! [`PostgresStore`]: sessions in one Postgres table, changes over
//! `LISTEN`/`NOTIFY`.

mod deadline;
mod sql;

use std::sync::{Arc, Weak};
use std::time::Duration;

use session_core::{
    ChangeHub, ConfigError, Cursor, Error, InvalidInput, Metadata, Page, Record, Result, SessionId,
    StoreConfig, Ttl, Update, Version, WriteId, write_log,
};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::cleanup::{self, Batch, CleanupConfig, CleanupHandle};
use crate::config::{NotifyMode, PostgresConfig, check_fraction};
use crate::error::{self, from_sqlx, millis, version, version_param};
use crate::ident::Ident;
use crate::listener::{self, AbortOnDrop};
use crate::migrate;
use crate::notifier::Notifier;
use crate::scan::page;

use self::sql::Statements;

/// How often an update re-runs when its snapshot showed the expected
/// version but a concurrent writer changed the row first.
const AMBIGUOUS_RETRIES: usize = 8;

/// A [`SessionStore`](session_core::SessionStore) on Postgres.
///
/// One row per session in a configurable, validated `schema.table`
/// (see the README for the layout). Every operation is one statement and
/// one round trip (a load that slides, `touch`, and an update that does
/// not apply: two), on the server's clock:
///
/// - `create` inserts, replacing only an expired row (`ON CONFLICT ... DO
///   UPDATE ... WHERE expires_at <= now()`), never a live one;
/// - `update` is a compare-and-set (`WHERE id AND version AND live`),
///   one plain `UPDATE ... RETURNING` when it applies; when it does not, a
///   second statement reads the live version from one snapshot and tells a
///   conflict from a missing record (or deletes a row past its capped
///   deadline);
/// - `load` is a point select that also says whether the slide throttle's
///   window has passed; only then (once per window per session) does it
///   send the conditional slide `UPDATE`, so hot sessions neither churn WAL
///   nor pay for a write on every read; a corrupt row is reported before
///   anything is written; `version` is a point select that never writes;
/// - committed writes queue their change for a batched `pg_notify` right
///   after the commit ([`NotifyMode::AfterCommit`], the default: writes
///   keep group commit, and a lost event shows as a gap that listeners
///   turn into a resync), or notify in the writing statement
///   ([`NotifyMode::InStatement`]: sent if and only if the write commits,
///   at the price of serialised commits).
///
/// Clones share the pool, the listener and the change stream. Scans are
/// ordered by id with a keyset cursor and never repeat an id.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    sql: Statements,
    config: StoreConfig,
    ttl_ms: i64,
    max_ms: Option<i64>,
    fraction: f64,
    schema: Ident,
    table: Ident,
    channel: String,
    hub: Option<ChangeHub>,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
    operation_timeout: Option<Duration>,
    notifier: Option<Notifier>,
    _listener: Option<AbortOnDrop>,
}

impl Inner {
    fn err(&self, e: sqlx::Error) -> Error {
        from_sqlx(e, self.acquire_timeout, self.statement_timeout)
    }

    /// With [`NotifyMode::AfterCommit`]: queues a committed write's event.
    fn notify_after(&self, payload: impl FnOnce() -> String) {
        if let Some(n) = &self.notifier {
            n.send(payload());
        }
    }
}

impl PostgresStore {
    /// Connects, applies pending migrations (unless turned off) and starts
    /// the change listener (unless turned off).
    pub async fn connect(cfg: PostgresConfig) -> Result<Self> {
        let schema = Ident::new("schema", &cfg.schema).map_err(error::config)?;
        let table = Ident::new("table", &cfg.table).map_err(error::config)?;
        let fraction = check_fraction(cfg.slide_fraction).map_err(error::config)?;
        let mut options: PgConnectOptions = cfg.url.parse().map_err(|e: sqlx::Error| {
            error::config(ConfigError::Invalid {
                setting: "url",
                reason: e.to_string(),
            })
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name(&format!("vmcp-store:{schema}.{table}"));
        }
        let listen_options = options
            .clone()
            .application_name(&format!("vmcp-listen:{schema}.{table}"));
        if let Some(t) = cfg.pool.statement_timeout {
            options = options.options([("statement_timeout", format!("{}ms", millis(t)))]);
        }
        let p = &cfg.pool;
        let pool = PgPoolOptions::new()
            .max_connections(p.max_connections.max(1))
            .min_connections(p.min_connections)
            .acquire_timeout(p.acquire_timeout)
            .idle_timeout(p.idle_timeout)
            .max_lifetime(p.max_lifetime)
            .test_before_acquire(p.test_before_acquire)
            .connect_lazy_with(options.clone());
        let err = |e| from_sqlx(e, p.acquire_timeout, p.statement_timeout);
        if cfg.migrate || cfg.listen {
            // One direct connection first, which runs the migrations: the
            // pool (and the listener's) would retry a refused connection
            // until its acquire timeout and report a `Timeout`; a refusal
            // is an outage, reported at once as `Unavailable`.
            let mut conn = tokio::time::timeout(p.acquire_timeout, async {
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await
            })
            .await
            .map_err(|_| Error::Timeout(p.acquire_timeout))?
            .map_err(err)?;
            if cfg.migrate {
                migrate::postgres(&mut conn, &schema, &table)
                    .await
                    .map_err(err)?;
            }
            let _ = sqlx::Connection::close(conn).await;
        }
        let channel = sql::channel(&schema, &table);
        let (hub, listener) = if cfg.listen {
            let hub = ChangeHub::new(cfg.change_capacity);
            let task = listener::start(listen_options, channel.clone(), hub.clone())
                .await
                .map_err(err)?;
            (Some(hub), Some(task))
        } else {
            (None, None)
        };
        let in_statement = cfg.notify == NotifyMode::InStatement;
        let sql = Statements::new(&schema, &table, in_statement.then_some(channel.as_str()));
        let notifier = if cfg.notify == NotifyMode::AfterCommit {
            // Its first marker is sent before any write of this store, so
            // listeners know it before it could fall silent (see
            // `notifier`).
            Some(
                Notifier::start(&options, &schema, &table, channel.clone())
                    .await
                    .map_err(err)?,
            )
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                sql,
                ttl_ms: millis(cfg.store.ttl()),
                max_ms: cfg.store.max_lifetime().map(millis),
                config: cfg.store,
                fraction,
                schema,
                table,
                channel,
                hub,
                acquire_timeout: cfg.pool.acquire_timeout,
                statement_timeout: cfg.pool.statement_timeout,
                operation_timeout: cfg.pool.operation_timeout,
                notifier,
                _listener: listener,
            }),
        })
    }

    /// The connection pool (for health checks and metrics).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding the table.
    pub fn schema(&self) -> &Ident {
        &self.inner.schema
    }

    /// The table.
    pub fn table(&self) -> &Ident {
        &self.inner.table
    }

    /// The `LISTEN`/`NOTIFY` channel (`<schema>.<table>`, hashed if longer
    /// than 63 bytes).
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Deletes up to `batch` expired rows now; returns how many.
    pub async fn purge_expired(&self, batch: u32) -> Result<u64> {
        purge(&self.inner, batch).await
    }

    /// Starts the batched expired-row cleanup task. It stops when the
    /// handle is dropped or stopped, or when every store handle is gone.
    pub fn spawn_cleanup(&self, config: CleanupConfig) -> CleanupHandle {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let name = format!("{}.{}", self.inner.schema, self.inner.table);
        cleanup::spawn(name, config, move |batch| {
            let weak = weak.clone();
            async move {
                match weak.upgrade() {
                    Some(inner) => purge(&inner, batch).await.map(Batch::Deleted),
                    None => Ok(Batch::StoreGone),
                }
            }
        })
    }
}

/// The row read `load` and `peek` share: the live row decoded (by the
/// shared [`error::record`]), and whether the slide throttle's window has
/// passed. Writes nothing.
async fn read(inner: &Inner, id: &SessionId) -> Result<Option<(Record, bool)>> {
    let row = sqlx::query(inner.sql.load.clone())
        .bind(id.as_str())
        .bind(inner.max_ms)
        .bind(inner.fraction)
        .fetch_optional(&inner.pool)
        .await
        .map_err(|e| inner.err(e))?;
    let Some(row) = row else { return Ok(None) };
    let v: i64 = row.try_get(0).map_err(|e| inner.err(e))?;
    let md: &str = row.try_get(1).map_err(|e| inner.err(e))?;
    let stale: bool = row.try_get(2).map_err(|e| inner.err(e))?;
    Ok(Some((error::record(id.as_str(), v, md.as_bytes())?, stale)))
}

/// What a slide statement did.
struct Slid {
    /// The row slid.
    slid: bool,
    /// The row was past its capped deadline: deleted (and notified).
    expired: bool,
}

/// Runs the `slide` (`throttled`, a load's) or `touch` statement.
async fn slide(inner: &Inner, id: &SessionId, throttled: bool) -> Result<Slid> {
    let statement = if throttled {
        &inner.sql.slide
    } else {
        &inner.sql.touch
    };
    let mut q = sqlx::query(statement.clone())
        .bind(id.as_str())
        .bind(inner.max_ms);
    if throttled {
        q = q.bind(inner.fraction);
    }
    let row = q.fetch_one(&inner.pool).await.map_err(|e| inner.err(e))?;
    let out = Slid {
        slid: row.try_get(0).map_err(|e| inner.err(e))?,
        expired: row.try_get(1).map_err(|e| inner.err(e))?,
    };
    if out.expired {
        inner.notify_after(|| format!("d:{id}"));
    }
    Ok(out)
}

async fn purge(inner: &Inner, batch: u32) -> Result<u64> {
    sqlx::query(inner.sql.purge.clone())
        .bind(i64::from(batch.max(1)))
        .execute(&inner.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| inner.err(e))
}

/// The store operations without the client-side deadline (see
/// `deadline.rs`, whose `SessionStore` impl bounds each one).
impl PostgresStore {
    async fn create_once_unbounded(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        let inner = &*self.inner;
        let ttl_ms = millis(inner.config.effective_ttl(ttl));
        let row = sqlx::query(inner.sql.create.clone())
            .bind(id.as_str())
            .bind(metadata.json())
            .bind(ttl_ms)
            .bind(inner.max_ms)
            .bind(write.log_entry(Version::INITIAL))
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.err(e))?;
        if row.is_none() {
            // Taken: by this very create, applied before (a retry)?
            let writes: Option<String> = sqlx::query_scalar(inner.sql.writes.clone())
                .bind(id.as_str())
                .fetch_optional(&inner.pool)
                .await
                .map_err(|e| inner.err(e))?;
            let mine = writes.is_some_and(|w| write_log::find(&w, write) == Some(Version::INITIAL));
            return Ok(mine.then_some(Version::INITIAL));
        }
        inner.notify_after(|| format!("w:1:{id}"));
        Ok(Some(Version::INITIAL))
    }

    async fn load_unbounded(&self, id: &SessionId) -> Result<Option<Record>> {
        let inner = &*self.inner;
        let Some((record, stale)) = read(inner, id).await? else {
            return Ok(None);
        };
        // Once per throttle window per session: the statement re-checks
        // liveness and the window, so a concurrent slide, update or delete
        // turns it into a no-op. A row past its capped deadline is deleted
        // by it and reported absent.
        if stale && slide(inner, id, true).await?.expired {
            return Ok(None);
        }
        Ok(Some(record))
    }

    async fn peek_unbounded(&self, id: &SessionId) -> Result<Option<Record>> {
        // `load`'s row read, never its slide.
        Ok(read(&self.inner, id).await?.map(|(record, _)| record))
    }

    async fn version_unbounded(&self, id: &SessionId) -> Result<Option<Version>> {
        let inner = &*self.inner;
        let v: Option<i64> = sqlx::query_scalar(inner.sql.version.clone())
            .bind(id.as_str())
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.err(e))?;
        v.map(|v| version(id.as_str(), v)).transpose()
    }

    async fn update_once_unbounded(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        let inner = &*self.inner;
        let expected_raw = version_param(expected);
        // Unused (the statements refuse the write) at Version::MAX.
        let entry = write.log_entry(expected.checked_next().unwrap_or(Version::MAX));
        // The common case first: the write applies. Only when it matches
        // nothing does the full statement below find out why (missing,
        // conflict, version ceiling, capped deadline).
        let applied: Option<i64> = sqlx::query(inner.sql.update_applied.clone())
            .bind(id.as_str())
            .bind(expected_raw)
            .bind(metadata.json())
            .bind(inner.ttl_ms)
            .bind(inner.max_ms)
            .bind(&entry)
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.err(e))?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(|e| inner.err(e))?;
        if let Some(v) = applied {
            let v = version(id.as_str(), v)?;
            inner.notify_after(|| format!("w:{v}:{id}"));
            return Ok(Update::Applied(v));
        }
        for _ in 0..AMBIGUOUS_RETRIES {
            let row = sqlx::query(inner.sql.update.clone())
                .bind(id.as_str())
                .bind(expected_raw)
                .bind(metadata.json())
                .bind(inner.ttl_ms)
                .bind(inner.max_ms)
                .bind(&entry)
                .fetch_one(&inner.pool)
                .await
                .map_err(|e| inner.err(e))?;
            let applied: Option<i64> = row.try_get(0).map_err(|e| inner.err(e))?;
            let current: Option<i64> = row.try_get(1).map_err(|e| inner.err(e))?;
            let expired: bool = row.try_get(2).map_err(|e| inner.err(e))?;
            let writes: Option<String> = row.try_get(3).map_err(|e| inner.err(e))?;
            // Not written now, but by this very write before (a retry
            // after a lost reply): its original outcome. The list is from
            // the statement's own snapshot, like `current`.
            if applied.is_none()
                && current != Some(expected_raw)
                && let Some(v) = writes.as_deref().and_then(|w| write_log::find(w, write))
            {
                return Ok(Update::Applied(v));
            }
            match (applied, current) {
                (Some(v), _) => {
                    let v = version(id.as_str(), v)?;
                    inner.notify_after(|| format!("w:{v}:{id}"));
                    return Ok(Update::Applied(v));
                }
                (None, None) => return Ok(Update::Missing),
                // At the expected version but past its capped deadline:
                // the statement deleted it.
                (None, Some(_)) if expired => {
                    inner.notify_after(|| format!("d:{id}"));
                    return Ok(Update::Missing);
                }
                (None, Some(v)) if v == expected_raw && expected == Version::MAX => {
                    return Err(error::version_limit(id.as_str()));
                }
                // The snapshot showed the expected version, yet the update
                // matched nothing: a writer committed in between. Ask again
                // with a fresh snapshot.
                (None, Some(v)) if v == expected_raw => {}
                (None, Some(v)) => {
                    return Ok(Update::Conflict {
                        current: version(id.as_str(), v)?,
                    });
                }
            }
        }
        // Still racing after several tries (a writer lands between every
        // snapshot and update): report the version as it is now.
        match self.version_unbounded(id).await? {
            Some(current) => Ok(Update::Conflict { current }),
            None => Ok(Update::Missing),
        }
    }

    async fn touch_unbounded(&self, id: &SessionId) -> Result<bool> {
        // Checked like `load` first (a corrupt row is reported and never
        // slid), then the slide, which re-checks liveness.
        let inner = &*self.inner;
        if read(inner, id).await?.is_none() {
            return Ok(false);
        }
        Ok(slide(inner, id, false).await?.slid)
    }

    async fn delete_unbounded(&self, id: &SessionId) -> Result<bool> {
        let inner = &*self.inner;
        let live: Option<bool> = sqlx::query_scalar(inner.sql.delete.clone())
            .bind(id.as_str())
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.err(e))?;
        let live = live.unwrap_or(false);
        if live {
            inner.notify_after(|| format!("d:{id}"));
        }
        Ok(live)
    }

    async fn scan_unbounded(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        if limit == 0 {
            return Err(InvalidInput::ScanLimit.into());
        }
        let inner = &*self.inner;
        // One extra row tells whether another page follows.
        let fetch = i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let rows: Vec<String> = match cursor {
            None => {
                sqlx::query_scalar(inner.sql.scan_first.clone())
                    .bind(fetch)
                    .fetch_all(&inner.pool)
                    .await
            }
            Some(c) => {
                sqlx::query_scalar(inner.sql.scan_next.clone())
                    .bind(c.as_str())
                    .bind(fetch)
                    .fetch_all(&inner.pool)
                    .await
            }
        }
        .map_err(|e| inner.err(e))?;
        Ok(page(rows, limit, inner.table.as_str()))
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("table", &self.inner.table)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
