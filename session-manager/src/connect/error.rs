//! [`ConnectError`]: why [`connect`](crate::connect) failed.

/// Why [`connect`](crate::connect) or [`ConnectOptions::connect`](crate::ConnectOptions::connect)
/// failed. URLs in it are shown with any password replaced by `***`
/// ([`session_core::redact_url`]), in `Display` and in `Debug`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL has no scheme.
    #[error(
        "store URL {0:?} has no scheme (expected memory://, redis://, rediss://, redis+unix://, unix://, postgres://, sqlite:)"
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
        "unsupported store scheme `{0}` (expected memory://, redis://, rediss://, redis+unix://, unix://, postgres://, sqlite:)"
    )]
    UnsupportedScheme(String),
    /// An option (in the URL query or set on
    /// [`ConnectOptions`](crate::ConnectOptions)) that this kind of store
    /// does not take. Options are never ignored silently.
    #[error("unknown option `{option}` for a {store} store (it takes: {accepted})")]
    UnknownOption {
        /// `memory`, `redis`, `postgres` or `sqlite`.
        store: &'static str,
        /// The option as given.
        option: String,
        /// The options this store takes, ours and its driver's.
        accepted: &'static str,
    },
    /// An option value that does not parse.
    #[error("option `{option}={value}`: expected {expected}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// The value as given.
        value: String,
        /// What the value should look like.
        expected: &'static str,
    },
    /// The URL's query holds an `@` and its authority none: userinfo that
    /// ran into the query (a password with a raw `?`). Refused before any
    /// part of the URL is used or shown, since every part may be password.
    #[error(
        "the store URL's userinfo runs into its query (`user:***?...@host`): percent-encode `?`, `#`, `/` and `@` in a password"
    )]
    SpilledUserinfo,
    /// An option given more than once in the URL.
    #[error("option `{0}` is given more than once in the URL")]
    RepeatedOption(&'static str),
    /// The store could not be opened: the source says why (its
    /// [`is_transient`](session_core::Error::is_transient) tells an outage
    /// from a configuration that cannot work).
    #[error("opening the {store} store at {target} failed")]
    Store {
        /// `memory`, `redis`, `postgres` or `sqlite`.
        store: &'static str,
        /// Where: the URL without its query, password redacted.
        target: String,
        /// The store's error.
        #[source]
        source: session_core::Error,
    },
}

impl ConnectError {
    /// True if retrying may succeed (the store was unreachable or timed
    /// out); false for every problem of the URL, options or configuration
    /// ([`session_core::Error::Misconfigured`] included).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store { source, .. } if source.is_transient())
    }
}
