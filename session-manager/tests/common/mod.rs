//! Shared test helpers: a counting factory, a counting/faulty/yielding
//! store wrapper, a seeded RNG.
#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use session_core::{
    ChangeStream, Cursor, Metadata, Page, Record, SessionId, SessionStore, Snapshot, StoreConfig,
    Ttl, Update, Version, WorkloadId, keys,
};
use session_manager::{BuildCause, Built, SessionFactory};

/// splitmix64: a small seeded generator for schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// A shared seeded source of yield counts.
#[derive(Clone, Default)]
pub struct Yielder(Option<Arc<Mutex<Rng>>>);

impl Yielder {
    pub fn seeded(seed: u64) -> Self {
        Self(Some(Arc::new(Mutex::new(Rng::new(seed)))))
    }
    pub fn below(&self, n: u64) -> u64 {
        self.0.as_ref().map_or(0, |r| r.lock().unwrap().below(n))
    }
    pub async fn pause(&self, max: u64) {
        for _ in 0..self.below(max + 1) {
            tokio::task::yield_now().await;
        }
    }
}

#[derive(Debug)]
pub struct TestSession {
    pub serial: u64,
    pub node: String,
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("test build failure")]
pub struct BuildFailed;

/// Counters shared by a test and its factories.
#[derive(Default)]
pub struct Counters {
    pub builds: AtomicUsize,
    pub closes: AtomicUsize,
    pub double_closes: AtomicUsize,
    pub closes_under_lock: AtomicUsize,
    serial: AtomicU64,
    open: Mutex<HashSet<u64>>,
}

impl Counters {
    pub fn builds(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }
    /// Every built session closed exactly once, none under a cache lock.
    pub fn assert_balanced(&self) {
        assert_eq!(
            self.double_closes.load(Ordering::SeqCst),
            0,
            "a session was closed twice"
        );
        assert_eq!(
            self.closes_under_lock.load(Ordering::SeqCst),
            0,
            "a close ran while a cache lock was held"
        );
        assert_eq!(self.builds(), self.closes(), "builds != closes");
        assert!(self.open.lock().unwrap().is_empty());
    }
}

/// A factory that counts builds and closes.
#[derive(Clone)]
pub struct TestFactory {
    pub counters: Arc<Counters>,
    pub node: String,
    /// Builds assign a fresh backend session id to every backend (backends
    /// that ignore the session-id hint).
    pub fresh_backend_ids: bool,
    pub build_delay: Duration,
    pub yielder: Yielder,
    pub fail_builds: Arc<AtomicBool>,
    /// Checks, at close time, that no cache lock is held (set after build).
    pub lock_probe: Arc<OnceLock<Box<dyn Fn() -> bool + Send + Sync>>>,
    /// Every close sleeps a random time in `0..=close_jitter` (seeded).
    pub close_jitter: Duration,
    /// Closes of these session ids sleep `slow_close_delay` first.
    pub slow_close: Arc<Mutex<HashSet<String>>>,
    pub slow_close_delay: Duration,
    /// Every close sleeps this long first.
    pub close_delay: Duration,
    /// Closes panic (after the delays) while set.
    pub close_panics: Arc<AtomicBool>,
    pub close_panicked: Arc<AtomicUsize>,
    rng: Arc<Mutex<Rng>>,
}

impl TestFactory {
    pub fn new(counters: &Arc<Counters>, node: &str) -> Self {
        Self {
            counters: counters.clone(),
            node: node.to_owned(),
            fresh_backend_ids: false,
            build_delay: Duration::ZERO,
            yielder: Yielder::default(),
            fail_builds: Arc::new(AtomicBool::new(false)),
            lock_probe: Arc::new(OnceLock::new()),
            close_jitter: Duration::ZERO,
            slow_close: Arc::default(),
            slow_close_delay: Duration::ZERO,
            close_delay: Duration::ZERO,
            close_panics: Arc::default(),
            close_panicked: Arc::default(),
            rng: Arc::new(Mutex::new(Rng::new(node.len() as u64))),
        }
    }
}

#[async_trait]
impl SessionFactory for TestFactory {
    type Session = Arc<TestSession>;
    type Error = BuildFailed;

    async fn build(
        &self,
        snapshot: &Snapshot,
        _cause: BuildCause,
    ) -> Result<Built<Self::Session>, BuildFailed> {
        self.yielder.pause(4).await;
        if !self.build_delay.is_zero() {
            tokio::time::sleep(self.build_delay).await;
        }
        if self.fail_builds.load(Ordering::SeqCst) {
            return Err(BuildFailed);
        }
        let serial = self.counters.serial.fetch_add(1, Ordering::SeqCst);
        let mut md = snapshot.metadata.clone();
        if self.fresh_backend_ids {
            for w in keys::backend_ids(&md).unwrap() {
                md = keys::with_backend(&md, &w, &format!("{}-{serial}", self.node)).unwrap();
            }
        }
        self.counters.builds.fetch_add(1, Ordering::SeqCst);
        self.counters.open.lock().unwrap().insert(serial);
        Ok(Built::new(
            Arc::new(TestSession {
                serial,
                node: self.node.clone(),
                id: snapshot.id.to_string(),
            }),
            md,
        ))
    }

    async fn close(&self, session: Self::Session) {
        self.yielder.pause(3).await;
        if !self.close_delay.is_zero() {
            tokio::time::sleep(self.close_delay).await;
        }
        if !self.close_jitter.is_zero() {
            let max = u64::try_from(self.close_jitter.as_micros()).unwrap();
            let us = self.rng.lock().unwrap().below(max + 1);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if self.slow_close.lock().unwrap().contains(&session.id) {
            tokio::time::sleep(self.slow_close_delay).await;
        }
        if self.close_panics.load(Ordering::SeqCst) {
            self.close_panicked.fetch_add(1, Ordering::SeqCst);
            panic!("test factory: close panics");
        }
        if let Some(probe) = self.lock_probe.get()
            && !probe()
        {
            self.counters
                .closes_under_lock
                .fetch_add(1, Ordering::SeqCst);
        }
        if !self.counters.open.lock().unwrap().remove(&session.serial) {
            self.counters.double_closes.fetch_add(1, Ordering::SeqCst);
        }
        self.counters.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Per-method call counts.
#[derive(Default, Debug)]
pub struct Calls {
    pub create: AtomicUsize,
    pub load: AtomicUsize,
    pub peek: AtomicUsize,
    pub version: AtomicUsize,
    pub update: AtomicUsize,
    pub touch: AtomicUsize,
    pub delete: AtomicUsize,
    pub scan: AtomicUsize,
}

impl Calls {
    pub fn total(&self) -> usize {
        [
            &self.create,
            &self.load,
            &self.peek,
            &self.version,
            &self.update,
            &self.touch,
            &self.delete,
            &self.scan,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }
}

/// Wraps a store: counts calls, can fail them (transient) and can yield a
/// seeded number of times around each call.
pub struct TestStore {
    pub inner: Arc<dyn SessionStore>,
    pub calls: Arc<Calls>,
    pub fail: Arc<AtomicBool>,
    pub yielder: Yielder,
    pub delay: Duration,
    /// Reads (`load`, `peek`, `version`) reach storage at once, then their
    /// reply is held back this long.
    pub reply_delay: Duration,
    /// When set, `changes()` subscribes to this hub instead of the inner
    /// store's (take it out to end the stream).
    pub hub: Option<Arc<Mutex<Option<session_core::ChangeHub>>>>,
    /// The next this many writes (`create_once`, `update_once`) reach
    /// storage and are applied, then their reply is lost: the caller gets
    /// a timeout.
    pub lose_replies: Arc<AtomicUsize>,
    /// After each lost reply, another writer (a fresh write id) updates
    /// the session this many times, setting key `other`, before the
    /// caller can retry.
    pub interleave: Arc<AtomicUsize>,
}

impl TestStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            calls: Arc::default(),
            fail: Arc::default(),
            yielder: Yielder::default(),
            delay: Duration::ZERO,
            reply_delay: Duration::ZERO,
            hub: None,
            lose_replies: Arc::default(),
            interleave: Arc::default(),
        }
    }

    /// Whether to lose this write's reply (consumes one from `lose_replies`).
    fn lose(&self) -> bool {
        self.lose_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// A write was applied and its reply is lost: others write, then the
    /// caller sees a timeout.
    async fn lost<T>(&self, id: &SessionId) -> session_core::Result<T> {
        for n in 0..self.interleave.load(Ordering::SeqCst) {
            let rec = self.inner.load(id).await.unwrap().expect("live");
            let md = rec.metadata.with("other", n.to_string()).unwrap();
            let u = self.inner.update(id, rec.version, &md).await.unwrap();
            assert!(matches!(u, Update::Applied(_)), "{u:?}");
        }
        Err(session_core::Error::Timeout(Duration::from_secs(1)))
    }

    async fn enter(&self, counter: &AtomicUsize) -> session_core::Result<()> {
        counter.fetch_add(1, Ordering::SeqCst);
        self.yielder.pause(3).await;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(session_core::Error::unavailable("injected outage"));
        }
        Ok(())
    }

    async fn replied(&self) {
        self.yielder.pause(2).await;
        if !self.reply_delay.is_zero() {
            tokio::time::sleep(self.reply_delay).await;
        }
    }
}

#[async_trait]
impl SessionStore for TestStore {
    async fn create_once(
        &self,
        id: &SessionId,
        metadata: &Metadata,
        ttl: Ttl,
        write: &session_core::WriteId,
    ) -> session_core::Result<Option<Version>> {
        self.enter(&self.calls.create).await?;
        let r = self.inner.create_once(id, metadata, ttl, write).await;
        self.yielder.pause(2).await;
        if r.is_ok() && self.lose() {
            return self.lost(id).await;
        }
        r
    }
    async fn load(&self, id: &SessionId) -> session_core::Result<Option<Record>> {
        self.enter(&self.calls.load).await?;
        let r = self.inner.load(id).await;
        self.replied().await;
        r
    }
    async fn peek(&self, id: &SessionId) -> session_core::Result<Option<Record>> {
        self.enter(&self.calls.peek).await?;
        let r = self.inner.peek(id).await;
        self.replied().await;
        r
    }
    async fn version(&self, id: &SessionId) -> session_core::Result<Option<Version>> {
        self.enter(&self.calls.version).await?;
        let r = self.inner.version(id).await;
        self.replied().await;
        r
    }
    async fn update_once(
        &self,
        id: &SessionId,
        expected: Version,
        metadata: &Metadata,
        write: &session_core::WriteId,
    ) -> session_core::Result<Update> {
        self.enter(&self.calls.update).await?;
        let r = self.inner.update_once(id, expected, metadata, write).await;
        self.yielder.pause(2).await;
        if r.is_ok() && self.lose() {
            return self.lost(id).await;
        }
        r
    }
    async fn touch(&self, id: &SessionId) -> session_core::Result<bool> {
        self.enter(&self.calls.touch).await?;
        self.inner.touch(id).await
    }
    async fn delete(&self, id: &SessionId) -> session_core::Result<bool> {
        self.enter(&self.calls.delete).await?;
        let r = self.inner.delete(id).await;
        self.yielder.pause(2).await;
        r
    }
    async fn scan(&self, cursor: Option<&Cursor>, limit: usize) -> session_core::Result<Page> {
        self.enter(&self.calls.scan).await?;
        self.inner.scan(cursor, limit).await
    }
    fn changes(&self) -> Option<ChangeStream> {
        match &self.hub {
            Some(hub) => hub
                .lock()
                .unwrap()
                .as_ref()
                .map(session_core::ChangeHub::subscribe),
            None => self.inner.changes(),
        }
    }
    fn config(&self) -> &StoreConfig {
        self.inner.config()
    }
}

pub fn workload(name: &str) -> WorkloadId {
    WorkloadId::parse(name).unwrap()
}

/// Metadata with the given backends (session id `<name>-0` each).
pub fn backends(names: &[&str]) -> Metadata {
    let mut md = Metadata::new();
    for n in names {
        md = keys::with_backend(&md, &workload(n), &format!("{n}-0")).unwrap();
    }
    md
}

pub fn counter(md: &Metadata) -> u64 {
    md.get("counter").map_or(0, |v| v.parse().unwrap())
}

/// Polls `check` every millisecond until it holds; panics after 15 s.
/// Returns how long it took (reported by tests, never asserted on).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

/// A test server's URL from `var`; fails with how to provide one.
pub fn url(var: &str, example: &str) -> String {
    session_core::testing::require_url(var, example)
}

/// A real server's storage under a name no other test uses (a Redis key
/// prefix, a Postgres schema), removed by [`cleanup`](Self::cleanup).
pub struct Isolated {
    url: String,
    name: String,
}

impl Isolated {
    pub fn new(url: &str) -> Self {
        let name = format!("mgr_{}", SessionId::generate().as_str().replace('-', ""));
        Self {
            url: url.to_owned(),
            name,
        }
    }

    /// The Redis key prefix of this test.
    pub fn prefix(&self) -> String {
        format!("{}:", self.name)
    }

    /// A new store handle (its own connections, as a separate node has).
    pub async fn handle(&self) -> Arc<dyn SessionStore> {
        #[cfg(feature = "redis")]
        if self.url.starts_with("redis") {
            let config = session_manager::RedisConfig::new(self.url.clone()).prefix(self.prefix());
            return Arc::new(session_manager::RedisStore::connect(config).await.unwrap());
        }
        #[cfg(feature = "postgres")]
        if self.url.starts_with("postgres") {
            let config = session_manager::PostgresConfig::new(self.url.clone()).schema(&self.name);
            return Arc::new(
                session_manager::PostgresStore::connect(config)
                    .await
                    .unwrap(),
            );
        }
        panic!("no store for {}", self.url)
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store handle on this test's storage that dials `url` (the same
    /// server, through a fault proxy) with short timeouts and a
    /// subscriber ping every 200 ms, so faults surface within a second.
    pub async fn faulty_handle(&self, url: &str) -> Arc<dyn SessionStore> {
        let short = Duration::from_millis(300);
        #[cfg(feature = "redis")]
        if url.starts_with("redis") {
            let config = session_manager::RedisConfig::new(url)
                .prefix(self.prefix())
                .connect_timeout(short)
                .response_timeout(short)
                .subscriber_ping(Duration::from_millis(200));
            return Arc::new(session_manager::RedisStore::connect(config).await.unwrap());
        }
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres") {
            let pool = session_manager::sql::PoolConfig {
                acquire_timeout: short,
                operation_timeout: Some(short * 2),
                ..session_manager::sql::PoolConfig::default()
            };
            let config = session_manager::PostgresConfig::new(url)
                .schema(&self.name)
                .pool(pool);
            return Arc::new(
                session_manager::PostgresStore::connect(config)
                    .await
                    .unwrap(),
            );
        }
        panic!("no store for {url}")
    }

    /// Removes everything stored under this test's name.
    pub async fn cleanup(self) {
        #[cfg(feature = "postgres")]
        if self.url.starts_with("postgres") {
            let config = session_manager::PostgresConfig::new(self.url.clone()).schema(&self.name);
            let store = session_manager::PostgresStore::connect(config)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.name
            )))
            .execute(store.pool())
            .await
            .unwrap();
            return;
        }
        let store = self.handle().await;
        let mut cursor = None;
        loop {
            let page = store.scan(cursor.as_ref(), 500).await.unwrap();
            for id in &page.ids {
                store.delete(id).await.unwrap();
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert!(store.scan(None, 1).await.unwrap().ids.is_empty());
    }
}
