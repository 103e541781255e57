//! The two-node scenario on real stores (features `redis`, `postgres`,
//! `sqlite`): servers from `SESSION_TEST_REDIS_URL` /
//! `SESSION_TEST_POSTGRES_URL` (`cargo xtask test` sets them); unset, the
//! tests fail and say how to provide one. Each test uses its own key prefix
//! / schema / database file and removes it.
#![cfg(any(feature = "redis", feature = "postgres", feature = "sqlite"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use session_core::{SessionId, SessionStore, WorkloadId, keys};
use session_manager::ValidationPolicy;

fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn math_sid(store: &dyn SessionStore, id: &SessionId) -> Option<String> {
    let rec = store.peek(id).await.unwrap()?;
    keys::backend_session(&rec.metadata, &WorkloadId::parse("math").unwrap()).map(str::to_owned)
}

/// Polls until `url` answers 404 for `sid` (push: until the change event
/// arrives); returns how long that took.
async fn until_404(url: &str, sid: &str) -> Duration {
    let t = Instant::now();
    loop {
        if raw_post(url, sid, LIST_TOOLS).await == 404 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still served after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn scenario(
    store_a: Arc<dyn SessionStore>,
    store_b: Arc<dyn SessionStore>,
    policy: ValidationPolicy,
) {
    let c = Cluster::start_on2(store_a, store_b, policy, |_| {}).await;
    let on_a = client(&c.a.url()).await;
    let id = SessionId::parse(&on_a.session_id).unwrap();
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "1"
    );
    let on_b = resume(&c.b.url(), &on_a).await;
    assert_eq!(
        text_of(
            &call(&on_b, "math__add", json!({"a": 1, "b": 2}))
                .await
                .unwrap()
        ),
        "3"
    );
    assert_eq!(
        text_of(&call(&on_b, "math__counter", json!({})).await.unwrap()),
        "2"
    );
    let before = math_sid(&*c.store, &id).await.unwrap();

    c.math.forget_sessions().await;
    assert_eq!(
        text_of(&call(&on_b, "math__counter", json!({})).await.unwrap()),
        "1"
    );
    let after = math_sid(&*c.store, &id).await.unwrap();
    assert_ne!(before, after);
    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "2"
    );
    assert_eq!(c.math.session_ids().await, vec![after]);

    assert_eq!(raw_delete(&c.b.url(), &on_a.session_id).await, 200);
    if policy == ValidationPolicy::EveryAccess {
        // Every access validates: the very next request is refused.
        assert_eq!(
            raw_post(&c.a.url(), &on_a.session_id, LIST_TOOLS).await,
            404
        );
    }
    let waited = until_404(&c.a.url(), &on_a.session_id).await;
    eprintln!("{policy:?}: node A answered 404 after {waited:?}");
    assert_eq!(c.math.open_sessions().await, 0);
    assert_eq!(c.text.open_sessions().await, 0);
    c.stop().await;
}

#[cfg(feature = "redis")]
async fn purge(store: &dyn SessionStore) {
    let mut cursor = None;
    loop {
        let page = store.scan(cursor.as_ref(), 256).await.unwrap();
        for id in &page.ids {
            let _ = store.delete(id).await;
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => return,
        }
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use session_manager::{RedisConfig, RedisStore};

    async fn handle(prefix: &str) -> Arc<dyn SessionStore> {
        let url =
            session_core::testing::require_url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        let cfg = RedisConfig::new(url).prefix(prefix);
        Arc::new(RedisStore::connect(cfg).await.expect("connect to Redis"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_heal_and_delete_on_redis() {
        for policy in [ValidationPolicy::EveryAccess, ValidationPolicy::Push] {
            let prefix = format!("gwtest:{}:", unique());
            let (a, b) = (handle(&prefix).await, handle(&prefix).await);
            scenario(a.clone(), b, policy).await;
            purge(&*a).await;
        }
    }

    /// A client session expires in Redis (2 s TTL, nobody uses it): both
    /// nodes used it, and each backend session gets exactly one `DELETE`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_session_deletes_its_backend_sessions_once_on_redis() {
        let prefix = format!("gwtest:{}:", unique());
        let url =
            session_core::testing::require_url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        let ttl = session_core::StoreConfig::new(Duration::from_secs(2)).unwrap();
        let handle = || async {
            let cfg = RedisConfig::new(url.clone()).prefix(&prefix).store(ttl);
            let s: Arc<dyn SessionStore> =
                Arc::new(RedisStore::connect(cfg).await.expect("connect to Redis"));
            s
        };
        let (a, b) = (handle().await, handle().await);
        let c = Cluster::start_on2(a.clone(), b, ValidationPolicy::EveryAccess, |cfg| {
            cfg.reap_interval = Duration::from_millis(100);
        })
        .await;
        let on_a = client(&c.a.url()).await;
        let on_b = resume(&c.b.url(), &on_a).await;
        call(&on_b, "math__counter", json!({})).await.unwrap();
        call(&on_a, "text__echo", json!({"text": "x"}))
            .await
            .unwrap();
        let id = SessionId::parse(&on_a.session_id).unwrap();
        let t = Instant::now();
        while c.math.open_sessions().await + c.text.open_sessions().await > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "backend sessions still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(a.peek(&id).await.unwrap().is_none(), "expired in Redis");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!((c.math.deletes(), c.text.deletes()), (1, 1));
        drop((on_a, on_b));
        c.stop().await;
        purge(&*a).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use session_manager::{PostgresConfig, PostgresStore};

    async fn handle(schema: &str) -> Arc<PostgresStore> {
        let url = session_core::testing::require_url(
            "SESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        );
        Arc::new(
            PostgresStore::connect(PostgresConfig::new(url).schema(schema))
                .await
                .expect("connect to Postgres"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_heal_and_delete_on_postgres() {
        for policy in [ValidationPolicy::EveryAccess, ValidationPolicy::Push] {
            let schema = format!("gwtest_{}", unique());
            let (a, b) = (handle(&schema).await, handle(&schema).await);
            scenario(a.clone(), b, policy).await;
            // The schema name is ours: hex digits only.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA \"{schema}\" CASCADE"
            )))
            .execute(a.pool())
            .await
            .expect("drop the test schema");
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    /// Both nodes open the store from a `sqlite://` URL the way the binary
    /// does (`--store sqlite://PATH?mode=rwc`), each with its own handle on one file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_heal_and_delete_on_sqlite_from_a_store_url() {
        let dir = std::env::temp_dir().join(format!("gwtest-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("sessions.db").display());
        let open = || async {
            session_gateway::config::connect_store(&url, None)
                .await
                .expect("open the SQLite store")
        };
        let (a, b) = (open().await, open().await);
        scenario(a, b, ValidationPolicy::EveryAccess).await;
        std::fs::remove_dir_all(&dir).expect("remove the test database");
    }
}
