//! The test harness shared by the integration tests: isolated key prefixes
//! on a real Redis (standalone or cluster), raw access for planting corrupt
//! records, and teardown that deletes every key under the prefix.
#![allow(dead_code)]

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Value};
use session_core::testing::{Corruption, Harness, require_url};
use session_core::{Cursor, SessionId, SessionStore, StoreConfig, Version};
use session_storage_redis::{RedisConfig, RedisStore};

/// Environment variable naming the standalone test server.
pub const URL_VAR: &str = "SESSION_TEST_REDIS_URL";
/// Environment variable naming the cluster seed nodes (comma-separated).
pub const CLUSTER_VAR: &str = "SESSION_TEST_REDIS_CLUSTER_URLS";

/// The standalone test server's URL: the environment, else (feature
/// `testcontainers`) a container when Docker answers, else a loud failure.
pub fn standalone_url() -> String {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        return url;
    }
    #[cfg(feature = "testcontainers")]
    if let Some(url) = session_storage_redis::testing::container_url() {
        return url;
    }
    require_url(URL_VAR, "redis://127.0.0.1:6379")
}

/// The cluster seed node URLs.
pub fn cluster_urls() -> Vec<String> {
    require_url(
        CLUSTER_VAR,
        "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003",
    )
    .split(',')
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
    .collect()
}

/// Which kind of deployment a harness runs against.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A config for this backend (default prefix).
    fn config() -> RedisConfig;
    /// A plain connection for raw reads and writes.
    async fn raw() -> Raw;
    /// The URL of every node.
    fn node_urls() -> Vec<String>;
}

/// A standalone server.
pub struct Standalone;

#[async_trait]
impl Backend for Standalone {
    fn config() -> RedisConfig {
        RedisConfig::new(standalone_url())
    }
    async fn raw() -> Raw {
        let client = redis::Client::open(standalone_url()).unwrap();
        Raw::Single(client.get_multiplexed_async_connection().await.unwrap())
    }
    fn node_urls() -> Vec<String> {
        vec![standalone_url()]
    }
}

/// A Redis Cluster.
#[cfg(feature = "cluster")]
pub struct Cluster;

#[cfg(feature = "cluster")]
#[async_trait]
impl Backend for Cluster {
    fn config() -> RedisConfig {
        RedisConfig::cluster(cluster_urls())
    }
    async fn raw() -> Raw {
        let client = redis::cluster::ClusterClient::new(cluster_urls()).unwrap();
        Raw::Cluster(client.get_async_connection().await.unwrap())
    }
    fn node_urls() -> Vec<String> {
        cluster_urls()
    }
}

/// A raw connection, bypassing the store.
#[derive(Clone)]
pub enum Raw {
    Single(redis::aio::MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    /// Runs one command.
    pub async fn q<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        let mut this = self.clone();
        let value = this.req_packed_command(cmd).await?;
        Ok(redis::from_redis_value(value)?)
    }
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Raw::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Raw::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        0
    }
}

/// A fresh prefix `vmcp:test:<uuid>:` (plus `tag`).
pub fn unique_prefix(tag: &str) -> String {
    format!("vmcp:test:{}:{tag}", uuid::Uuid::new_v4())
}

/// A harness on backend `B` with its own key prefix.
pub struct RedisHarness<B> {
    /// The prefix every store of this harness uses.
    pub prefix: String,
    /// Raw access.
    pub raw: Raw,
    /// Keys planted under the prefix that a scan cannot name (invalid
    /// ids), deleted at teardown.
    pub extra_keys: std::sync::Mutex<Vec<String>>,
    _backend: PhantomData<B>,
}

impl<B: Backend> RedisHarness<B> {
    /// A store on this harness's prefix (or `prefix`).
    pub async fn store_with_prefix(&self, prefix: &str, config: StoreConfig) -> RedisStore {
        let cfg = B::config().prefix(prefix).store(config);
        RedisStore::connect(cfg)
            .await
            .expect("connect to the test redis")
    }

    /// The key of `id` under this harness's prefix.
    pub fn key(&self, id: &SessionId) -> String {
        format!("{}{}", self.prefix, id.as_str())
    }

    /// Deletes every key under `prefix`.
    pub async fn clean(&self, prefix: &str) {
        let store = self.store_with_prefix(prefix, StoreConfig::default()).await;
        let mut cursor: Option<Cursor> = None;
        loop {
            let Ok(page) = store.scan(cursor.as_ref(), 500).await else {
                return;
            };
            for id in page.ids {
                let _: Result<i64, _> = self
                    .raw
                    .q(redis::cmd("DEL").arg(format!("{prefix}{}", id.as_str())))
                    .await;
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return,
            }
        }
    }
}

#[async_trait]
impl<B: Backend> Harness for RedisHarness<B> {
    type Store = RedisStore;
    /// Redis `SCAN` may return a key more than once.
    const SCAN_MAY_REPEAT: bool = true;

    async fn setup() -> Self {
        Self {
            prefix: unique_prefix(""),
            raw: B::raw().await,
            extra_keys: std::sync::Mutex::new(Vec::new()),
            _backend: PhantomData,
        }
    }

    async fn store(&self, config: StoreConfig) -> RedisStore {
        self.store_with_prefix(&self.prefix, config).await
    }

    async fn teardown(&self) {
        self.clean(&self.prefix).await;
        let extra = std::mem::take(&mut *self.extra_keys.lock().unwrap());
        for key in extra {
            let _: Result<i64, _> = self.raw.q(redis::cmd("DEL").arg(key)).await;
        }
    }

    fn ttl_unit(&self) -> Duration {
        Duration::from_secs(2)
    }

    async fn plant(&self, id: &SessionId, kind: Corruption) -> bool {
        plant(&self.raw, &self.key(id), kind).await;
        true
    }

    async fn raw(&self, id: &SessionId) -> Option<String> {
        raw_dump(&self.raw, &self.key(id)).await
    }

    async fn set_version(&self, id: &SessionId, version: Version) {
        // Rewrites the header's version, keeping the rest (the deadline,
        // the write list) and the expiry.
        let key = self.key(id);
        let value: Vec<u8> = self
            .raw
            .q(redis::cmd("GET").arg(&key))
            .await
            .expect("set_version on a record that does not exist");
        let text = String::from_utf8(value).unwrap();
        let (header, rest) = text.split_once('\n').unwrap();
        let mut parts: Vec<String> = header.split(' ').map(str::to_owned).collect();
        let at = match parts[0].as_str() {
            "s3" => 2,
            "s2" | "s1" => 1,
            other => panic!("not a record: {other:?}"),
        };
        assert_eq!(parts.len(), at + 3, "not a record: {header:?}");
        parts[at] = version.get().to_string();
        let value = format!("{}\n{rest}", parts.join(" "));
        let _: () = self
            .raw
            .q(redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("XX")
                .arg("KEEPTTL"))
            .await
            .unwrap();
    }

    async fn plant_bad_id(&self) -> bool {
        // A space is not allowed in a session id; the string is otherwise
        // a valid record.
        let key = format!("{}bad id {}", self.prefix, uuid::Uuid::new_v4().simple());
        self.extra_keys.lock().unwrap().push(key.clone());
        let _: () = self
            .raw
            .q(redis::cmd("SET").arg(&key).arg(record_bytes(
                b"1",
                b"1",
                b"600000",
                b"{}",
                Layout::S3,
            )))
            .await
            .unwrap();
        let _: i64 = self
            .raw
            .q(redis::cmd("PEXPIRE").arg(&key).arg(600_000))
            .await
            .unwrap();
        true
    }

    async fn interrupt_changes(&self, store: &RedisStore) -> bool {
        kill_subscriber::<B>(store).await;
        true
    }
}

/// Ends `store`'s change subscription from the server side with `CLIENT
/// KILL ADDR` (its connection only: other tests' subscribers on the same
/// server are untouched). Waits for the subscription to be live first.
pub async fn kill_subscriber<B: Backend>(store: &RedisStore) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let addr = loop {
        if let Some(addr) = store.change_subscriber_addr() {
            break addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change subscription never went live"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut killed = 0;
    for url in B::node_urls() {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ADDR")
            .arg(addr.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        killed += n;
    }
    assert_eq!(
        killed, 1,
        "CLIENT KILL ADDR {addr} matched {killed} clients"
    );
}

/// A record string layout tests plant records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// What the store writes: `s3 <e> <v> <c> <t>\n<writes>\n<m>` (with
    /// the deadline [`FAR_DEADLINE`] and an empty write list).
    S3,
    /// An earlier release's `s2 <v> <c> <t>\n<writes>\n<m>` (empty write list).
    S2,
    /// An earlier release's `s1 <v> <c> <t>\n<m>`.
    S1,
}

/// The header deadline [`record_bytes`] gives an `s3` record (the year
/// 2286; the key's own expiry is set apart).
pub const FAR_DEADLINE: &[u8] = b"9999999999999";

/// A record string in `layout` (see the crate README), from raw parts:
/// tests plant records with it.
pub fn record_bytes(v: &[u8], c: &[u8], t: &[u8], m: &[u8], layout: Layout) -> Vec<u8> {
    let mut out = match layout {
        Layout::S3 => [b"s3 ", FAR_DEADLINE, b" "].concat(),
        Layout::S2 => b"s2 ".to_vec(),
        Layout::S1 => b"s1 ".to_vec(),
    };
    out.extend_from_slice(v);
    out.push(b' ');
    out.extend_from_slice(c);
    out.push(b' ');
    out.extend_from_slice(t);
    out.push(b'\n');
    if layout != Layout::S1 {
        out.push(b'\n');
    }
    out.extend_from_slice(m);
    out
}

/// The bad part a corruption `kind` puts in a record, as
/// (version, created, metadata); `None` for [`Corruption::WrongType`].
fn corrupt_parts(kind: Corruption) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let (mut v, mut c, mut m) = (b"1".to_vec(), b"1".to_vec(), b"{}".to_vec());
    match kind {
        Corruption::WrongType => return None,
        Corruption::MissingVersion => v.clear(),
        Corruption::NonNumericVersion => v = b"abc".to_vec(),
        Corruption::NonUtf8Version => v = b"\xff\xfe1".to_vec(),
        Corruption::SignedVersion => v = b"+5".to_vec(),
        Corruption::ZeroVersion => v = b"0".to_vec(),
        Corruption::NegativeVersion => v = b"-5".to_vec(),
        Corruption::VersionPastMax => v = b"9007199254740992".to_vec(),
        Corruption::NoVersionNoCreated => {
            v.clear();
            c.clear();
        }
        Corruption::MetadataNotJson => m = b"{not json".to_vec(),
        Corruption::MetadataNotStringMap => m = br#"{"a":1}"#.to_vec(),
        Corruption::MetadataNotUtf8 => m = b"{\"a\":\"\xff\"}".to_vec(),
        Corruption::MetadataOversized => {
            m = format!(r#"{{"k":"{}"}}"#, "x".repeat(70 * 1024)).into_bytes();
        }
        other => panic!("unknown corruption {other:?}"),
    }
    Some((v, c, m))
}

/// Writes a corrupt record of `kind` at `key` in the string layout the
/// store writes (expiring in 10 minutes, in case teardown does not run).
/// [`Corruption::WrongType`] is a list.
pub async fn plant(raw: &Raw, key: &str, kind: Corruption) {
    plant_in(raw, key, kind, Layout::S3).await;
}

/// [`plant`] in `layout`.
pub async fn plant_in(raw: &Raw, key: &str, kind: Corruption, layout: Layout) {
    let _: i64 = raw.q(redis::cmd("DEL").arg(key)).await.unwrap();
    match corrupt_parts(kind) {
        None => {
            let _: i64 = raw
                .q(redis::cmd("RPUSH").arg(key).arg("not a record"))
                .await
                .unwrap();
        }
        Some((v, c, m)) => {
            let _: () = raw
                .q(redis::cmd("SET")
                    .arg(key)
                    .arg(record_bytes(&v, &c, b"600000", &m, layout)))
                .await
                .unwrap();
        }
    }
    let _: i64 = raw
        .q(redis::cmd("PEXPIRE").arg(key).arg(600_000))
        .await
        .unwrap();
}

/// Writes a record in the legacy hash layout (`HSET v m c t`; a field
/// given as `None` is left out) expiring in `pttl_ms`, as a release
/// before the string layout did.
pub async fn plant_legacy(raw: &Raw, key: &str, fields: [Option<&[u8]>; 4], pttl_ms: i64) {
    let _: i64 = raw.q(redis::cmd("DEL").arg(key)).await.unwrap();
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (name, value) in ["v", "m", "c", "t"].into_iter().zip(fields) {
        if let Some(value) = value {
            cmd.arg(name).arg(value);
        }
    }
    let _: i64 = raw.q(&cmd).await.unwrap();
    let _: i64 = raw
        .q(redis::cmd("PEXPIRE").arg(key).arg(pttl_ms))
        .await
        .unwrap();
}

/// A corrupt record of `kind` in the legacy hash layout (wrong type: a
/// list, as in [`plant`]).
pub async fn plant_legacy_corrupt(raw: &Raw, key: &str, kind: Corruption) {
    let Some((v, c, m)) = corrupt_parts(kind) else {
        return plant(raw, key, kind).await;
    };
    let field = |b: &[u8]| (!b.is_empty()).then_some(b.to_vec());
    let (v, c, m) = (field(&v), field(&c), field(&m));
    plant_legacy(
        raw,
        key,
        [v.as_deref(), m.as_deref(), c.as_deref(), Some(b"600000")],
        600_000,
    )
    .await;
}

/// The stored content at `key`: the string, or the sorted hash fields.
pub async fn raw_dump(raw: &Raw, key: &str) -> Option<String> {
    let ty: String = raw.q(redis::cmd("TYPE").arg(key)).await.unwrap();
    match ty.as_str() {
        "none" => None,
        "string" => Some(format!(
            "string:{:?}",
            raw.q::<Vec<u8>>(redis::cmd("GET").arg(key)).await.unwrap()
        )),
        "hash" => {
            // Bytes, not strings: a corrupt record need not be UTF-8.
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
                raw.q(redis::cmd("HGETALL").arg(key)).await.unwrap();
            pairs.sort();
            Some(format!("hash:{pairs:?}"))
        }
        other => Some(format!("{other}:?")),
    }
}
