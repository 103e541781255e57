//! Connection and store settings for [`RedisStore`](crate::RedisStore).

use std::time::Duration;

use session_core::{ConfigError, StoreConfig};

use crate::keys::{DEFAULT_PREFIX, KeyPrefix};

/// Where the store connects. Its `Debug` output (and so
/// [`RedisConfig`]'s) shows the URLs with passwords and secret query
/// parameters replaced by `***` ([`session_core::redact_url`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server (or a proxy): `redis://`, `rediss://` (feature `tls-rustls`)
    /// or `unix://` URL.
    Standalone(String),
    /// A Redis Cluster, given one or more seed node URLs (feature `cluster`).
    Cluster(Vec<String>),
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Standalone(url) => f
                .debug_tuple("Standalone")
                .field(&session_core::redact_url(url))
                .finish(),
            Topology::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(
                    &urls
                        .iter()
                        .map(|u| session_core::redact_url(u))
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// Settings for [`RedisStore::connect`](crate::RedisStore::connect).
///
/// Built with chained setters named after the setting, as sqlx's connect
/// options are; setters never fail, and the settings are checked when the
/// store connects ([`RedisStore::connect`](crate::RedisStore::connect)
/// returns [`Error::InvalidInput`](session_core::Error::InvalidInput) with a
/// [`ConfigError`] before it dials). Getters whose names a setter takes are
/// `get_*`, as on sqlx's `PgConnectOptions`.
///
/// ```
/// use std::time::Duration;
/// use session_core::StoreConfig;
/// use session_storage_redis::RedisConfig;
///
/// let cfg = RedisConfig::new("redis://127.0.0.1:6379")
///     .prefix("gateway-a:session:")
///     .store(StoreConfig::new(Duration::from_secs(1800))?)
///     .slide_fraction(0.25)
///     .response_timeout(Duration::from_millis(500));
/// assert_eq!(cfg.get_prefix(), "gateway-a:session:");
/// assert_eq!(cfg.get_slide_fraction(), 0.25);
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) prefix: String,
    pub(crate) store: StoreConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) reconnect_retries: usize,
    pub(crate) change_capacity: usize,
    pub(crate) subscriber_ping: Duration,
    pub(crate) subscriber_backoff: Backoff,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) slide_fraction: f64,
    /// Cluster node addresses to dial instead of the advertised ones.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) node_map: Vec<(String, String)>,
}

/// An exponential reconnect backoff: the first retry waits `initial`, each
/// further one twice as long as the last, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (more than zero).
    pub initial: Duration,
    /// The longest wait (at least `initial`).
    pub max: Duration,
}

impl Backoff {
    /// The change subscriber's default: 100 ms, doubling up to 5 s. A
    /// subscriber that is down leaves consumers probing every hit, so it
    /// retries quickly at first; the cap bounds how long a recovered server
    /// goes unnoticed.
    pub const SUBSCRIBER_DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    /// The wait before retry number `attempt` (1-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// Checks `0 < initial <= max`.
    pub(crate) fn check(&self, setting: &'static str) -> Result<(), ConfigError> {
        if self.initial.is_zero() || self.initial > self.max {
            return Err(ConfigError::Invalid {
                setting,
                reason: format!(
                    "initial {:?} must be more than zero and at most max {:?}",
                    self.initial, self.max
                ),
            });
        }
        Ok(())
    }
}

/// Checks a slide fraction: a finite number in `0.0..=1.0`.
fn check_fraction(fraction: f64) -> Result<(), ConfigError> {
    if fraction.is_finite() && (0.0..=1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            setting: "slide_fraction",
            reason: format!("{fraction} is not within 0.0..=1.0"),
        })
    }
}

impl RedisConfig {
    /// Default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default response timeout.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default load slide throttle: a load slides the expiry only once a
    /// tenth of the record's TTL has passed since the last slide.
    pub const DEFAULT_SLIDE_FRACTION: f64 = 0.1;
    /// Default cap on the command connection's reconnect delay.
    pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

    /// A standalone server at `url`, default prefix, TTL and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_topology(Topology::Standalone(url.into()))
    }

    /// A Redis Cluster reached through the seed node URLs `nodes`.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(Topology::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    fn with_topology(topology: Topology) -> Self {
        Self {
            topology,
            prefix: DEFAULT_PREFIX.to_owned(),
            store: StoreConfig::default(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            reconnect_retries: 3,
            change_capacity: 1024,
            subscriber_ping: Duration::from_secs(15),
            subscriber_backoff: Backoff::SUBSCRIBER_DEFAULT,
            reconnect_max_delay: Self::DEFAULT_RECONNECT_MAX_DELAY,
            slide_fraction: Self::DEFAULT_SLIDE_FRACTION,
            node_map: Vec::new(),
        }
    }

    /// The key prefix (default [`DEFAULT_PREFIX`], `vmcp:session:`):
    /// non-empty, visible ASCII, ending in `:`, without `* ? [ ] \`
    /// (checked at connect, see [`KeyPrefix`]).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The sliding TTL and the optional absolute lifetime.
    #[must_use]
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// The load slide throttle (default 0.1): a `load` slides the expiry
    /// only when more than this fraction of the record's own TTL (`t`) has
    /// passed since its last slide, judged from the deadline `e` in the
    /// record's header against the store's estimate of the server's clock
    /// (see the crate README, "Load slide throttle"):
    /// `e - server_now < t - t * fraction`. Otherwise it is one plain `GET`
    /// and writes nothing. `0.0` slides on every load. `touch` and an
    /// applied `update` always slide. Must be within `0.0..=1.0` (checked
    /// at connect).
    ///
    /// ```
    /// use session_storage_redis::RedisConfig;
    ///
    /// let cfg = RedisConfig::new("redis://127.0.0.1:6379").slide_fraction(0.25);
    /// assert_eq!(cfg.get_slide_fraction(), 0.25);
    /// ```
    #[must_use]
    pub fn slide_fraction(mut self, fraction: f64) -> Self {
        self.slide_fraction = fraction;
        self
    }

    /// How long one connection attempt may take (default 5 s).
    /// [`RedisStore::connect`](crate::RedisStore::connect) makes its first
    /// attempt alone, so a server that accepts but never answers fails it
    /// after about this long, with [`session_core::Error::Timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may wait for its reply (default 2 s); past it
    /// the call fails with [`session_core::Error::Timeout`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How many times a lost connection is re-dialled (with exponential
    /// backoff) before calls fail as unavailable (default 3).
    #[must_use]
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// How far a change-stream receiver may fall behind before it sees a
    /// resync (default 1024).
    #[must_use]
    pub fn change_capacity(mut self, capacity: usize) -> Self {
        self.change_capacity = capacity.max(1);
        self
    }

    /// How often the change subscriber pings its connection to detect a
    /// silent disconnect (default 15 s).
    #[must_use]
    pub fn subscriber_ping(mut self, every: Duration) -> Self {
        self.subscriber_ping = every.max(Duration::from_millis(10));
        self
    }

    /// The change subscriber's re-dial backoff (default
    /// [`Backoff::SUBSCRIBER_DEFAULT`]: 100 ms doubling up to 5 s), separate
    /// from the command connection's ([`RedisConfig::reconnect_max_delay`]).
    /// Checked at connect: `initial` more than zero and at most `max`.
    #[must_use]
    pub fn subscriber_backoff(mut self, backoff: Backoff) -> Self {
        self.subscriber_backoff = backoff;
        self
    }

    /// The cap on the command connection's reconnect delay between its
    /// [`reconnect_retries`](Self::reconnect_retries) (default 5 s),
    /// independent of the change subscriber's backoff.
    #[must_use]
    pub fn reconnect_max_delay(mut self, max: Duration) -> Self {
        self.reconnect_max_delay = max;
        self
    }

    /// Cluster only: dial `dial` (`host:port`) whenever the cluster
    /// advertises node `advertised` (`host:port`, as in `CLUSTER SLOTS`),
    /// for nodes reachable only through NAT, a port mapping or a proxy.
    /// Redirects (`MOVED`, `ASK`) keep naming the advertised address.
    /// Both are checked at connect.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    #[must_use]
    pub fn map_node(mut self, advertised: impl Into<String>, dial: impl Into<String>) -> Self {
        self.node_map.push((advertised.into(), dial.into()));
        self
    }

    /// Checks every setting (the prefix, the slide fraction, the
    /// subscriber backoff); [`RedisStore::connect`](crate::RedisStore::connect)
    /// calls it before it dials. Returns the validated key prefix.
    pub(crate) fn validate(&self) -> Result<KeyPrefix, ConfigError> {
        let prefix = KeyPrefix::new(self.prefix.as_str())?;
        check_fraction(self.slide_fraction)?;
        self.subscriber_backoff.check("subscriber_backoff")?;
        Ok(prefix)
    }

    /// The key prefix as set (validated at connect).
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the store connects.
    pub fn get_topology(&self) -> &Topology {
        &self.topology
    }

    /// The expiry settings.
    pub fn get_store(&self) -> &StoreConfig {
        &self.store
    }

    /// The load slide throttle as set (see [`RedisConfig::slide_fraction`]).
    pub fn get_slide_fraction(&self) -> f64 {
        self.slide_fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_passwords_and_secret_parameters() {
        let shown = format!(
            "{:?}",
            RedisConfig::new("rediss://default:hunter2@cache:6380/0?password=swordfish")
        );
        assert!(
            shown.contains("rediss://default:***@cache:6380/0"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
        let shown = format!(
            "{:?}",
            RedisConfig::cluster(["redis://:hunter2@a:7001", "redis://u:swordfish@b:7002"])
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
        assert!(
            shown.contains("a:7001") && shown.contains("b:7002"),
            "{shown}"
        );
    }

    fn invalid_setting(cfg: &RedisConfig) -> &'static str {
        match cfg.validate() {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn setters_chain_and_getters_read_back() {
        let store = StoreConfig::new(Duration::from_secs(60)).unwrap();
        let cfg = RedisConfig::new("redis://x")
            .prefix("a:")
            .store(store)
            .slide_fraction(0.5);
        assert_eq!(cfg.get_prefix(), "a:");
        assert_eq!(cfg.get_store(), &store);
        assert!((cfg.get_slide_fraction() - 0.5).abs() < f64::EPSILON);
        assert_eq!(
            cfg.get_topology(),
            &Topology::Standalone("redis://x".into())
        );
        assert_eq!(cfg.validate().unwrap().as_str(), "a:");
        assert_eq!(
            RedisConfig::new("redis://x").validate().unwrap().as_str(),
            DEFAULT_PREFIX
        );
    }

    #[test]
    fn validate_checks_prefix_fraction_and_backoff() {
        let base = || RedisConfig::new("redis://x");
        for bad in ["", "no-colon", "a*:", "a b:"] {
            assert_eq!(
                invalid_setting(&base().prefix(bad)),
                "key prefix",
                "{bad:?}"
            );
        }
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(
                invalid_setting(&base().slide_fraction(bad)),
                "slide_fraction",
                "{bad}"
            );
        }
        for good in [0.0, 0.1, 1.0] {
            assert!(base().slide_fraction(good).validate().is_ok(), "{good}");
        }
        let backoff = Backoff {
            initial: Duration::ZERO,
            max: Duration::from_secs(1),
        };
        assert_eq!(
            invalid_setting(&base().subscriber_backoff(backoff)),
            "subscriber_backoff"
        );
    }
}
