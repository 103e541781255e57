//! [`RedisStore`]: the [`SessionStore`] implementation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{Client, RedisError};
use session_core::{
    ChangeHub, ChangeStream, ConfigError, CorruptRecord, Cursor, Error, InvalidInput, Metadata,
    Page, Record, Result, SessionId, SessionStore, StoreConfig, Ttl, Update, Version, WriteId,
};

use crate::changes::{AbortOnDrop, Subscriber, SubscriberAddr};
use crate::clock::{self, ServerClock};
use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::error::{UnexpectedReply, map_redis};
use crate::keys::KeyPrefix;
use crate::legacy::{self, Fields, HeaderFields};
use crate::record;
use crate::scan;
use crate::scripts::{SCRIPTS, invoke};

/// A [`SessionStore`] on Redis (standalone, or Cluster with feature
/// `cluster`): one string per session at `prefix + id` (a short header,
/// then the metadata JSON: see the crate README), every mutation one Lua
/// script, `load` one `GET` (plus the `touch` script once per slide
/// window, [`RedisConfig::slide_fraction`], decided from the deadline in
/// the record's header and an estimate of the server's clock), `touch` the
/// same read (so a corrupt record is reported, never slid) then its
/// script, expiry on the server's clock, changes over pub/sub.
///
/// Clones are cheap handles on the same connection and change stream. The
/// change subscriber (its own connection) starts on the first call to
/// [`SessionStore::changes`] and stops when the last handle is dropped.
///
/// `scan` uses Redis `SCAN`, which may return a session more than once
/// (never a session deleted before the scan began, always every session
/// live throughout it).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    prefix: KeyPrefix,
    store: StoreConfig,
    ttl_ms: u64,
    max_ms: u64,
    slide_fraction: f64,
    response_timeout: Duration,
    hub: ChangeHub,
    pubsub: Vec<Client>,
    config: RedisConfig,
    runtime: tokio::runtime::Handle,
    subscriber: Mutex<Option<AbortOnDrop>>,
    subscriber_addr: SubscriberAddr,
    clock: ServerClock,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Connects (bounded by the connect timeout and retries) and returns a
    /// store. Checks the settings first and fails, before dialling, with
    /// [`Error::InvalidInput`] ([`InvalidInput::Config`]) for a bad prefix,
    /// slide fraction, subscriber backoff or URL; otherwise
    /// [`Error::Unavailable`] / [`Error::Timeout`] if the server cannot be
    /// reached.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let prefix = config.validate().map_err(InvalidInput::Config)?;
        let pubsub = connection::pubsub_clients(&config)?;
        let conn = connection::connect(&config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                prefix,
                store: config.store,
                ttl_ms: millis(config.store.ttl()),
                max_ms: config.store.max_lifetime().map_or(0, millis),
                slide_fraction: config.slide_fraction,
                response_timeout: config.response_timeout,
                hub: ChangeHub::new(config.change_capacity),
                pubsub,
                runtime: tokio::runtime::Handle::current(),
                subscriber: Mutex::new(None),
                subscriber_addr: SubscriberAddr::default(),
                clock: ServerClock::new(),
                config,
            }),
        })
    }

    /// The key prefix (and with it the change channel).
    pub fn prefix(&self) -> &KeyPrefix {
        &self.inner.prefix
    }

    /// The load slide throttle (see [`RedisConfig::slide_fraction`]).
    pub fn slide_fraction(&self) -> f64 {
        self.inner.slide_fraction
    }

    /// The local address of the change subscriber's connection while its
    /// subscription is live (`None` before [`SessionStore::changes`] was
    /// first called, between a loss and the re-subscription, and for TLS
    /// or Unix-socket URLs). The server lists it as the client's `addr`
    /// in `CLIENT LIST`, so `CLIENT KILL ADDR <addr>` ends exactly this
    /// subscription (tests use it to interrupt one store's stream).
    pub fn change_subscriber_addr(&self) -> Option<std::net::SocketAddr> {
        *self
            .inner
            .subscriber_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The key holding `id`'s record (for operators and tests).
    pub fn key(&self, id: &SessionId) -> String {
        self.inner.prefix.key(id)
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// What `load`, `peek` and `touch` read: one `GET` of the record
    /// string (no script, nothing written), checked by [`record::decode`].
    /// With `refresh_clock` (a `load`) and the server-clock estimate due
    /// for a refresh ([`ServerClock::claim`]), `TIME` is pipelined with
    /// the `GET` (the same round trip). A legacy hash (`WRONGTYPE` to the
    /// `GET`) is read with a second round trip ([`Self::read_legacy`]).
    async fn read(&self, key: &str, refresh_clock: bool) -> Result<Option<Read>> {
        let claim = if refresh_clock {
            self.inner.clock.claim(Instant::now())
        } else {
            None
        };
        let value: Value = match claim {
            None => {
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut self.conn())
                    .await
            }
            Some(claim) => {
                // `ignore_errors`: each reply separately, so a `WRONGTYPE`
                // from `GET` stays a server error (legacy or corrupt), not
                // a pipeline failure.
                let sent = Instant::now();
                let (value, time): (Value, redis::RedisResult<(u64, u64)>) = redis::pipe()
                    .ignore_errors()
                    .cmd("GET")
                    .arg(key)
                    .cmd("TIME")
                    .query_async(&mut self.conn())
                    .await
                    .map_err(self.err(key))?;
                if let Ok(time) = time {
                    claim.record(sent, Instant::now(), clock::time_us(time));
                }
                value
            }
        };
        let value = match value {
            Ok(value) => value,
            Err(e) if is_wrong_type(&e) => return self.read_legacy(key).await,
            Err(e) => return Err(self.err(key)(e)),
        };
        let Some(value) = value else {
            return Ok(None);
        };
        let (header, metadata) = record::decode(key, &value)?;
        Ok(Some(Read {
            record: Record {
                version: header.version,
                metadata,
            },
            ttl_ms: header.ttl_ms,
            due: header.expires_ms.map_or(Due::Migrate, Due::At),
        }))
    }

    /// [`Self::read`] for a key holding a hash: a record in the legacy
    /// layout ([`crate::legacy`]), or a foreign hash (corrupt), or
    /// another type (corrupt, wrong type).
    async fn read_legacy(&self, key: &str) -> Result<Option<Read>> {
        let (fields, pttl): (redis::RedisResult<Fields>, redis::RedisResult<i64>) = redis::pipe()
            .ignore_errors()
            .cmd("HMGET")
            .arg(key)
            .arg("v")
            .arg("m")
            .arg("c")
            .arg("t")
            .cmd("PTTL")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(self.err(key))?;
        let fields = fields.map_err(|e| self.legacy_err(key, e))?;
        let pttl = pttl.map_err(self.err(key))?;
        let Some((record, ttl_ms)) = legacy::decode_record(key, fields, pttl)? else {
            return Ok(None);
        };
        if !live_by_pttl(key, pttl)? {
            return Ok(None);
        }
        Ok(Some(Read {
            record,
            ttl_ms,
            due: Due::Pttl(pttl),
        }))
    }

    /// An error from reading a key as a legacy hash: `WRONGTYPE` means it
    /// is neither a record string nor a hash.
    fn legacy_err(&self, key: &str, e: RedisError) -> Error {
        if is_wrong_type(&e) {
            Error::corrupt(
                key,
                CorruptRecord::WrongType("neither a session record string nor a hash".to_owned()),
            )
        } else {
            self.err(key)(e)
        }
    }

    /// `version` of a key whose `GETRANGE` came back empty: no key at all
    /// (`None`), or an empty string someone else wrote (corrupt).
    async fn version_of_empty(&self, key: &str) -> Result<Option<Version>> {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(self.err(key))?;
        if exists == 0 {
            return Ok(None);
        }
        Err(Error::corrupt(
            key,
            CorruptRecord::WrongType("empty string".to_owned()),
        ))
    }

    /// `version` of a key holding a hash (the legacy layout, or foreign):
    /// `HMGET key v c t` + `PTTL`, checked like the legacy `load`.
    async fn version_legacy(&self, key: &str) -> Result<Option<Version>> {
        let (fields, pttl): (redis::RedisResult<HeaderFields>, redis::RedisResult<i64>) =
            redis::pipe()
                .ignore_errors()
                .cmd("HMGET")
                .arg(key)
                .arg("v")
                .arg("c")
                .arg("t")
                .cmd("PTTL")
                .arg(key)
                .query_async(&mut self.conn())
                .await
                .map_err(self.err(key))?;
        let (v, c, t) = fields.map_err(|e| self.legacy_err(key, e))?;
        let pttl = pttl.map_err(self.err(key))?;
        if v.is_none() && c.is_none() && t.is_none() && pttl == -2 {
            return Ok(None);
        }
        let (version, _) = legacy::decode_header(key, v.as_deref(), c.as_deref(), t.as_deref())?;
        Ok((pttl != -2).then_some(version))
    }

    /// What `update` and `touch` send their script as the server's clock
    /// now: the earliest it can read ([`ServerClock::server_now_low_ms`]),
    /// so the header deadline the script derives from it is never later
    /// than the key's real expiry; `0` (the script reads `TIME`) with
    /// `max_lifetime` (the script needs the exact clock for the cap), or
    /// when there is no fresh estimate and another caller is refreshing
    /// it or the refresh failed. Without a fresh estimate this caller
    /// refreshes it first: one `TIME` round trip, about once every
    /// [`clock::REFRESH_AFTER`] per store.
    async fn server_now_low(&self) -> u64 {
        if self.inner.max_ms != 0 {
            return 0;
        }
        let clock = &self.inner.clock;
        if let Some(ms) = clock.server_now_low_ms(Instant::now()) {
            return ms;
        }
        let Some(claim) = clock.claim(Instant::now()) else {
            return 0;
        };
        let sent = Instant::now();
        let time: redis::RedisResult<(u64, u64)> =
            redis::cmd("TIME").query_async(&mut self.conn()).await;
        let Ok(time) = time else {
            return 0;
        };
        claim.record(sent, Instant::now(), clock::time_us(time));
        clock.server_now_low_ms(Instant::now()).unwrap_or(0)
    }

    /// Runs the `touch` script: `true` if it slid the record, `false` if
    /// the record was gone or past its capped deadline (then deleted, and
    /// the delete published).
    async fn slide(&self, key: &str, id: &SessionId) -> Result<bool> {
        let now_low = self.server_now_low().await;
        let live: i64 = invoke(
            SCRIPTS
                .touch
                .key(key)
                .arg(self.inner.max_ms)
                .arg(self.inner.prefix.channel())
                .arg(id.as_str())
                .arg(now_low),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(key))?;
        Ok(live == 1)
    }

    /// Maps an error for `key` (borrowed: nothing is allocated unless an
    /// error happens).
    fn err<'a>(&self, key: &'a str) -> impl FnOnce(RedisError) -> Error + 'a {
        let timeout = self.inner.response_timeout;
        move |e| map_redis(e, key, timeout)
    }
}

/// A `GET` reply of a record string (or the error, e.g. `WRONGTYPE`).
type Value = redis::RedisResult<Option<Vec<u8>>>;

/// Whether the server refused a command for the key's type.
fn is_wrong_type(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}

/// A record `load` read and checked, with what the slide decision needs.
struct Read {
    record: Record,
    /// The record's own sliding TTL (`t`), ms.
    ttl_ms: u64,
    /// What the slide decision goes by.
    due: Due,
}

/// What decides whether a `load` slides a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// An `s3` record: the deadline in its header, ms on the server's clock.
    At(u64),
    /// An `s2` or `s1` record: always slid (the touch script rewrites it as
    /// `s3`: migrate on touch).
    Migrate,
    /// A legacy hash: its `PTTL`, read with it.
    Pttl(i64),
}

/// What the key's `PTTL` says about a record whose fields were read:
/// `Ok(false)` if it vanished (-2) right after, an error if it has no
/// expiry at all (-1: not written by this store).
fn live_by_pttl(key: &str, pttl: i64) -> Result<bool> {
    match pttl {
        -2 => Ok(false),
        -1 => Err(Error::corrupt(
            key,
            CorruptRecord::WrongType("record without an expiry".to_owned()),
        )),
        _ => Ok(true),
    }
}

/// Whether a load should slide: more than `fraction` of the record's own
/// TTL has passed since its last slide (`remaining < t - t * fraction`,
/// `remaining` the ms left until its expiry), or the throttle is off
/// (`fraction` 0.0).
fn needs_slide(ttl_ms: u64, remaining_ms: i64, fraction: f64) -> bool {
    fraction <= 0.0 || (remaining_ms as f64) < ttl_ms as f64 * (1.0 - fraction)
}

/// The slide decision of a `load` that read `read` when the server's
/// clock read at most `server_now_ms` (`None`: no estimate yet, so slide:
/// the touch script decides on the server's clock).
fn load_slides(read: &Read, server_now_ms: Option<u64>, fraction: f64) -> bool {
    match read.due {
        Due::At(expires_ms) => server_now_ms.is_none_or(|now| {
            let remaining = i64::try_from(expires_ms)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
            needs_slide(read.ttl_ms, remaining, fraction)
        }),
        Due::Migrate => true,
        Due::Pttl(pttl) => needs_slide(read.ttl_ms, pttl, fraction),
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &WriteId,
    ) -> Result<Option<Version>> {
        let key = self.key(id);
        let ttl_ms = millis(self.inner.store.effective_ttl(ttl));
        let created: i64 = invoke(
            SCRIPTS
                .create
                .key(&key)
                .arg(metadata.json())
                .arg(ttl_ms)
                .arg(self.inner.prefix.channel())
                .arg(id.as_str())
                .arg(write.log_entry(Version::INITIAL)),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        // 1: created; 2: created before by this very write (a retry).
        Ok((created == 1 || created == 2).then_some(Version::INITIAL))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let key = self.key(id);
        let Some(read) = self.read(&key, true).await? else {
            return Ok(None);
        };
        // The slide window has passed (by the header's deadline and the
        // latest the server's clock can read), or the record is in an
        // earlier layout: the touch script re-reads and re-checks the
        // record and slides it by its own `t` on the server's clock,
        // capped at `c + max_lifetime` (rewriting an earlier layout as
        // s3). If the key went away in between, or the capped deadline has
        // passed (the script then deletes it), the record is reported
        // absent.
        let server_now = self.inner.clock.now_ms(Instant::now());
        if load_slides(&read, server_now, self.inner.slide_fraction)
            && !self.slide(&key, id).await?
        {
            return Ok(None);
        }
        Ok(Some(read.record))
    }

    async fn peek(&self, id: &SessionId) -> Result<Option<Record>> {
        // `load`'s read and checks, never its slide.
        let key = self.key(id);
        Ok(self.read(&key, false).await?.map(|read| read.record))
    }

    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        // One read of the header alone: no script, no slide, no metadata
        // transfer; `e`, `v`, `c` and `t` checked as every other operation
        // checks them. (The key's expiry is not read.)
        let key = self.key(id);
        let header: redis::RedisResult<Vec<u8>> = redis::cmd("GETRANGE")
            .arg(&key)
            .arg(0)
            .arg(record::HEADER_MAX - 1)
            .query_async(&mut self.conn())
            .await;
        match header {
            Ok(raw) if raw.is_empty() => self.version_of_empty(&key).await,
            Ok(raw) => Ok(Some(record::decode_header(&key, &raw)?.version)),
            Err(e) if is_wrong_type(&e) => self.version_legacy(&key).await,
            Err(e) => Err(self.err(&key)(e)),
        }
    }

    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &WriteId,
    ) -> Result<Update> {
        let key = self.key(id);
        // The version after `expected`, computed here so the script does
        // no arithmetic; unused (the script answers 3) at Version::MAX.
        let next = expected.checked_next().unwrap_or(Version::MAX);
        let now_low = self.server_now_low().await;
        let reply: redis::Value = invoke(
            SCRIPTS
                .update
                .key(&key)
                .arg(expected.get())
                .arg(next.get())
                .arg(metadata.json())
                .arg(self.inner.ttl_ms)
                .arg(self.inner.max_ms)
                .arg(self.inner.prefix.channel())
                .arg(id.as_str())
                .arg(write.log_entry(next))
                .arg(now_low),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        match &reply {
            redis::Value::Int(0) => Ok(Update::Missing),
            redis::Value::Int(1) => Ok(Update::Applied(next)),
            redis::Value::Int(3) => Err(Error::VersionLimit { key }),
            redis::Value::Array(pair) => match pair.as_slice() {
                [redis::Value::Int(2), redis::Value::BulkString(current)] => Ok(Update::Conflict {
                    current: record::decode_version(&key, current)?,
                }),
                // Applied before by this write: its original outcome.
                [redis::Value::Int(4), redis::Value::BulkString(digits)] => Ok(Update::Applied(
                    record::decode_logged_version(&key, digits)?,
                )),
                _ => Err(UnexpectedReply::new("update script", &reply).into()),
            },
            _ => Err(UnexpectedReply::new("update script", &reply).into()),
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        // Checked like `load` first (metadata included), so a corrupt
        // record is reported and never slid; then the script, which
        // re-checks `v`, `c`, `t` and slides.
        let key = self.key(id);
        if self.read(&key, false).await?.is_none() {
            return Ok(false);
        }
        self.slide(&key, id).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let key = self.key(id);
        let removed: i64 = invoke(
            SCRIPTS
                .delete
                .key(&key)
                .arg(self.inner.prefix.channel())
                .arg(id.as_str()),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        Ok(removed == 1)
    }

    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        if limit == 0 {
            return Err(InvalidInput::ScanLimit.into());
        }
        let timeout = self.inner.response_timeout;
        let map = |e| map_redis(e, self.inner.prefix.as_str(), timeout);
        let bad_cursor = |c: &Cursor| -> Error {
            InvalidInput::Config(ConfigError::Invalid {
                setting: "scan cursor",
                reason: format!("{:?} was not returned by this store", c.as_str()),
            })
            .into()
        };
        let mut conn = self.conn();
        let (keys, next) = match &mut conn {
            Conn::Single(c) => {
                let start = match cursor {
                    None => 0,
                    Some(c) => scan::parse_single(c).ok_or_else(|| bad_cursor(c))?,
                };
                scan::single(c, self.inner.prefix.pattern(), start, limit)
                    .await
                    .map_err(map)?
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => {
                let start = match cursor {
                    None => None,
                    Some(c) => Some(scan::parse_cluster(c).ok_or_else(|| bad_cursor(c))?),
                };
                scan::cluster(c, self.inner.prefix.pattern(), start, limit, timeout).await?
            }
        };
        let ids: Vec<SessionId> = keys
            .iter()
            .filter_map(|k| self.inner.prefix.id_of(k))
            .collect();
        let skipped = keys.len() - ids.len();
        if skipped > 0 {
            tracing::warn!(
                prefix = self.inner.prefix.as_str(),
                skipped,
                "scan skipped keys whose suffix is not a valid session id"
            );
        }
        Ok(Page { ids, next, skipped })
    }

    fn changes(&self) -> Option<ChangeStream> {
        let inner = &*self.inner;
        let stream = inner.hub.subscribe();
        let mut task = inner
            .subscriber
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if task.is_none() {
            let subscriber = Subscriber {
                clients: inner.pubsub.clone(),
                channel: inner.prefix.channel().to_owned(),
                hub: inner.hub.clone(),
                connect_timeout: inner.config.connect_timeout,
                response_timeout: inner.config.response_timeout,
                ping_every: inner.config.subscriber_ping,
                backoff: inner.config.subscriber_backoff,
                addr: inner.subscriber_addr.clone(),
            };
            let _guard = inner.runtime.enter();
            *task = Some(AbortOnDrop(subscriber.spawn()));
        }
        Some(stream)
    }

    fn config(&self) -> &StoreConfig {
        &self.inner.store
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix.as_str())
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_rejects_a_bad_subscriber_backoff_before_dialling() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bad = crate::Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(1),
        };
        // Port 1: nothing listens, so only validation can answer this fast.
        let cfg = RedisConfig::new("redis://127.0.0.1:1").subscriber_backoff(bad);
        match rt.block_on(RedisStore::connect(cfg)) {
            Err(Error::InvalidInput(InvalidInput::Config(ConfigError::Invalid {
                setting,
                ..
            }))) => assert_eq!(setting, "subscriber_backoff"),
            Err(other) => panic!("expected a config error, got {other:?}"),
            Ok(_) => panic!("connected with an invalid backoff"),
        }
    }

    #[test]
    fn slides_once_the_window_has_passed() {
        // t = 1000 ms, fraction 0.1: slide once less than 900 ms remain.
        assert!(!needs_slide(1000, 1000, 0.1));
        assert!(!needs_slide(1000, 900, 0.1));
        assert!(needs_slide(1000, 899, 0.1));
        assert!(needs_slide(1000, 1, 0.1));
        // 0.0 slides on every load; 1.0 only once the deadline has passed.
        assert!(needs_slide(1000, 1000, 0.0));
        assert!(needs_slide(1000, 5000, 0.0));
        assert!(!needs_slide(1000, 0, 1.0));
        assert!(needs_slide(1000, -1, 1.0));
    }

    fn read(due: Due) -> Read {
        Read {
            record: Record {
                version: Version::INITIAL,
                metadata: Metadata::new(),
            },
            ttl_ms: 1000,
            due,
        }
    }

    #[test]
    fn a_load_slides_by_the_header_deadline() {
        let now = 1_764_300_000_000;
        // 950 ms left of t = 1000 at fraction 0.1: inside the window.
        assert!(!load_slides(&read(Due::At(now + 950)), Some(now), 0.1));
        assert!(!load_slides(&read(Due::At(now + 900)), Some(now), 0.1));
        assert!(load_slides(&read(Due::At(now + 899)), Some(now), 0.1));
        // A deadline already passed (by the estimate): the script decides.
        assert!(load_slides(&read(Due::At(now - 5)), Some(now), 0.1));
        // No estimate yet: slide (the script decides on the server clock).
        assert!(load_slides(&read(Due::At(now + 950)), None, 0.1));
        // Earlier layouts always go through the touch script.
        assert!(load_slides(&read(Due::Migrate), Some(now), 0.1));
        assert!(load_slides(&read(Due::Migrate), Some(now), 1.0));
        // A legacy hash by its PTTL.
        assert!(!load_slides(&read(Due::Pttl(950)), Some(now), 0.1));
        assert!(load_slides(&read(Due::Pttl(899)), None, 0.1));
        // Fraction 0.0: always.
        assert!(load_slides(&read(Due::At(now + 5000)), Some(now), 0.0));
    }
}
