//! Store and pool settings, with defaults.

use std::time::Duration;

use session_core::{ConfigError, StoreConfig};

/// The slide throttle used unless configured: a load slides expiry only
/// once a tenth of the session's TTL has passed since the last slide.
pub const DEFAULT_SLIDE_FRACTION: f64 = 0.1;

/// Connection pool settings (sqlx's pool), with defaults chosen for a
/// gateway: a bounded pool, explicit timeouts, and no liveness ping before
/// every query.
///
/// `test_before_acquire` is off by default: sqlx then pings (a full round
/// trip) on every acquire, which measured as roughly doubling the latency of
/// a point read (see the README's benchmark). With it off, a connection
/// killed by the server fails the one query that next uses it with
/// [`session_core::Error::Unavailable`] (transient, safe to retry) and the
/// pool replaces it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// Most open connections (default 16).
    pub max_connections: u32,
    /// Connections kept open when idle (default 0).
    pub min_connections: u32,
    /// How long an operation waits for a free connection before it fails
    /// with [`session_core::Error::Timeout`] (default 5 s).
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long (default 10 min).
    pub idle_timeout: Option<Duration>,
    /// Connections are recycled after this long (default 30 min).
    pub max_lifetime: Option<Duration>,
    /// Ping each connection before handing it out (default `false`).
    pub test_before_acquire: bool,
    /// Server-side `statement_timeout` for store connections (Postgres
    /// only; default none). A statement cancelled by it is reported as
    /// [`session_core::Error::Timeout`].
    pub statement_timeout: Option<Duration>,
    /// Client-side bound on every store operation, acquiring a connection
    /// included (Postgres only; default 10 s, `None` for none): past it
    /// the operation ends with [`session_core::Error::Timeout`]. Unlike
    /// `statement_timeout` it also ends an operation whose connection
    /// stalled (no reply, no close), which the server cannot see. Keep it
    /// above `acquire_timeout` plus `statement_timeout`, or those are
    /// reported as this.
    pub operation_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            test_before_acquire: false,
            statement_timeout: None,
            operation_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// Checks a slide fraction: a finite number in `0.0..=1.0`.
pub(crate) fn check_fraction(fraction: f64) -> Result<f64, ConfigError> {
    if fraction.is_finite() && (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err(ConfigError::Invalid {
            setting: "slide_fraction",
            reason: format!("{fraction} is not within 0.0..=1.0"),
        })
    }
}

/// How a [`crate::PostgresStore`] publishes its writes on the change
/// channel.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// `pg_notify` inside the writing statement: a notification is sent if
    /// and only if the write commits. The price is Postgres's own: a
    /// transaction that notifies holds a database-wide lock from pre-commit
    /// until its commit record is flushed, so notifying writes commit one
    /// at a time (no group commit) and write throughput is capped at about
    /// one commit per WAL flush (see the README's benchmark).
    InStatement,
    /// The default. The event is queued once the write has committed and a
    /// background task sends the queue in batches on its own connection
    /// (one `pg_notify` statement per batch, no extra round trip on the
    /// write path). A notify-only transaction writes no WAL of its own, so
    /// it commits without waiting for a flush, and writes keep group
    /// commit. An event can be lost (the queue overflows, a batch cannot be
    /// sent, the process dies between a commit and its batch), but never
    /// silently: every batch carries a sequence number and an idle sender
    /// sends a heartbeat every second, so listeners see a skipped number or
    /// a sender silent for 3 s and publish [`session_core::Change::Resync`].
    #[default]
    AfterCommit,
    /// No notifications (no node uses the change stream).
    Off,
}

/// Settings for [`crate::PostgresStore`].
///
/// ```
/// use std::time::Duration;
/// use session_core::StoreConfig;
/// use session_storage_sql::PostgresConfig;
///
/// let cfg = PostgresConfig::new("postgres://app@db/sessions?sslmode=require")
///     .schema("vmcp")
///     .table("sessions")
///     .store(StoreConfig::new(Duration::from_secs(1800))?)
///     .slide_fraction(0.1);
/// # let _ = cfg;
/// # Ok::<(), session_core::ConfigError>(())
/// ```
///
/// Its `Debug` output shows the URL with the password and secret query
/// parameters replaced by `***` ([`session_core::redact_url`]).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) store: StoreConfig,
    pub(crate) slide_fraction: f64,
    pub(crate) pool: PoolConfig,
    pub(crate) notify: NotifyMode,
    pub(crate) listen: bool,
    pub(crate) migrate: bool,
    pub(crate) change_capacity: usize,
}

#[cfg(feature = "postgres")]
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &session_core::redact_url(&self.url))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("store", &self.store)
            .field("slide_fraction", &self.slide_fraction)
            .field("pool", &self.pool)
            .field("notify", &self.notify)
            .field("listen", &self.listen)
            .field("migrate", &self.migrate)
            .field("change_capacity", &self.change_capacity)
            .finish()
    }
}

#[cfg(feature = "postgres")]
impl PostgresConfig {
    /// Defaults: schema `public`, table `vmcp_sessions`, the default
    /// [`StoreConfig`], slide fraction 0.1, default [`PoolConfig`],
    /// notifications and the listener on, migrations applied at connect.
    /// `url` is a libpq-style URL; `sslmode` in it selects TLS (feature
    /// `tls-rustls`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "public".to_owned(),
            table: "vmcp_sessions".to_owned(),
            store: StoreConfig::default(),
            slide_fraction: DEFAULT_SLIDE_FRACTION,
            pool: PoolConfig::default(),
            notify: NotifyMode::AfterCommit,
            listen: true,
            migrate: true,
            change_capacity: 1024,
        }
    }

    /// The schema holding the table (validated at connect as
    /// `[a-z_][a-z0-9_]{0,62}`; created if missing).
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table name (validated like the schema).
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Expiry settings.
    #[must_use]
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// A load rewrites `expires_at` only when at least this fraction of
    /// the session's TTL has passed since the last slide (`0.0` slides on
    /// every load). Touch and update always slide. Must be within
    /// `0.0..=1.0` (checked at connect).
    #[must_use]
    pub fn slide_fraction(mut self, fraction: f64) -> Self {
        self.slide_fraction = fraction;
        self
    }

    /// Pool settings.
    #[must_use]
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// How writes issue `pg_notify` (default [`NotifyMode::AfterCommit`]).
    #[must_use]
    pub fn notify(mut self, mode: NotifyMode) -> Self {
        self.notify = mode;
        self
    }

    /// Whether this handle runs a `LISTEN` task feeding
    /// [`session_core::SessionStore::changes`] (default `true`; it holds
    /// one extra connection).
    #[must_use]
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }

    /// Whether connect applies pending migrations (default `true`). When
    /// off, the table must already exist.
    #[must_use]
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// How far a change-stream receiver may fall behind before it sees a
    /// resync (default 1024).
    #[must_use]
    pub fn change_capacity(mut self, capacity: usize) -> Self {
        self.change_capacity = capacity;
        self
    }
}

/// Where a [`crate::SqliteStore`] keeps its data.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqliteLocation {
    /// A database file (created if missing), in WAL mode.
    File(std::path::PathBuf),
    /// A private in-memory database on a single connection, gone when the
    /// last handle is dropped.
    Memory,
}

/// Settings for [`crate::SqliteStore`].
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    pub(crate) location: SqliteLocation,
    /// sqlx's options parsed from a URL ([`SqliteConfig::from_url`]); the
    /// store sets its journal mode, synchronous mode and busy timeout on
    /// top of them.
    pub(crate) options: Option<sqlx::sqlite::SqliteConnectOptions>,
    pub(crate) table: String,
    pub(crate) store: StoreConfig,
    pub(crate) slide_fraction: f64,
    pub(crate) max_connections: u32,
    pub(crate) busy_timeout: Duration,
    pub(crate) synchronous_full: bool,
    pub(crate) change_capacity: usize,
}

#[cfg(feature = "sqlite")]
impl SqliteConfig {
    /// A database file at `path` (created if missing).
    pub fn file(path: impl Into<std::path::PathBuf>) -> Self {
        Self::at(SqliteLocation::File(path.into()))
    }

    /// A private in-memory database.
    pub fn in_memory() -> Self {
        Self::at(SqliteLocation::Memory)
    }

    /// A database named by a URL in sqlx's own forms, parsed by sqlx
    /// (`SqliteConnectOptions::from_str`): `sqlite:data.db`,
    /// `sqlite://data.db?mode=rwc`, `sqlite:///abs/path.db`,
    /// `sqlite::memory:`, `sqlite://?mode=memory`. sqlx's rules apply: the
    /// file must exist unless `mode=rwc` is given (`mode=ro` opens it read
    /// only; `cache`, `immutable` and `vfs` are sqlx's too). An in-memory
    /// database is kept on one connection that is never recycled, as
    /// [`SqliteConfig::in_memory`]'s is.
    ///
    /// ```
    /// use session_storage_sql::{SqliteConfig, SqliteLocation};
    ///
    /// let cfg = SqliteConfig::from_url("sqlite://sessions.db?mode=rwc")?;
    /// assert_eq!(cfg.location(), &SqliteLocation::File("sessions.db".into()));
    /// let cfg = SqliteConfig::from_url("sqlite::memory:")?;
    /// assert_eq!(cfg.location(), &SqliteLocation::Memory);
    /// assert!(SqliteConfig::from_url("sqlite://x.db?mode=bogus").is_err());
    /// # Ok::<(), session_core::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let options: sqlx::sqlite::SqliteConnectOptions =
            url.parse().map_err(|e: sqlx::Error| ConfigError::Invalid {
                setting: "sqlite url",
                reason: e.to_string(),
            })?;
        // An in-memory database, as sqlx reads the URL: the database part
        // `:memory:`, or `mode=memory`.
        let rest = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
        let memory = database == ":memory:" || query.split('&').any(|p| p == "mode=memory");
        let location = if memory {
            SqliteLocation::Memory
        } else {
            SqliteLocation::File(options.get_filename().to_path_buf())
        };
        let mut cfg = Self::at(location);
        cfg.options = Some(options);
        Ok(cfg)
    }

    /// Where the data lives.
    pub fn location(&self) -> &SqliteLocation {
        &self.location
    }

    fn at(location: SqliteLocation) -> Self {
        Self {
            location,
            options: None,
            table: "vmcp_sessions".to_owned(),
            store: StoreConfig::default(),
            slide_fraction: DEFAULT_SLIDE_FRACTION,
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous_full: true,
            change_capacity: 1024,
        }
    }

    /// The table name (validated as `[a-z_][a-z0-9_]{0,62}`).
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Expiry settings.
    #[must_use]
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// The load slide throttle (see [`PostgresConfig::slide_fraction`]).
    #[must_use]
    pub fn slide_fraction(mut self, fraction: f64) -> Self {
        self.slide_fraction = fraction;
        self
    }

    /// Most open connections for a file database (default 4; an
    /// in-memory database always uses one).
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a writer waits for the database lock (default 5 s).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// `synchronous=FULL` (default, every commit is durable) or `NORMAL`
    /// (WAL: a power loss may drop the last commits, never corrupts).
    #[must_use]
    pub fn synchronous_full(mut self, full: bool) -> Self {
        self.synchronous_full = full;
        self
    }

    /// How far a change-stream receiver may fall behind before it sees a
    /// resync (default 1024).
    #[must_use]
    pub fn change_capacity(mut self, capacity: usize) -> Self {
        self.change_capacity = capacity;
        self
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_passwords_and_secret_parameters() {
        let shown = format!(
            "{:?}",
            PostgresConfig::new(
                "postgres://app:hunter2@db:5432/app?sslmode=require&sslpassword=swordfish"
            )
        );
        assert!(
            shown.contains("postgres://app:***@db:5432/app?sslmode=require&sslpassword=***"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
    }
}
