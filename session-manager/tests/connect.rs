//! `connect` against real servers: options from the URL take effect (seen
//! with raw clients), a Unix socket, and every failure class a deployment
//! meets — a down server, a silent one, a missing database, a rejected
//! user or password, TLS that fails — with the time each takes to fail
//! printed. Servers come from `SESSION_TEST_REDIS_URL` /
//! `SESSION_TEST_POSTGRES_URL` (`cargo xtask test` finds local ones).

use std::time::{Duration, Instant};

use session_core::{Error, Metadata, Misconfiguration, SessionId, SessionStore, Ttl};
use session_manager::{ConnectError, ConnectOptions, connect};

/// A name no other test uses.
fn unique(stem: &str) -> String {
    format!(
        "{stem}_{}",
        SessionId::generate().as_str().replace('-', "")[..16].to_lowercase()
    )
}

/// `url` with `query` appended.
fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every form of `err` a user or a log sees: no password in any, and no
/// message in the chain repeats its source's text.
fn check_shown(err: &ConnectError, secret: Option<&str>) -> String {
    let chain = session_core::display_chain(err);
    if let Some(secret) = secret {
        for shown in [format!("{err:?}"), err.to_string(), chain.clone()] {
            assert!(!shown.contains(secret), "password shown: {shown}");
        }
    }
    let mut level: &dyn std::error::Error = err;
    while let Some(source) = level.source() {
        let (top, below) = (level.to_string(), source.to_string());
        assert!(
            !top.contains(&below),
            "{top:?} repeats its source {below:?} (chain: {chain})"
        );
        level = source;
    }
    chain
}

/// The store error inside a [`ConnectError::Store`].
fn store_error(err: &ConnectError) -> &Error {
    match err {
        ConnectError::Store { source, .. } => source,
        other => panic!("expected a store error, got {other:?}"),
    }
}

fn misconfiguration(err: &ConnectError) -> Misconfiguration {
    match store_error(err) {
        Error::Misconfigured { problem, .. } => *problem,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

async fn fails(url: &str) -> (ConnectError, Duration) {
    let started = Instant::now();
    let Err(err) = connect(url).await else {
        panic!("{url}: connected")
    };
    (err, started.elapsed())
}

async fn round_trip(store: &dyn SessionStore) -> SessionId {
    let id = SessionId::generate();
    let md = Metadata::new().with("k", "v").unwrap();
    assert!(
        store
            .create(&id, &md, Ttl::Default)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.load(&id).await.unwrap().unwrap().metadata, md);
    id
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::*;

    fn url() -> String {
        session_core::testing::require_url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    }

    /// `host:port` of the test server.
    fn authority() -> String {
        let url = url();
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.split(['/', '?']).next().unwrap().to_owned()
    }

    async fn raw() -> redis::aio::MultiplexedConnection {
        redis::Client::open(url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefix_and_ttl_from_the_url_are_what_redis_holds() {
        let prefix = format!("{}:", unique("conn"));
        let store = connect(&with_query(&url(), &format!("prefix={prefix}&ttl=45s")))
            .await
            .unwrap();
        assert_eq!(store.config().ttl(), Duration::from_secs(45));
        let id = round_trip(&*store).await;
        let mut raw = raw().await;
        let key = format!("{prefix}{}", id.as_str());
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((40_000..=45_000).contains(&pttl), "PTTL of {key}: {pttl}");
        // The same option set in code wins over the URL's.
        let other = format!("{}:", unique("conn"));
        let store2 = ConnectOptions::new()
            .prefix(other.as_str())
            .connect(&with_query(&url(), &format!("prefix={prefix}")))
            .await
            .unwrap();
        let id2 = round_trip(&*store2).await;
        let exists: (bool, bool) = redis::pipe()
            .cmd("EXISTS")
            .arg(format!("{other}{}", id2.as_str()))
            .cmd("EXISTS")
            .arg(format!("{prefix}{}", id2.as_str()))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(exists, (true, false));
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .arg(format!("{other}{}", id2.as_str()))
            .query_async(&mut raw)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_option_is_refused_before_dialling() {
        let (err, _) = fails(&with_query(&url(), "prefx=gw:")).await;
        assert!(
            matches!(&err, ConnectError::UnknownOption { option, store: "redis", .. } if option == "prefx"),
            "{err:?}"
        );
        assert!(!err.is_transient());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_is_transient_and_fast() {
        let url = format!("redis://127.0.0.1:{}", closed_port());
        let (err, took) = fails(&url).await;
        println!(
            "redis refused: failed after {took:?}: {}",
            check_shown(&err, None)
        );
        assert!(err.is_transient(), "{err:?}");
        assert!(
            matches!(store_error(&err), Error::Unavailable(_)),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("opening the redis store at {url}")),
            "{err}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    /// A server that accepts connections and never answers: `connect`
    /// gives up after the connect timeout the user set, not after the
    /// connection manager's retries (4 × 300 ms + 5 s backoff before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_server_fails_after_the_connect_timeout_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let (err, took) = fails(&format!("redis://{addr}?connect_timeout=300ms")).await;
        println!(
            "redis silent: failed after {took:?}: {}",
            check_shown(&err, None)
        );
        assert!(matches!(store_error(&err), Error::Timeout(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        hold.abort();
    }

    /// `AUTH <password>` against a server without a password fails: the
    /// credentials are wrong for this server. Not transient, password
    /// never shown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_password_is_a_configuration_error() {
        let secret = unique("hunter2");
        let url = format!("redis://:{secret}@{}", authority());
        let (err, took) = fails(&url).await;
        let chain = check_shown(&err, Some(&secret));
        println!("redis wrong password: failed after {took:?}: {chain}");
        assert_eq!(misconfiguration(&err), Misconfiguration::Credentials);
        assert!(!err.is_transient());
        assert!(chain.contains(&authority()), "{chain}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_index_the_server_lacks_is_a_configuration_error() {
        let (err, took) = fails(&format!("redis://{}/9999", authority())).await;
        let chain = check_shown(&err, None);
        println!("redis missing database: failed after {took:?}: {chain}");
        assert_eq!(misconfiguration(&err), Misconfiguration::UnknownDatabase);
        assert!(!err.is_transient());
    }

    /// `rediss://` to a server that answers in plain text: with TLS
    /// compiled in the handshake fails, without it the build lacks TLS;
    /// both are configuration errors. (A plain Redis server never answers
    /// a TLS hello at all: that is a timeout, like any silent server.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_to_a_plain_server_or_without_tls_is_a_configuration_error() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plain = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"-ERR this port does not speak TLS\r\n").await;
                let _ = s.shutdown().await;
            }
        });
        let (err, took) = fails(&format!("rediss://{addr}?connect_timeout=2s")).await;
        let chain = check_shown(&err, None);
        println!("rediss to a plain server: failed after {took:?}: {chain}");
        let expected = if cfg!(feature = "tls-rustls") {
            Misconfiguration::Tls
        } else {
            Misconfiguration::TlsNotCompiled {
                feature: "tls-rustls",
            }
        };
        assert_eq!(misconfiguration(&err), expected);
        assert!(!err.is_transient());
        plain.abort();
    }

    /// A throwaway `redis-server` on a Unix socket (and a TCP port) that
    /// requires a password; killed on drop.
    struct Throwaway {
        child: std::process::Child,
        socket: std::path::PathBuf,
        port: u16,
        password: String,
    }

    impl Throwaway {
        fn start() -> Option<Self> {
            let socket = std::env::temp_dir().join(format!("{}.sock", unique("redis")));
            let port = closed_port();
            let password = unique("pw");
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--unixsocket")
                .arg(&socket)
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--requirepass",
                    &password,
                ])
                .stdout(std::process::Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) => {
                    println!(
                        "SKIPPED: cannot start redis-server ({e}); install it to run this test"
                    );
                    return None;
                }
            };
            let server = Self {
                child,
                socket,
                port,
                password,
            };
            let started = Instant::now();
            while !server.socket.exists() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(server)
        }
    }

    impl Drop for Throwaway {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unix_sockets_and_a_server_that_requires_a_password() {
        let Some(server) = Throwaway::start() else {
            return;
        };
        let sock = server.socket.display().to_string();
        let pw = &server.password;
        for url in [
            format!("redis+unix://{sock}?pass={pw}&prefix=a:&ttl=1m"),
            format!("unix://{sock}?pass={pw}&prefix=b:"),
        ] {
            let store = connect(&url).await.unwrap();
            round_trip(&*store).await;
        }
        let mut raw = redis::Client::open(format!("redis+unix://{sock}?pass={pw}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(keys.iter().any(|k| k.starts_with("a:")), "{keys:?}");
        assert!(keys.iter().any(|k| k.starts_with("b:")), "{keys:?}");
        // No password, and a wrong one: rejected credentials, at once.
        let wrong = unique("wrong");
        for (url, secret) in [
            (format!("redis://127.0.0.1:{}", server.port), None),
            (
                format!("redis://default:{wrong}@127.0.0.1:{}", server.port),
                Some(wrong.as_str()),
            ),
            (format!("unix://{sock}?pass={wrong}"), Some(wrong.as_str())),
        ] {
            let (err, took) = fails(&url).await;
            let chain = check_shown(&err, secret);
            println!("redis requirepass: failed after {took:?}: {chain}");
            assert_eq!(
                misconfiguration(&err),
                Misconfiguration::Credentials,
                "{url}"
            );
            assert!(!err.is_transient());
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres_store {
    use super::*;
    use sqlx::Row;

    fn url() -> String {
        session_core::testing::require_url(
            "SESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )
    }

    /// The test URL with another database (and user, when given).
    fn url_with(database: &str, user: Option<&str>) -> String {
        let url = url();
        let (scheme, rest) = url.split_once("://").unwrap();
        let rest = rest.split('?').next().unwrap();
        let (userinfo, hostpath) = rest.rsplit_once('@').map_or(("", rest), |(u, h)| (u, h));
        let host = hostpath.split('/').next().unwrap();
        let user = user.map_or_else(|| userinfo.to_owned(), str::to_owned);
        let at = if user.is_empty() { "" } else { "@" };
        format!("{scheme}://{user}{at}{host}/{database}")
    }

    fn host() -> String {
        let url = url_with("x", None);
        let rest = url.split_once("://").unwrap().1;
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        rest.split('/').next().unwrap().to_owned()
    }

    async fn raw() -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_table_ttl_and_cleanup_from_the_url_take_effect() {
        let schema = unique("conn");
        let store = connect(&with_query(
            &url(),
            &format!("schema={schema}&table=t1&ttl=45s&pool_size=2&cleanup=200ms&listen=false"),
        ))
        .await
        .unwrap();
        assert!(store.changes().is_none(), "listen=false was ignored");
        let id = round_trip(&*store).await;
        let raw = raw().await;
        let left: f64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM \"{schema}\".t1 WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_one(&raw)
        .await
        .unwrap()
        .get(0);
        assert!((40.0..=45.0).contains(&left), "{left}");
        // A short-lived row expires; the cleanup task `connect` started
        // deletes it (expired rows are invisible, only cleanup removes them).
        let short = SessionId::generate();
        store
            .create(
                &short,
                &Metadata::new(),
                Ttl::Custom(Duration::from_millis(50)),
            )
            .await
            .unwrap();
        let count = format!("SELECT count(*) FROM \"{schema}\".t1 WHERE id = $1");
        let started = Instant::now();
        loop {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(count.clone()))
                .bind(short.as_str())
                .fetch_one(&raw)
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "cleanup never ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(store);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&raw)
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_database_is_a_configuration_error_naming_host_and_database() {
        let database = unique("does_not_exist");
        let (err, took) = fails(&url_with(&database, None)).await;
        let chain = check_shown(&err, None);
        println!("postgres missing database: failed after {took:?}: {chain}");
        assert_eq!(misconfiguration(&err), Misconfiguration::UnknownDatabase);
        assert!(!err.is_transient());
        assert!(err.to_string().contains(&host()), "{err}");
        assert!(chain.contains(&database), "{chain}");
    }

    /// Trust authentication accepts any password, so the rejection here is
    /// of an unknown role; its password must not show anywhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_role_is_a_configuration_error_without_its_password() {
        let role = unique("nobody");
        let secret = unique("hunter2");
        let (err, took) = fails(&url_with("postgres", Some(&format!("{role}:{secret}")))).await;
        let chain = check_shown(&err, Some(&secret));
        println!("postgres unknown role: failed after {took:?}: {chain}");
        assert_eq!(misconfiguration(&err), Misconfiguration::UserRejected);
        assert!(!err.is_transient());
        assert!(chain.contains(&role), "{chain}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_fails_fast_and_is_transient() {
        let url = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
        let (err, took) = fails(&url).await;
        let chain = check_shown(&err, None);
        println!("postgres refused: failed after {took:?}: {chain}");
        assert!(
            matches!(store_error(&err), Error::Unavailable(_)),
            "{err:?}"
        );
        assert!(err.is_transient());
        assert!(chain.contains("refused"), "{chain}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    /// `sslmode=require` works through session-manager's `tls-rustls`
    /// (the local server has TLS on with a self-signed certificate);
    /// `verify-full` then fails on that certificate, a configuration error.
    /// Without the feature, asking for TLS is a configuration error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sslmode_require_connects_and_an_untrusted_certificate_is_a_configuration_error() {
        let schema = unique("conn");
        let require = with_query(
            &url(),
            &format!("sslmode=require&schema={schema}&listen=false"),
        );
        let verify = with_query(&url(), "sslmode=verify-full&listen=false");
        if cfg!(feature = "tls-rustls") {
            let store = connect(&require).await.unwrap();
            round_trip(&*store).await;
            drop(store);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA \"{schema}\" CASCADE"
            )))
            .execute(&raw().await)
            .await
            .unwrap();
            let (err, took) = fails(&verify).await;
            println!(
                "postgres verify-full: failed after {took:?}: {}",
                check_shown(&err, None)
            );
            assert_eq!(misconfiguration(&err), Misconfiguration::Tls);
            assert!(!err.is_transient());
        } else {
            let (err, _) = fails(&require).await;
            assert_eq!(
                misconfiguration(&err),
                Misconfiguration::TlsNotCompiled {
                    feature: "tls-rustls"
                }
            );
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite_store {
    use super::*;
    use sqlx::Row;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(unique("connect"));
            std::fs::create_dir(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlx_url_forms_with_options() {
        let dir = TempDir::new();
        let file = dir.0.join("s.db");
        let url = format!(
            "sqlite://{}?mode=rwc&table=t2&ttl=45s&cleanup=off",
            file.display()
        );
        let store = connect(&url).await.unwrap();
        round_trip(&*store).await;
        let raw = sqlx::sqlite::SqlitePoolOptions::new()
            .connect(&format!("sqlite:{}", file.display()))
            .await
            .unwrap();
        let n: i64 = sqlx::query("SELECT count(*) FROM t2")
            .fetch_one(&raw)
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        raw.close().await;
        // `sqlite:PATH` opens the same existing file; `sqlite::memory:` and
        // `sqlite://:memory:` are private in-memory databases.
        let again = connect(&format!("sqlite:{}?table=t2", file.display()))
            .await
            .unwrap();
        assert_eq!(again.scan(None, 10).await.unwrap().ids.len(), 1);
        for memory in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
        ] {
            let store = connect(memory).await.unwrap();
            round_trip(&*store).await;
            assert_eq!(store.scan(None, 10).await.unwrap().ids.len(), 1, "{memory}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_that_cannot_be_opened_is_a_configuration_error() {
        let dir = TempDir::new();
        for url in [
            // sqlx's rule: without `mode=rwc` a missing file is not created.
            format!("sqlite:{}", dir.0.join("missing.db").display()),
            format!(
                "sqlite://{}?mode=rwc",
                dir.0.join("no/such/dir.db").display()
            ),
        ] {
            let (err, took) = fails(&url).await;
            let chain = check_shown(&err, None);
            println!("sqlite cannot open: failed after {took:?}: {chain}");
            assert_eq!(
                misconfiguration(&err),
                Misconfiguration::CannotOpen,
                "{url}"
            );
            assert!(!err.is_transient());
            assert!(chain.contains("mode=rwc"), "{chain}");
        }
        let (err, _) = fails("sqlite://x.db?mode=bogus").await;
        assert!(
            matches!(store_error(&err), Error::InvalidInput(_)),
            "{err:?}"
        );
    }
}
