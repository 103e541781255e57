//! Network faults between the store and Redis, injected by
//! `session_testkit::FaultProxy` (see `session_testkit::faults` for what
//! each case asserts): a blackhole longer than the response timeout,
//! connections reset under load, a stalled change-stream connection, and
//! replies lost after the server applied the write, on a standalone
//! server and (feature `cluster`) on a Redis Cluster with one proxy per
//! node. Each case prints the recovery time it measured.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, RedisHarness, Standalone};
use session_core::SessionStore;
use session_storage_redis::{RedisConfig, RedisStore};
use session_testkit::{FaultProxy, faults, url};

/// The response timeout of every store under test.
const TIMEOUT: Duration = Duration::from_millis(300);

/// A store on `h`'s prefix whose every connection goes through a proxy.
async fn through_proxy<B: Backend>(h: &RedisHarness<B>) -> (RedisStore, FaultProxy) {
    let direct = common::standalone_url();
    let proxy = FaultProxy::start(url::upstream_of(&direct).unwrap())
        .await
        .unwrap();
    let cfg = RedisConfig::new(url::through(&direct, proxy.addr()).unwrap());
    (connect(h, cfg).await, proxy)
}

async fn connect<B: Backend>(h: &RedisHarness<B>, cfg: RedisConfig) -> RedisStore {
    let cfg = cfg
        .prefix(h.prefix.clone())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(TIMEOUT)
        .subscriber_ping(Duration::from_millis(200));
    RedisStore::connect(cfg)
        .await
        .expect("connect through the proxy")
}

#[test]
fn standalone_blackhole_times_out_and_recovers() {
    session_core::testing::run::<RedisHarness<Standalone>, _, _>(|h| async move {
        let (store, proxy) = through_proxy(&h).await;
        let took = faults::paused_ops_time_out(&store, &proxy, TIMEOUT).await;
        eprintln!("redis standalone: recovered {took:?} after a blackhole");
    });
}

#[test]
fn standalone_resets_under_load() {
    session_core::testing::run::<RedisHarness<Standalone>, _, _>(|h| async move {
        let (store, proxy) = through_proxy(&h).await;
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let took = faults::resets_under_load(store, &proxy, Duration::from_millis(1500)).await;
        eprintln!("redis standalone: recovered {took:?} after the last reset");
    });
}

#[test]
fn standalone_stalled_stream_resyncs() {
    session_core::testing::run::<RedisHarness<Standalone>, _, _>(|h| async move {
        let (watcher, proxy) = through_proxy(&h).await;
        let writer = connect(&h, Standalone::config()).await;
        let took =
            faults::stalled_stream_resyncs(&watcher, &writer, &proxy, Duration::from_secs(2)).await;
        eprintln!("redis standalone: stream delivering {took:?} after a 2 s stall");
    });
}

#[test]
fn standalone_dropped_replies_apply_at_most_once() {
    session_core::testing::run::<RedisHarness<Standalone>, _, _>(|h| async move {
        let (store, proxy) = through_proxy(&h).await;
        let report = faults::dropped_replies(&store, &proxy).await;
        // One EVALSHA per write: the request whose reply is lost is the
        // write itself, so the fault really is "applied, reply lost".
        assert!(report.applied_unacknowledged() >= 3, "{report:?}");
        assert!(report.all_honest(), "{report:?}");
    });
}

/// A cluster store on `h`'s prefix whose every connection goes through a
/// proxy: one per node, the seeds given as proxy URLs and every advertised
/// node address mapped to its proxy.
#[cfg(feature = "cluster")]
async fn cluster_through_proxies(
    h: &RedisHarness<common::Cluster>,
) -> (RedisStore, Vec<FaultProxy>) {
    let mut proxies = Vec::new();
    let mut seeds = Vec::new();
    let mut map = Vec::new();
    for node in common::cluster_urls() {
        let upstream = url::upstream_of(&node).unwrap();
        let proxy = FaultProxy::start(upstream).await.unwrap();
        seeds.push(url::through(&node, proxy.addr()).unwrap());
        map.push((upstream.to_string(), proxy.addr().to_string()));
        proxies.push(proxy);
    }
    let mut cfg = RedisConfig::cluster(seeds);
    for (advertised, dial) in map {
        cfg = cfg.map_node(advertised, dial);
    }
    (connect(h, cfg).await, proxies)
}

#[cfg(feature = "cluster")]
mod cluster {
    use super::*;
    use common::Cluster;

    #[test]
    fn cluster_blackhole_times_out_and_recovers() {
        session_core::testing::run::<RedisHarness<Cluster>, _, _>(|h| async move {
            let (store, proxies) = cluster_through_proxies(&h).await;
            let took = faults::paused_ops_time_out(&store, &proxies[..], TIMEOUT).await;
            eprintln!("redis cluster: recovered {took:?} after a blackhole");
        });
    }

    #[test]
    fn cluster_resets_under_load() {
        session_core::testing::run::<RedisHarness<Cluster>, _, _>(|h| async move {
            let (store, proxies) = cluster_through_proxies(&h).await;
            let store: Arc<dyn SessionStore> = Arc::new(store);
            let took =
                faults::resets_under_load(store, &proxies[..], Duration::from_millis(1500)).await;
            eprintln!("redis cluster: recovered {took:?} after the last reset");
        });
    }

    #[test]
    fn cluster_stalled_stream_resyncs() {
        session_core::testing::run::<RedisHarness<Cluster>, _, _>(|h| async move {
            let (watcher, proxies) = cluster_through_proxies(&h).await;
            let writer = connect(&h, Cluster::config()).await;
            let took = faults::stalled_stream_resyncs(
                &watcher,
                &writer,
                &proxies[..],
                Duration::from_secs(2),
            )
            .await;
            eprintln!("redis cluster: stream delivering {took:?} after a 2 s stall");
        });
    }

    #[test]
    fn cluster_dropped_replies_apply_at_most_once() {
        session_core::testing::run::<RedisHarness<Cluster>, _, _>(|h| async move {
            let (store, proxies) = cluster_through_proxies(&h).await;
            let report = faults::dropped_replies(&store, &proxies[..]).await;
            // Applied at most once (asserted by the case). The cluster
            // client re-sends a command whose connection broke, so the
            // caller may get that retry's answer instead of an error:
            // `create` and `update` carry a write id, so their retry returns
            // the original outcome; `delete` carries none (documented), so
            // its retry may report `false` for the delete it made.
            let dishonest: Vec<_> = report.outcomes.iter().filter(|o| !o.honest).collect();
            eprintln!("redis cluster: answered by the client's retry: {dishonest:?}");
            assert!(dishonest.iter().all(|o| o.op == "delete"), "{report:?}");
        });
    }
}
