//! [`ConnectOptions`]: the settings [`connect`](crate::connect) takes from
//! a URL's query or from code, and which store takes which.

use std::time::Duration;

use super::error::ConnectError;
use super::url::{self, SplitUrl};

/// Store settings for [`ConnectOptions::connect`], set in code; each
/// overrides the same option given in the URL's query. Unset options keep
/// the URL's value, else the store's default.
///
/// The same options in a URL (`redis://cache:6379/0?prefix=gw:&ttl=30m`):
///
/// | option | stores | value | default |
/// |---|---|---|---|
/// | `ttl` | all | duration | `30m` |
/// | `max_lifetime` | all | duration | none |
/// | `slide_fraction` | redis, postgres, sqlite | `0`..`1` | `0.1` |
/// | `prefix` | redis | key prefix ending in `:` | `vmcp:session:` |
/// | `connect_timeout` | redis | duration | `5s` |
/// | `response_timeout` | redis | duration | `2s` |
/// | `reconnect_retries` | redis | number | `3` |
/// | `schema` | postgres | identifier | `public` |
/// | `table` | postgres, sqlite | identifier | `vmcp_sessions` |
/// | `pool_size` | postgres, sqlite | number | 16 / 4 |
/// | `acquire_timeout` | postgres | duration | `5s` |
/// | `statement_timeout` | postgres | duration | none |
/// | `migrate` | postgres | `true`/`false` | `true` |
/// | `listen` | postgres | `true`/`false` | `true` |
/// | `busy_timeout` | sqlite | duration | `5s` |
/// | `cleanup` | postgres, sqlite | interval or `off` | `60s` |
///
/// A duration is a whole number and a unit: `ms`, `s`, `m`, `h`, `d`.
/// The drivers' own query parameters pass through (redis-rs: `protocol`,
/// and `db`, `user`, `pass` on `unix://`; sqlx Postgres: `sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `options`, ...;
/// sqlx SQLite: `mode`, `cache`, `immutable`, `vfs`). Anything else is an
/// error naming the option ([`ConnectError::UnknownOption`]), never
/// ignored.
///
/// ```
/// use std::time::Duration;
/// use session_manager::ConnectOptions;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), session_manager::ConnectError> {
/// let store = ConnectOptions::new()
///     .ttl(Duration::from_secs(600))
///     .connect("memory://?ttl=30m") // the code's 10 minutes win
///     .await?;
/// assert_eq!(store.config().ttl(), Duration::from_secs(600));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct ConnectOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) slide_fraction: Option<f64>,
    pub(crate) prefix: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) reconnect_retries: Option<usize>,
    pub(crate) schema: Option<String>,
    pub(crate) table: Option<String>,
    pub(crate) pool_size: Option<u32>,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) migrate: Option<bool>,
    pub(crate) listen: Option<bool>,
    pub(crate) busy_timeout: Option<Duration>,
    pub(crate) cleanup: Option<Cleanup>,
}

/// Whether the SQL stores' expired-row cleanup runs, as set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cleanup {
    /// `cleanup=off`.
    Off,
    /// `cleanup=INTERVAL`.
    Every(Duration),
}

impl From<Option<Duration>> for Cleanup {
    fn from(every: Option<Duration>) -> Self {
        every.map_or(Cleanup::Off, Cleanup::Every)
    }
}

/// A kind of store, with the options it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    Redis,
    Postgres,
    Sqlite,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
            Kind::Sqlite => "sqlite",
        }
    }

    /// Our options this store takes.
    pub(crate) fn ours(self) -> &'static [&'static str] {
        match self {
            Kind::Memory => &["ttl", "max_lifetime"],
            Kind::Redis => &[
                "ttl",
                "max_lifetime",
                "slide_fraction",
                "prefix",
                "connect_timeout",
                "response_timeout",
                "reconnect_retries",
            ],
            Kind::Postgres => &[
                "ttl",
                "max_lifetime",
                "slide_fraction",
                "schema",
                "table",
                "pool_size",
                "acquire_timeout",
                "statement_timeout",
                "migrate",
                "listen",
                "cleanup",
            ],
            Kind::Sqlite => &[
                "ttl",
                "max_lifetime",
                "slide_fraction",
                "table",
                "pool_size",
                "busy_timeout",
                "cleanup",
            ],
        }
    }

    /// Whether the driver reads query parameter `key` (it is passed on).
    fn driver_reads(self, key: &str) -> bool {
        match self {
            Kind::Memory => false,
            Kind::Redis => matches!(key, "protocol" | "db" | "user" | "pass"),
            Kind::Postgres => {
                matches!(
                    key,
                    "sslmode"
                        | "ssl-mode"
                        | "sslrootcert"
                        | "ssl-root-cert"
                        | "ssl-ca"
                        | "sslcert"
                        | "ssl-cert"
                        | "sslkey"
                        | "ssl-key"
                        | "statement-cache-capacity"
                        | "host"
                        | "hostaddr"
                        | "port"
                        | "dbname"
                        | "user"
                        | "password"
                        | "application_name"
                        | "options"
                ) || (key.starts_with("options[") && key.ends_with(']'))
            }
            Kind::Sqlite => matches!(key, "mode" | "cache" | "immutable" | "vfs"),
        }
    }

    /// Every option the store takes, for error messages.
    fn accepted(self) -> &'static str {
        match self {
            Kind::Memory => "ttl, max_lifetime",
            Kind::Redis => {
                "ttl, max_lifetime, slide_fraction, prefix, connect_timeout, response_timeout, reconnect_retries; redis-rs's protocol, db, user, pass"
            }
            Kind::Postgres => {
                "ttl, max_lifetime, slide_fraction, schema, table, pool_size, acquire_timeout, statement_timeout, migrate, listen, cleanup; sqlx's sslmode, sslrootcert, sslcert, sslkey, statement-cache-capacity, host, hostaddr, port, dbname, user, password, application_name, options"
            }
            Kind::Sqlite => {
                "ttl, max_lifetime, slide_fraction, table, pool_size, busy_timeout, cleanup; sqlx's mode, cache, immutable, vfs"
            }
        }
    }

    fn unknown(self, option: impl Into<String>) -> ConnectError {
        ConnectError::UnknownOption {
            store: self.name(),
            option: url::hide_userinfo(&option.into()),
            accepted: self.accepted(),
        }
    }
}

impl ConnectOptions {
    /// No option set: the URL's, else the store's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sliding TTL (`ttl`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The absolute lifetime cap, at least the TTL (`max_lifetime`).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// The load slide throttle, `0.0..=1.0` (`slide_fraction`).
    pub fn slide_fraction(mut self, fraction: f64) -> Self {
        self.slide_fraction = Some(fraction);
        self
    }

    /// The Redis key prefix, ending in `:` (`prefix`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long one Redis connection attempt may take (`connect_timeout`);
    /// a server that does not answer fails `connect` after about this
    /// long.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one Redis command may wait for its reply (`response_timeout`).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How often a lost Redis connection is re-dialled before calls fail
    /// (`reconnect_retries`).
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = Some(retries);
        self
    }

    /// The Postgres schema (`schema`; created if missing).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The Postgres or SQLite table (`table`).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Most open connections of the Postgres or SQLite pool (`pool_size`).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// How long a Postgres operation (and the first connection at
    /// `connect`) may wait for a connection (`acquire_timeout`).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// Postgres's server-side `statement_timeout` (`statement_timeout`).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Whether Postgres `connect` applies pending migrations (`migrate`).
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = Some(on);
        self
    }

    /// Whether the Postgres store runs its `LISTEN` change stream (`listen`).
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = Some(on);
        self
    }

    /// How long a SQLite writer waits for the lock (`busy_timeout`).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = Some(timeout);
        self
    }

    /// The expired-row cleanup of a Postgres or SQLite store (`cleanup`):
    /// `Some(interval)` runs it every `interval` from `connect` on, `None`
    /// turns it off. It runs by default, every 60 s.
    pub fn cleanup(mut self, every: Option<Duration>) -> Self {
        self.cleanup = Some(every.into());
        self
    }

    /// The names of the options set.
    fn set(&self) -> impl Iterator<Item = &'static str> {
        [
            ("ttl", self.ttl.is_some()),
            ("max_lifetime", self.max_lifetime.is_some()),
            ("slide_fraction", self.slide_fraction.is_some()),
            ("prefix", self.prefix.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("response_timeout", self.response_timeout.is_some()),
            ("reconnect_retries", self.reconnect_retries.is_some()),
            ("schema", self.schema.is_some()),
            ("table", self.table.is_some()),
            ("pool_size", self.pool_size.is_some()),
            ("acquire_timeout", self.acquire_timeout.is_some()),
            ("statement_timeout", self.statement_timeout.is_some()),
            ("migrate", self.migrate.is_some()),
            ("listen", self.listen.is_some()),
            ("busy_timeout", self.busy_timeout.is_some()),
            ("cleanup", self.cleanup.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
    }

    /// Sets option `name` from its URL text. `name` is one of ours.
    fn set_from_url(&mut self, name: &'static str, value: &str) -> Result<(), ConnectError> {
        let repeated = |set: bool| {
            if set {
                Err(ConnectError::RepeatedOption(name))
            } else {
                Ok(())
            }
        };
        repeated(self.set().any(|n| n == name))?;
        match name {
            "ttl" => self.ttl = Some(url::duration(name, value)?),
            "max_lifetime" => self.max_lifetime = Some(url::duration(name, value)?),
            "slide_fraction" => self.slide_fraction = Some(url::fraction(name, value)?),
            "prefix" => self.prefix = Some(value.to_owned()),
            "connect_timeout" => self.connect_timeout = Some(url::duration(name, value)?),
            "response_timeout" => self.response_timeout = Some(url::duration(name, value)?),
            "reconnect_retries" => self.reconnect_retries = Some(url::number(name, value)?),
            "schema" => self.schema = Some(value.to_owned()),
            "table" => self.table = Some(value.to_owned()),
            "pool_size" => self.pool_size = Some(url::number(name, value)?),
            "acquire_timeout" => self.acquire_timeout = Some(url::duration(name, value)?),
            "statement_timeout" => self.statement_timeout = Some(url::duration(name, value)?),
            "migrate" => self.migrate = Some(url::boolean(name, value)?),
            "listen" => self.listen = Some(url::boolean(name, value)?),
            "busy_timeout" => self.busy_timeout = Some(url::duration(name, value)?),
            "cleanup" => self.cleanup = Some(url::interval(name, value)?.into()),
            _ => unreachable!("`{name}` is not an option"),
        }
        Ok(())
    }

    /// These options over `base`: each option set here wins.
    fn over(&self, base: Self) -> Self {
        Self {
            ttl: self.ttl.or(base.ttl),
            max_lifetime: self.max_lifetime.or(base.max_lifetime),
            slide_fraction: self.slide_fraction.or(base.slide_fraction),
            prefix: self.prefix.clone().or(base.prefix),
            connect_timeout: self.connect_timeout.or(base.connect_timeout),
            response_timeout: self.response_timeout.or(base.response_timeout),
            reconnect_retries: self.reconnect_retries.or(base.reconnect_retries),
            schema: self.schema.clone().or(base.schema),
            table: self.table.clone().or(base.table),
            pool_size: self.pool_size.or(base.pool_size),
            acquire_timeout: self.acquire_timeout.or(base.acquire_timeout),
            statement_timeout: self.statement_timeout.or(base.statement_timeout),
            migrate: self.migrate.or(base.migrate),
            listen: self.listen.or(base.listen),
            busy_timeout: self.busy_timeout.or(base.busy_timeout),
            cleanup: self.cleanup.or(base.cleanup),
        }
    }

    /// Splits `url` for a store of `kind`: our options parsed off its query
    /// (these options over them), the driver's pairs kept in the URL
    /// returned; an option neither we nor the driver read is an error.
    pub(crate) fn resolve(&self, kind: Kind, url: &str) -> Result<(Self, String), ConnectError> {
        let split = SplitUrl::new(url);
        // An `@` in the query of a URL whose base has none is userinfo that
        // spilled out of the authority (a password with a raw `?`:
        // `redis://u:ab?cd&ef@host`): refused whole, before any pair is
        // read, kept for the driver or shown (a driver's error, or the
        // address in `ConnectError::Store`, would show it otherwise).
        if !split.base.contains('@') && split.pairs.iter().any(|p| p.contains('@')) {
            return Err(ConnectError::SpilledUserinfo);
        }
        let mut from_url = Self::default();
        let mut kept = Vec::new();
        for pair in &split.pairs {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = url::decode(raw_key);
            if let Some(&name) = kind.ours().iter().find(|n| **n == key) {
                from_url.set_from_url(name, &url::decode(raw_value))?;
            } else if kind.driver_reads(&key) {
                kept.push(*pair);
            } else {
                return Err(kind.unknown(key));
            }
        }
        let merged = self.over(from_url);
        if let Some(name) = merged.set().find(|n| !kind.ours().contains(n)) {
            return Err(kind.unknown(name));
        }
        Ok((merged, split.rebuild(&kept)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_parse_and_code_overrides_them() {
        let (opts, rest) = ConnectOptions::new()
            .prefix("code:")
            .resolve(
                Kind::Redis,
                "redis://:pw@h:1/2?prefix=url:&ttl=30m&protocol=3&connect_timeout=250ms#insecure",
            )
            .unwrap();
        assert_eq!(opts.prefix.as_deref(), Some("code:"));
        assert_eq!(opts.ttl, Some(Duration::from_secs(1800)));
        assert_eq!(opts.connect_timeout, Some(Duration::from_millis(250)));
        assert_eq!(rest, "redis://:pw@h:1/2?protocol=3#insecure");
    }

    #[test]
    fn unknown_and_misplaced_options_are_errors_naming_the_option() {
        let cases = [
            (Kind::Redis, "redis://h?bogus=1", "bogus"),
            (Kind::Redis, "redis://h?schema=x", "schema"),
            (Kind::Postgres, "postgres://h/db?prefix=a:", "prefix"),
            (Kind::Postgres, "postgres://h/db?sslmod=require", "sslmod"),
            (
                Kind::Sqlite,
                "sqlite://x.db?connect_timeout=1s",
                "connect_timeout",
            ),
            (Kind::Memory, "memory://?table=t", "table"),
        ];
        for (kind, url, option) in cases {
            match ConnectOptions::new().resolve(kind, url) {
                Err(ConnectError::UnknownOption {
                    option: o, store, ..
                }) => {
                    assert_eq!((o.as_str(), store), (option, kind.name()), "{url}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        // Set in code for a store that does not take it.
        let err = ConnectOptions::new()
            .prefix("a:")
            .resolve(Kind::Postgres, "postgres://h/db")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown option `prefix` for a postgres store"),
            "{err}"
        );
    }

    /// Found by the `connect_url` fuzz target: a password with a raw `?`
    /// (or one before a scheme) put its tail in the query, and the error
    /// naming the "unknown option" showed it.
    #[test]
    fn userinfo_spilled_into_the_query_is_not_shown() {
        for url in [
            "redis://user:ab?cdSECRET@host/0",
            "redis://user:ab?ttl=cdSECRET@host/0",
            "postgres://u:x?y&cdSECRET@db/app",
            // Pairs a driver reads: kept, they used to reach the driver and
            // the address shown in a `Store` error.
            "redis://u:ab?db=cdSECRET@host/0",
            "postgres://u:pw?sslmode=cdSECRET@db/app",
            "user:cdSECRET@db://host",
        ] {
            let err = ConnectOptions::new().plan(url).unwrap_err();
            let shown = format!("{err}\n{err:?}");
            for part in ["cdSECRET", "`y`", "\"y\""] {
                assert!(!shown.contains(part), "{url}: {shown}");
            }
            assert!(shown.contains("***"), "{url}: {shown}");
        }
    }

    #[test]
    fn bad_and_repeated_values_are_errors() {
        let err = ConnectOptions::new()
            .resolve(Kind::Redis, "redis://h?ttl=30")
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::InvalidOption { option: "ttl", .. }),
            "{err:?}"
        );
        let err = ConnectOptions::new()
            .resolve(Kind::Redis, "redis://h?ttl=1s&ttl=2s")
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::RepeatedOption("ttl")),
            "{err:?}"
        );
    }

    #[test]
    fn driver_parameters_pass_through_in_order() {
        let (opts, rest) = ConnectOptions::new()
            .resolve(
                Kind::Postgres,
                "postgres://u:pw@h/db?sslmode=require&schema=gw&options[search_path]=x&cleanup=off",
            )
            .unwrap();
        assert_eq!(
            rest,
            "postgres://u:pw@h/db?sslmode=require&options[search_path]=x"
        );
        assert_eq!(opts.schema.as_deref(), Some("gw"));
        assert_eq!(opts.cleanup, Some(Cleanup::Off));
        let (_, rest) = ConnectOptions::new()
            .resolve(Kind::Sqlite, "sqlite://x.db?mode=rwc&table=t")
            .unwrap();
        assert_eq!(rest, "sqlite://x.db?mode=rwc");
    }
}
