//! Network faults between the store and Postgres, injected by
//! `session_testkit::FaultProxy` (see `session_testkit::faults` for what
//! each case asserts): a blackhole longer than the operation timeout,
//! connections reset under load, a stalled `LISTEN` connection, and
//! replies lost after the server applied the write. Each case prints the
//! recovery time it measured.
#![cfg(feature = "postgres")]

#[path = "common/postgres.rs"]
mod pg;

use std::sync::Arc;
use std::time::Duration;

use pg::PgHarness;
use session_core::{SessionStore, StoreConfig};
use session_storage_sql::{NotifyMode, PoolConfig, PostgresConfig, PostgresStore};
use session_testkit::{FaultProxy, faults, url};

/// How long an operation waits for a connection.
const ACQUIRE: Duration = Duration::from_millis(500);
/// The server-side statement timeout.
const STATEMENT: Duration = Duration::from_millis(300);
/// The client-side bound on every operation: without it, an operation on
/// a stalled connection waits forever (the server cannot time it out).
const OPERATION: Duration = Duration::from_secs(1);

fn store_config() -> StoreConfig {
    StoreConfig::new(Duration::from_secs(60)).unwrap()
}

/// The store config on `h`'s schema with short timeouts.
fn config(h: &PgHarness, url: &str) -> PostgresConfig {
    pg::config(url, &h.schema, store_config()).pool(PoolConfig {
        max_connections: 4,
        acquire_timeout: ACQUIRE,
        statement_timeout: Some(STATEMENT),
        operation_timeout: Some(OPERATION),
        ..PoolConfig::default()
    })
}

/// A proxy in front of the test database and the URL that dials it.
async fn proxy(h: &PgHarness) -> (FaultProxy, String) {
    let proxy = FaultProxy::start(url::upstream_of(&h.url).unwrap())
        .await
        .unwrap();
    // Lost replies are matched on request bytes: no TLS.
    let through = url::plaintext(&url::through(&h.url, proxy.addr()).unwrap());
    (proxy, through)
}

async fn connect(cfg: PostgresConfig) -> PostgresStore {
    PostgresStore::connect(cfg).await.expect("connect")
}

#[test]
fn postgres_blackhole_times_out_and_recovers() {
    session_core::testing::run::<PgHarness, _, _>(|h| async move {
        let (proxy, url) = proxy(&h).await;
        let store = connect(config(&h, &url)).await;
        let took = faults::paused_ops_time_out(&store, &proxy, OPERATION).await;
        eprintln!("postgres: recovered {took:?} after a blackhole");
    });
}

#[test]
fn postgres_resets_under_load() {
    session_core::testing::run::<PgHarness, _, _>(|h| async move {
        let (proxy, url) = proxy(&h).await;
        let store: Arc<dyn SessionStore> = Arc::new(connect(config(&h, &url)).await);
        let took = faults::resets_under_load(store, &proxy, Duration::from_millis(1500)).await;
        eprintln!("postgres: recovered {took:?} after the last reset");
    });
}

#[test]
fn postgres_stalled_listener_resyncs() {
    session_core::testing::run::<PgHarness, _, _>(|h| async move {
        let (proxy, url) = proxy(&h).await;
        let watcher = connect(config(&h, &url)).await;
        let writer = connect(config(&h, &h.url)).await;
        // Longer than the 3 s silence after which a listener counts a gap.
        let stall = Duration::from_secs(4);
        let took = faults::stalled_stream_resyncs(&watcher, &writer, &proxy, stall).await;
        eprintln!("postgres: stream delivering {took:?} after a 4 s stall");
    });
}

#[test]
fn postgres_dropped_replies_apply_at_most_once() {
    session_core::testing::run::<PgHarness, _, _>(|h| async move {
        let (proxy, url) = proxy(&h).await;
        // One pooled connection, no notifier or listener traffic: the
        // request whose reply is lost is the store's own statement.
        let cfg = config(&h, &url)
            .pool(PoolConfig {
                max_connections: 1,
                acquire_timeout: ACQUIRE,
                statement_timeout: Some(STATEMENT),
                operation_timeout: Some(OPERATION),
                ..PoolConfig::default()
            })
            .notify(NotifyMode::Off)
            .listen(false);
        let store = connect(cfg).await;
        let report = faults::dropped_replies(&store, &proxy).await;
        assert!(report.applied_unacknowledged() >= 3, "{report:?}");
        assert!(report.all_honest(), "{report:?}");
    });
}
