//! Picking a store from a URL.

use std::sync::Arc;

use session_core::{MemoryStore, SessionStore, StoreConfig};

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL has no `scheme://` prefix. It is kept (and shown) with any
    /// password replaced by `***` ([`session_core::redact_url`]).
    #[error(
        "store URL {0:?} has no scheme (expected memory://, redis://, rediss://, postgres://, sqlite://)"
    )]
    NoScheme(String),
    /// The scheme is known but this build lacks the feature that supports it.
    #[error(
        "store scheme `{scheme}` needs session-manager's `{feature}` feature, which this build does not enable"
    )]
    FeatureDisabled {
        /// The URL scheme.
        scheme: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// No store handles this scheme.
    #[error(
        "unsupported store scheme `{0}` (expected memory://, redis://, rediss://, postgres://, sqlite://)"
    )]
    UnsupportedScheme(String),
    /// The store could not be opened.
    #[error("opening the store failed")]
    Store(#[source] session_core::Error),
}

/// Opens the store a URL names, with default store settings (30 min TTL):
/// `memory://` (always available; every call is a new, separate store),
/// `redis://`/`rediss://` (feature `redis`), `postgres://`/`postgresql://`
/// (feature `postgres`), `sqlite://PATH` or `sqlite://:memory:` (feature
/// `sqlite`). For other settings build the store yourself and pass it to
/// [`SessionManager::builder`](crate::SessionManager::builder).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = session_manager::connect("memory://").await.unwrap();
/// assert!(store.changes().is_some());
/// # if !cfg!(feature = "redis") {
/// let Err(err) = session_manager::connect("redis://localhost:6379").await else { panic!() };
/// assert!(err.to_string().contains("`redis` feature"));
/// # }
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn SessionStore>, ConnectError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Redacted: the URL may hold a password (`user:pw@host`).
        return Err(ConnectError::NoScheme(session_core::redact_url(url)));
    };
    let disabled = |feature| ConnectError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature,
    };
    let _ = (&disabled, rest);
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::new(StoreConfig::default()))),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let store = session_storage_redis::RedisStore::connect(
                session_storage_redis::RedisConfig::new(url),
            )
            .await
            .map_err(ConnectError::Store)?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" => Err(disabled("redis")),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let store = session_storage_sql::PostgresStore::connect(
                session_storage_sql::PostgresConfig::new(url),
            )
            .await
            .map_err(ConnectError::Store)?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(disabled("postgres")),
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let config = match rest {
                ":memory:" | "" => session_storage_sql::SqliteConfig::in_memory(),
                path => session_storage_sql::SqliteConfig::file(path),
            };
            let store = session_storage_sql::SqliteStore::open(config)
                .await
                .map_err(ConnectError::Store)?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(disabled("sqlite")),
        other => Err(ConnectError::UnsupportedScheme(other.to_owned())),
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
}
