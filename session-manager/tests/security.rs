//! Security checks on real stores (features `redis`, `postgres`; memory
//! always):
//!
//! - the `tracing` output of a full manager workload, every level and every
//!   span field included, never holds a metadata value, a backend session
//!   id, the identity binding (issuer or subject) or the store URL's
//!   password; neither do the errors the workload meets;
//! - a caller with the wrong identity changes nothing in storage: not the
//!   metadata, not the version, not the expiry (Redis `PEXPIRETIME`,
//!   Postgres `expires_at`, compared exactly), while a `touch` does move
//!   it (so the check can see a slide).

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use common::{Counters, TestFactory};
use session_core::testing::logs::CapturedLogs;
use session_core::{Binding, Metadata, SessionId, SessionStore, WorkloadId, keys};
use session_manager::{Error, SessionManager, ValidationPolicy};

const META_VALUE: &str = "MetaValue7c1eSecret";
const META_VALUE_2: &str = "MetaValue8d2fSecret";
const BACKEND_SID: &str = "BackendSid91abSecret";
const BACKEND_SID_2: &str = "BackendSid02bcSecret";
const ISSUER: &str = "https://issuer5d2f.example";
const SUBJECT: &str = "Subject3e8aSecret";
const PASSWORD: &str = "UrlPassw0rd44c1";

fn secrets() -> [&'static str; 7] {
    [
        META_VALUE,
        META_VALUE_2,
        BACKEND_SID,
        BACKEND_SID_2,
        ISSUER,
        SUBJECT,
        PASSWORD,
    ]
}

fn workload(name: &str) -> WorkloadId {
    WorkloadId::parse(name).unwrap()
}

fn owner() -> Binding {
    Binding::identity(ISSUER, SUBJECT).unwrap()
}

fn mallory() -> Binding {
    Binding::identity("https://other.example", "mallory").unwrap()
}

fn node(
    store: Arc<dyn SessionStore>,
    name: &str,
    counters: &Arc<Counters>,
) -> SessionManager<TestFactory> {
    SessionManager::builder(store, TestFactory::new(counters, name))
        .policy(ValidationPolicy::EveryAccess)
        .build()
}

/// Metadata with every kind of secret: a plain value, two backend
/// session ids, the identity binding.
fn secret_metadata() -> Metadata {
    let md = Metadata::new().with("tenant", META_VALUE).unwrap();
    let md = keys::with_backend(&md, &workload("github"), BACKEND_SID).unwrap();
    let md = keys::with_backend(&md, &workload("jira"), BACKEND_SID_2).unwrap();
    keys::with_binding(&md, &owner()).unwrap()
}

/// Every manager operation, successes and errors, on two nodes over two
/// handles of one storage. Returns the errors' `Display` and `Debug`.
async fn full_workload(a_store: Arc<dyn SessionStore>, b_store: Arc<dyn SessionStore>) -> String {
    let mut shown = String::new();
    let counters = Arc::new(Counters::default());
    let a = node(a_store, "a", &counters);
    let b = node(b_store, "b", &counters);
    let mut show = |e: &Error| writeln!(shown, "{e}\n{e:?}").unwrap();

    let id = a.create(secret_metadata()).await.unwrap().id().clone();
    a.get(&id).await.unwrap();
    a.get_for(&id, &owner()).await.unwrap();
    a.update(&id, |md| md.with("tenant", META_VALUE_2))
        .await
        .unwrap();
    // An edit that fails, and one the limits refuse.
    show(
        &a.update(&id, |_| Err::<Metadata, _>("refused edit"))
            .await
            .unwrap_err(),
    );
    show(
        &a.update(&id, |md| md.with("big", "x".repeat(9000)))
            .await
            .unwrap_err(),
    );
    // Restore on a second node, for the owner and refused for another.
    b.get_for(&id, &owner()).await.unwrap();
    show(&b.get_for(&id, &mallory()).await.unwrap_err());
    show(&b.terminate_for(&id, &mallory()).await.unwrap_err());
    a.notify_backend_expired(&id, &workload("github"))
        .await
        .unwrap();
    b.get(&id).await.unwrap();
    a.evict_backend(&workload("jira")).await.unwrap();
    b.get_for(&id, &owner()).await.unwrap();
    // Two-phase creation bound to the caller.
    let reserved = a.reserve_for(&owner()).await.unwrap();
    show(&b.get(&reserved).await.unwrap_err());
    a.activate(&reserved, secret_metadata()).await.unwrap();
    assert!(b.terminate_for(&reserved, &owner()).await.unwrap());
    // Terminate, then every operation on the dead session.
    assert!(a.terminate(&id).await.unwrap());
    show(&b.get(&id).await.unwrap_err());
    show(
        &a.update(&id, |md| md.with("tenant", META_VALUE))
            .await
            .unwrap_err(),
    );
    let _ = a.notify_backend_expired(&id, &workload("github")).await;
    show(&a.activate(&id, secret_metadata()).await.unwrap_err());
    show(&a.get(&SessionId::generate()).await.unwrap_err());
    a.shutdown().await;
    b.shutdown().await;
    counters.assert_balanced();
    shown
}

/// Runs the workload with every span and event captured on this thread
/// (a current-thread runtime, so the stores' and the manager's own tasks
/// log here too), then checks logs and errors for every secret.
async fn check_workload(open: impl AsyncFn() -> Arc<dyn SessionStore>, mut shown: String) {
    let logs = CapturedLogs::new();
    {
        let _guard = logs.set_default();
        let a = open().await;
        let b = open().await;
        shown.push_str(&full_workload(a, b).await);
        // Let background tasks (closers, listeners) log what they will.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = logs.text();
    // The capture works: operation spans and their session ids are there.
    for expected in [
        "session_manager.update",
        "session_manager.restore",
        "session_id=",
    ] {
        assert!(
            logged.contains(expected),
            "no {expected:?} in the captured logs"
        );
    }
    for secret in secrets() {
        assert!(!logged.contains(secret), "{secret:?} was logged:\n{logged}");
        assert!(
            !shown.contains(secret),
            "{secret:?} is in an error:\n{shown}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn memory_workload_logs_no_secret() {
    let store: Arc<dyn SessionStore> = session_manager::connect("memory://").await.unwrap();
    check_workload(async || store.clone(), String::new()).await;
}

/// The URL of a test server with `user:PASSWORD@` in its userinfo.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn with_password(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{PASSWORD}@{rest}")
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::*;

    fn url() -> String {
        common::url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    }

    async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Deletes every key under `prefix`.
    async fn clean(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .unwrap();
            for key in keys {
                let _: () = redis::cmd("DEL").arg(key).query_async(conn).await.unwrap();
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn redis_workload_logs_no_secret() {
        let url = url();
        let mut conn = raw(&url).await;
        // A user of our own whose password is the secret, removed after.
        let tag = SessionId::generate().as_str().replace('-', "");
        let user = format!("secrets_{tag}");
        let prefix = format!("secrets_{tag}:");
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("on")
            .arg(format!(">{PASSWORD}"))
            .arg(format!("~{prefix}*"))
            .arg("&*")
            .arg("+@all")
            .query_async(&mut conn)
            .await
            .unwrap();
        let store_url = format!("{}?prefix={prefix}", with_password(&url, &user));
        // A refused connection with the password in its URL, for its errors.
        let mut shown = String::new();
        let refused = session_manager::ConnectOptions::new()
            .connect_timeout(Duration::from_millis(300))
            .connect(&with_password("redis://127.0.0.1:1", &user))
            .await;
        if let Err(e) = refused {
            writeln!(shown, "{e}\n{e:?}").unwrap();
        }
        check_workload(
            async || session_manager::connect(&store_url).await.unwrap(),
            shown,
        )
        .await;
        clean(&mut conn, &prefix).await;
        let _: () = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&user)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// A wrong caller changes nothing in Redis, not even `PEXPIRETIME`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_wrong_caller_changes_nothing() {
        let url = url();
        let mut conn = raw(&url).await;
        let prefix = format!("ident_{}:", SessionId::generate().as_str().replace('-', ""));
        let store_url = format!("{url}?prefix={prefix}&ttl=60s&slide_fraction=0");
        let expiry = {
            let prefix = prefix.clone();
            let url = url.clone();
            move |id: SessionId| {
                let key = format!("{prefix}{}", id.as_str());
                let url = url.clone();
                async move {
                    let mut conn = raw(&url).await;
                    let at: i64 = redis::cmd("PEXPIRETIME")
                        .arg(key)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    assert!(at > 0, "a session key without an expiry: {at}");
                    at
                }
            }
        };
        super::wrong_caller_changes_nothing(&store_url, expiry).await;
        clean(&mut conn, &prefix).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres_store {
    use super::*;

    fn url() -> String {
        common::url(
            "SESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )
    }

    async fn admin(url: &str) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap()
    }

    async fn drop_schema(url: &str, schema: &str) {
        let pool = admin(url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn postgres_workload_logs_no_secret() {
        let url = url();
        let schema = format!(
            "secrets_{}",
            SessionId::generate().as_str().replace('-', "")
        );
        let user = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map_or("postgres", |(userinfo, _)| {
                userinfo.split(':').next().unwrap_or("postgres")
            })
            .to_owned();
        let options = format!("?schema={schema}&cleanup=off");
        let secret_url = format!("{}{options}", with_password(&url, &user));
        // With trust authentication the password is accepted and unused;
        // where the server checks it, it is refused: then the refusal is
        // what is checked, and the workload runs on the plain URL.
        let mut shown = String::new();
        let open_url = match session_manager::connect(&secret_url).await {
            Ok(_) => secret_url,
            Err(e) => {
                writeln!(shown, "{e}\n{e:?}").unwrap();
                format!("{url}{options}")
            }
        };
        check_workload(
            async || session_manager::connect(&open_url).await.unwrap(),
            shown,
        )
        .await;
        drop_schema(&url, &schema).await;
    }

    /// A wrong caller changes nothing in Postgres, not even `expires_at`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_wrong_caller_changes_nothing() {
        let url = url();
        let schema = format!("ident_{}", SessionId::generate().as_str().replace('-', ""));
        let store_url = format!("{url}?schema={schema}&ttl=60s&slide_fraction=0&cleanup=off");
        let expiry = {
            let (url, schema) = (url.clone(), schema.clone());
            move |id: SessionId| {
                let (url, schema) = (url.clone(), schema.clone());
                async move {
                    let pool = admin(&url).await;
                    // Microseconds since the epoch: exact, not rounded.
                    let at: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT (extract(epoch FROM expires_at) * 1000000)::bigint \
                         FROM \"{schema}\".vmcp_sessions WHERE id = $1"
                    )))
                    .bind(id.as_str())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    pool.close().await;
                    at
                }
            }
        };
        super::wrong_caller_changes_nothing(&store_url, expiry).await;
        drop_schema(&url, &schema).await;
    }
}

/// A session bound to the owner; a wrong caller's `get_for` and
/// `terminate_for` on a node that caches it and on one that does not are
/// refused and leave the stored metadata, version and absolute expiry
/// exactly as they were. Then the owner is served on a fresh node, and a
/// `touch` moves the expiry: the same measurement sees a slide.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn wrong_caller_changes_nothing<F, Fut>(store_url: &str, expiry: F)
where
    F: Fn(SessionId) -> Fut,
    Fut: Future<Output = i64>,
{
    let counters = Arc::new(Counters::default());
    let open = async || session_manager::connect(store_url).await.unwrap();
    let store = open().await;
    let a = node(open().await, "a", &counters);
    let b = node(open().await, "b", &counters);
    let id = a.create(secret_metadata()).await.unwrap().id().clone();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = store.peek(&id).await.unwrap().expect("stored");
    let expires_before = expiry(id.clone()).await;
    for n in [&a, &b, &a, &b] {
        assert!(matches!(
            n.get_for(&id, &mallory()).await,
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            n.terminate_for(&id, &mallory()).await,
            Err(Error::Forbidden { .. })
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = store.peek(&id).await.unwrap().expect("still stored");
    assert_eq!(after.version, before.version, "a refused caller wrote");
    assert_eq!(after.metadata, before.metadata, "a refused caller edited");
    assert_eq!(
        expiry(id.clone()).await,
        expires_before,
        "a refused caller moved the expiry"
    );
    assert!(
        b.cached(&id).is_none(),
        "a refused caller's restore was cached"
    );
    // The owner is served, and a slide is visible to the same measurement.
    let c = node(open().await, "c", &counters);
    c.get_for(&id, &owner()).await.unwrap();
    assert!(store.touch(&id).await.unwrap());
    assert!(
        expiry(id.clone()).await > expires_before,
        "touch did not move the expiry: the check cannot see a slide"
    );
    assert!(c.terminate_for(&id, &owner()).await.unwrap());
    for n in [a, b, c] {
        n.shutdown().await;
    }
    counters.assert_balanced();
}
