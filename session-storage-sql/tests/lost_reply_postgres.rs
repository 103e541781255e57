//! A real lost reply on Postgres: the test kit's fault proxy passes the
//! statement to the server, which runs and commits it, then drops the
//! reply and closes the connection. The retry with the same write id
//! reports the original outcome and the row holds the write once.
#![cfg(feature = "postgres")]

#[path = "common/postgres.rs"]
mod pg;

use std::time::Duration;

use session_core::{Metadata, SessionId, SessionStore, StoreConfig, Ttl, Update, Version, WriteId};
use session_storage_sql::{NotifyMode, PoolConfig, PostgresStore};
use session_testkit::{FaultProxy, url as proxy_url};

fn md(k: &str, v: &str) -> Metadata {
    Metadata::new().with(k, v).unwrap()
}

/// Retries `op` while it fails transiently (the pool replaces the cut
/// connection), at most 50 times.
async fn retried<T, F: std::future::Future<Output = session_core::Result<T>>>(
    mut op: impl FnMut() -> F,
) -> T {
    for _ in 0..50 {
        match op().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("not transient: {e:?}"),
        }
    }
    panic!("still failing after 50 tries");
}

#[test]
fn lost_replies_are_retried_to_their_original_outcome() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = pg::url();
        let proxy = FaultProxy::start(proxy_url::upstream_of(&url).unwrap())
            .await
            .unwrap();
        // In the clear: the proxy finds the armed request by its bytes.
        let proxied = proxy_url::plaintext(&proxy_url::through(&url, proxy.addr()).unwrap());
        let schema = pg::schema_name();
        let admin = pg::admin(&url);
        let outcome = tokio::spawn({
            let (url, schema) = (url.clone(), schema.clone());
            async move {
                let direct = PostgresStore::connect(
                    pg::config(&url, &schema, StoreConfig::default()).listen(false),
                )
                .await
                .unwrap();
                // One connection and no notifier's, so the armed reply is
                // the statement's.
                let s = PostgresStore::connect(
                    pg::config(&proxied, &schema, StoreConfig::default())
                        .listen(false)
                        .notify(NotifyMode::Off)
                        .pool(PoolConfig {
                            max_connections: 1,
                            ..PoolConfig::default()
                        }),
                )
                .await
                .unwrap();
                // Warm: the connection is open and its statements prepared.
                let warm = SessionId::generate();
                s.create(&warm, &md("k", "v"), Ttl::Default).await.unwrap();
                let _ = s
                    .update(&warm, Version::INITIAL, &md("k", "w"))
                    .await
                    .unwrap();

                let id = SessionId::generate();
                let c = WriteId::generate();
                let me = md("who", "me");
                proxy.drop_replies_to(1, c.to_string());
                let first = s.create_once(&id, &me, Ttl::Default, &c).await;
                assert!(
                    first.is_err(),
                    "the reply was not lost: {first:?}, dropped {}, connections {}",
                    proxy.stats().replies_dropped,
                    proxy.stats().accepted
                );
                assert_eq!(proxy.stats().replies_dropped, 1);
                assert_eq!(
                    direct.version(&id).await.unwrap(),
                    Some(Version::INITIAL),
                    "the server did not commit the create"
                );
                let again = retried(|| s.create_once(&id, &me, Ttl::Default, &c)).await;
                assert_eq!(again, Some(Version::INITIAL));

                let w = WriteId::generate();
                let mine = md("who", "update");
                proxy.drop_replies_to(1, w.to_string());
                let first = s.update_once(&id, Version::INITIAL, &mine, &w).await;
                assert!(first.is_err(), "the reply was not lost: {first:?}");
                assert_eq!(proxy.stats().replies_dropped, 2);
                assert_eq!(direct.version(&id).await.unwrap(), Some(Version::new(2)));
                assert_eq!(
                    direct
                        .update(&id, Version::new(2), &md("who", "other"))
                        .await
                        .unwrap(),
                    Update::Applied(Version::new(3))
                );
                let again = retried(|| s.update_once(&id, Version::INITIAL, &mine, &w)).await;
                assert_eq!(again, Update::Applied(Version::new(2)));
                let rec = direct.load(&id).await.unwrap().unwrap();
                assert_eq!(
                    (rec.version, rec.metadata.get("who")),
                    (Version::new(3), Some("other")),
                    "the retry wrote again"
                );
                assert_eq!(
                    s.update(&id, Version::INITIAL, &mine).await.unwrap(),
                    Update::Conflict {
                        current: Version::new(3)
                    }
                );
            }
        })
        .await;
        pg::drop_schema(&admin, &schema).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    });
}
