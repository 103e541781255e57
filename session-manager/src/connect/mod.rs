//! Opening a store from a URL: [`connect`], and [`ConnectOptions`] for
//! settings given in code.

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod cleanup;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod options;
mod url;

use session_core::{MemoryStore, SessionStore, StoreConfig};
use std::sync::Arc;

pub use error::ConnectError;
pub use options::ConnectOptions;

use options::Kind;

/// Opens the store a URL names, with the options in its query (see
/// [`ConnectOptions`] for the table; `ConnectOptions::new().connect(url)`
/// is the same call):
///
/// - `memory://` — always available; every call is a new, separate store;
/// - `redis://HOST:PORT/DB`, `rediss://...` (TLS: feature `tls-rustls`),
///   `redis+unix:///path.sock`, `unix:///path.sock` (feature `redis`);
///   the URL is redis-rs's;
/// - `postgres://USER@HOST:PORT/DB`, `postgresql://...` (feature
///   `postgres`; `sslmode=require`/`verify-full` need `tls-rustls`); the
///   URL is sqlx's;
/// - `sqlite:PATH`, `sqlite://PATH?mode=rwc`, `sqlite::memory:` (feature
///   `sqlite`), parsed by sqlx with its rules: a missing file is created
///   only with `mode=rwc`.
///
/// For Postgres and SQLite the expired-row cleanup task starts here (every
/// 60 s unless `cleanup=` says otherwise) and stops when the last clone of
/// the returned handle is dropped. For settings not listed (a Redis
/// Cluster, Postgres notification modes, ...) build the store yourself and
/// pass it to [`SessionManager::builder`](crate::SessionManager::builder).
///
/// Errors say what to fix: a malformed URL or option is reported before
/// anything is dialled; an unreachable server is
/// [transient](ConnectError::is_transient); a database that does not exist,
/// a rejected user or password, TLS that fails or is not compiled in and a
/// file that cannot be opened are
/// [`session_core::Error::Misconfigured`] (not transient). Passwords never
/// appear in an error's text or `Debug`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = session_manager::connect("memory://?ttl=10m").await.unwrap();
/// assert!(store.changes().is_some());
/// assert_eq!(store.config().ttl(), std::time::Duration::from_secs(600));
/// let Err(err) = session_manager::connect("memory://?tll=10m").await else { panic!() };
/// assert!(err.to_string().contains("unknown option `tll`"));
/// # if !cfg!(feature = "redis") {
/// let Err(err) = session_manager::connect("redis://localhost:6379").await else { panic!() };
/// assert!(err.to_string().contains("`redis` feature"));
/// # }
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn SessionStore>, ConnectError> {
    ConnectOptions::new().connect(url).await
}

impl ConnectOptions {
    /// Opens the store `url` names (see [`connect`]), with these options
    /// over those in the URL's query.
    pub async fn connect(&self, url: &str) -> Result<Arc<dyn SessionStore>, ConnectError> {
        let plan = self.plan(url)?;
        let failed = |source: session_core::Error| ConnectError::Store {
            store: plan.kind.name(),
            target: session_core::redact_url(url::SplitUrl::new(url).base),
            source,
        };
        open(plan.kind, &plan.options, &plan.driver_url, plan.store)
            .await
            .map_err(failed)
    }

    /// Everything [`connect`](Self::connect) decides before it dials: the
    /// kind of store, the options (these over the URL's), the URL the
    /// driver gets and the expiry settings. Pure: no I/O.
    pub(crate) fn plan(&self, url: &str) -> Result<Plan, ConnectError> {
        let Some(scheme) = url::scheme(url) else {
            // Redacted: the URL may hold a password (`user:pw@host`).
            return Err(ConnectError::NoScheme(session_core::redact_url(url)));
        };
        let kind = match scheme {
            "memory" => Kind::Memory,
            "redis" | "rediss" | "redis+unix" | "unix" => Kind::Redis,
            "postgres" | "postgresql" => Kind::Postgres,
            "sqlite" => Kind::Sqlite,
            other => return Err(ConnectError::UnsupportedScheme(url::hide_userinfo(other))),
        };
        let feature = match kind {
            Kind::Memory => None,
            Kind::Redis => (!cfg!(feature = "redis")).then_some("redis"),
            Kind::Postgres => (!cfg!(feature = "postgres")).then_some("postgres"),
            Kind::Sqlite => (!cfg!(feature = "sqlite")).then_some("sqlite"),
        };
        if let Some(feature) = feature {
            return Err(ConnectError::FeatureDisabled {
                scheme: scheme.to_owned(),
                feature,
            });
        }
        let (options, driver_url) = self.resolve(kind, url)?;
        let store = options.store_config().map_err(|e| ConnectError::Store {
            store: kind.name(),
            target: session_core::redact_url(url::SplitUrl::new(url).base),
            source: e.into(),
        })?;
        Ok(Plan {
            kind,
            options,
            driver_url,
            store,
        })
    }

    /// The expiry settings.
    fn store_config(&self) -> Result<StoreConfig, session_core::ConfigError> {
        let cfg = StoreConfig::new(self.ttl.unwrap_or(StoreConfig::DEFAULT_TTL))?;
        match self.max_lifetime {
            Some(max) => cfg.with_max_lifetime(max),
            None => Ok(cfg),
        }
    }

    /// The cleanup task's settings, if it runs.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    fn cleanup_config(&self) -> Option<session_storage_sql::CleanupConfig> {
        let default = session_storage_sql::CleanupConfig::default();
        let interval = match self.cleanup {
            None => default.interval,
            Some(options::Cleanup::Every(interval)) => interval,
            Some(options::Cleanup::Off) => return None,
        };
        Some(session_storage_sql::CleanupConfig {
            interval,
            ..default
        })
    }
}

/// What [`ConnectOptions::plan`] decided for a URL.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The kind of store the scheme names.
    pub(crate) kind: Kind,
    /// The options in effect.
    pub(crate) options: ConnectOptions,
    /// The URL the driver gets (our options taken off).
    pub(crate) driver_url: String,
    /// The expiry settings.
    pub(crate) store: StoreConfig,
}

/// Opens a store of `kind` at `url` (the driver's URL, our options taken
/// off) with `opts`.
#[cfg_attr(
    not(all(feature = "redis", feature = "postgres", feature = "sqlite")),
    allow(unused_variables, clippy::unused_async)
)]
async fn open(
    kind: Kind,
    opts: &ConnectOptions,
    url: &str,
    store: StoreConfig,
) -> Result<Arc<dyn SessionStore>, session_core::Error> {
    match kind {
        Kind::Memory => Ok(Arc::new(MemoryStore::new(store))),
        #[cfg(feature = "redis")]
        Kind::Redis => {
            let mut cfg = session_storage_redis::RedisConfig::new(url).store(store);
            if let Some(prefix) = &opts.prefix {
                cfg = cfg.prefix(prefix.as_str());
            }
            if let Some(f) = opts.slide_fraction {
                cfg = cfg.slide_fraction(f);
            }
            if let Some(t) = opts.connect_timeout {
                cfg = cfg.connect_timeout(t);
            }
            if let Some(t) = opts.response_timeout {
                cfg = cfg.response_timeout(t);
            }
            if let Some(n) = opts.reconnect_retries {
                cfg = cfg.reconnect_retries(n);
            }
            Ok(Arc::new(
                session_storage_redis::RedisStore::connect(cfg).await?,
            ))
        }
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            use session_storage_sql::{PoolConfig, PostgresConfig, PostgresStore};
            let mut pool = PoolConfig::default();
            if let Some(n) = opts.pool_size {
                pool.max_connections = n;
            }
            if let Some(t) = opts.acquire_timeout {
                pool.acquire_timeout = t;
            }
            pool.statement_timeout = opts.statement_timeout;
            let mut cfg = PostgresConfig::new(url).store(store).pool(pool);
            if let Some(schema) = &opts.schema {
                cfg = cfg.schema(schema.as_str());
            }
            if let Some(table) = &opts.table {
                cfg = cfg.table(table.as_str());
            }
            if let Some(f) = opts.slide_fraction {
                cfg = cfg.slide_fraction(f);
            }
            if let Some(on) = opts.migrate {
                cfg = cfg.migrate(on);
            }
            if let Some(on) = opts.listen {
                cfg = cfg.listen(on);
            }
            let store = PostgresStore::connect(cfg).await?;
            Ok(match opts.cleanup_config() {
                Some(c) => Arc::new(cleanup::WithCleanup {
                    _cleanup: store.spawn_cleanup(c),
                    store,
                }),
                None => Arc::new(store),
            })
        }
        #[cfg(feature = "sqlite")]
        Kind::Sqlite => {
            use session_storage_sql::{SqliteConfig, SqliteStore};
            let mut cfg = SqliteConfig::from_url(url)?.store(store);
            if let Some(table) = &opts.table {
                cfg = cfg.table(table.as_str());
            }
            if let Some(f) = opts.slide_fraction {
                cfg = cfg.slide_fraction(f);
            }
            if let Some(n) = opts.pool_size {
                cfg = cfg.max_connections(n);
            }
            if let Some(t) = opts.busy_timeout {
                cfg = cfg.busy_timeout(t);
            }
            let store = SqliteStore::open(cfg).await?;
            Ok(match opts.cleanup_config() {
                Some(c) => Arc::new(cleanup::WithCleanup {
                    _cleanup: store.spawn_cleanup(c),
                    store,
                }),
                None => Arc::new(store),
            })
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("the feature check in `connect` comes first"),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn no_scheme_error_redacts_the_password() {
        let Err(err) = super::connect("admin:hunter2@db.internal:5432/app").await else {
            panic!("connected without a scheme");
        };
        for shown in [format!("{err:?}"), err.to_string()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("admin:***@db.internal"), "{shown}");
        }
    }

    #[tokio::test]
    async fn memory_takes_ttl_and_max_lifetime_and_nothing_else() {
        let store = super::connect("memory://?ttl=90s&max_lifetime=1h")
            .await
            .unwrap();
        assert_eq!(store.config().ttl(), std::time::Duration::from_secs(90));
        assert_eq!(
            store.config().max_lifetime(),
            Some(std::time::Duration::from_secs(3600))
        );
        let Err(err) = super::connect("memory://?ttl=2h&max_lifetime=1h").await else {
            panic!("a lifetime below the ttl was accepted");
        };
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .starts_with("opening the memory store at memory:// failed"),
            "{err}"
        );
    }
}
