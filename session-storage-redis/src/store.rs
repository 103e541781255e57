//! [`RedisStore`]: the [`SessionStore`] implementation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use redis::{Client, RedisError};
use session_core::{
    ChangeHub, ChangeStream, ConfigError, CorruptRecord, Cursor, Error, InvalidInput, Metadata,
    MetadataError, Page, Record, Result, SessionId, SessionStore, StoreConfig, Ttl, Update,
    Version,
};

use crate::changes::{AbortOnDrop, Subscriber};
use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::error::{UnexpectedReply, field_name, map_redis};
use crate::keys::KeyPrefix;
use crate::scan;
use crate::scripts::{SCRIPTS, invoke};

/// A [`SessionStore`] on Redis (standalone, or Cluster with feature
/// `cluster`): one hash per session at `prefix + id`, every mutation one Lua
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
    response_timeout: Duration,
    hub: ChangeHub,
    pubsub: Vec<Client>,
    config: RedisConfig,
    runtime: tokio::runtime::Handle,
    subscriber: Mutex<Option<AbortOnDrop>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Connects (bounded by the connect timeout and retries) and returns a
    /// store. Fails with [`Error::InvalidInput`] for a bad URL, otherwise
    /// [`Error::Unavailable`] / [`Error::Timeout`] if the server cannot be
    /// reached.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let pubsub = connection::pubsub_clients(&config)?;
        let conn = connection::connect(&config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                prefix: config.prefix.clone(),
                store: config.store,
                ttl_ms: millis(config.store.ttl()),
                max_ms: config.store.max_lifetime().map_or(0, millis),
                response_timeout: config.response_timeout,
                hub: ChangeHub::new(config.change_capacity),
                pubsub,
                runtime: tokio::runtime::Handle::current(),
                subscriber: Mutex::new(None),
                config,
            }),
        })
    }

    /// The key prefix (and with it the change channel).
    pub fn prefix(&self) -> &KeyPrefix {
        &self.inner.prefix
    }

    /// The key holding `id`'s hash (for operators and tests).
    pub fn key(&self, id: &SessionId) -> String {
        self.inner.prefix.key(id)
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    fn err(&self, key: &str) -> impl FnOnce(RedisError) -> Error + '_ {
        let timeout = self.inner.response_timeout;
        let key = key.to_owned();
        move |e| map_redis(e, &key, timeout)
    }
}

/// Decodes the metadata JSON of a loaded record.
fn decode_metadata(key: &str, raw: &[u8]) -> Result<Metadata> {
    let invalid = |e: MetadataError| Error::corrupt(key, CorruptRecord::InvalidMetadata(e));
    let text = std::str::from_utf8(raw)
        .map_err(|e| invalid(MetadataError::NotStringMap(e.to_string())))?;
    Metadata::from_json(text).map_err(invalid)
}

/// Decodes a version the script already checked (or `HMGET` returned).
fn decode_version(key: &str, raw: &str) -> Result<Version> {
    match raw.parse::<u64>() {
        Ok(v) if v > 0 && !raw.starts_with('0') => Ok(Version::new(v)),
        _ => Err(Error::corrupt(
            key,
            CorruptRecord::InvalidVersion(raw.chars().take(64).collect()),
        )),
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
    ) -> Result<Option<Version>> {
        let key = self.key(id);
        let ttl_ms = millis(self.inner.store.effective_ttl(ttl));
        let created: i64 = invoke(
            SCRIPTS
                .create
                .key(&key)
                .arg(metadata.json())
                .arg(ttl_ms)
                .arg(self.inner.max_ms)
                .arg(self.inner.prefix.channel())
                .arg(id.as_str()),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        Ok((created == 1).then_some(Version::INITIAL))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let key = self.key(id);
        let reply: Option<(String, Vec<u8>)> = invoke(
            SCRIPTS.load.key(&key).arg(self.inner.max_ms),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        let Some((version, metadata)) = reply else {
            return Ok(None);
        };
        Ok(Some(Record {
            version: decode_version(&key, &version)?,
            metadata: decode_metadata(&key, &metadata)?,
        }))
    }

    async fn version(&self, id: &SessionId) -> Result<Option<Version>> {
        // One plain read: no script, no slide, no metadata transfer. `c` is
        // read only to tell "no such key" from "a hash without `v`".
        let key = self.key(id);
        let (v, c): (Option<String>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("v")
            .arg("c")
            .query_async(&mut self.conn())
            .await
            .map_err(self.err(&key))?;
        match (v, c) {
            (Some(v), _) => decode_version(&key, &v).map(Some),
            (None, Some(_)) => Err(Error::corrupt(
                &key,
                CorruptRecord::MissingField(field_name("v")),
            )),
            (None, None) => Ok(None),
        }
    }

    async fn update(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
    ) -> Result<Update> {
        let key = self.key(id);
        let (status, version): (i64, String) = invoke(
            SCRIPTS
                .update
                .key(&key)
                .arg(expected.get())
                .arg(metadata.json())
                .arg(self.inner.ttl_ms)
                .arg(self.inner.max_ms)
                .arg(self.inner.prefix.channel())
                .arg(id.as_str()),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        match status {
            0 => Ok(Update::Missing),
            1 => Ok(Update::Applied(decode_version(&key, &version)?)),
            2 => Ok(Update::Conflict {
                current: decode_version(&key, &version)?,
            }),
            _ => Err(UnexpectedReply::new("update script", &redis::Value::Int(status)).into()),
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<bool> {
        let key = self.key(id);
        let live: i64 = invoke(
            SCRIPTS.touch.key(&key).arg(self.inner.max_ms),
            &mut self.conn(),
        )
        .await
        .map_err(self.err(&key))?;
        Ok(live == 1)
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
        let ids = keys
            .iter()
            .filter_map(|k| self.inner.prefix.id_of(k))
            .collect();
        Ok(Page { ids, next })
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
                backoff_max: inner.config.subscriber_backoff_max,
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
