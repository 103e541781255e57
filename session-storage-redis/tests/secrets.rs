//! Passwords in a Redis URL never reach an error message, a `Debug`
//! output or a log line (spans and events captured with their fields).

use std::fmt::Write as _;
use std::time::Duration;

use session_core::testing::logs::CapturedLogs;
use session_core::{Metadata, SessionId, SessionStore, Ttl};
use session_storage_redis::{RedisConfig, RedisStore};

const SECRET: &str = "Hunter2Swordfish";

#[tokio::test(flavor = "current_thread")]
async fn passwords_stay_out_of_errors_and_logs() {
    let logs = CapturedLogs::new();
    let _guard = logs.set_default();
    let mut shown = String::new();

    // Refused: nothing listens on port 1.
    let refused = RedisConfig::new(format!("redis://default:{SECRET}@127.0.0.1:1/0"))
        .connect_timeout(Duration::from_millis(500));
    writeln!(shown, "{refused:?}").unwrap();
    let err = RedisStore::connect(refused)
        .await
        .expect_err("nothing listens on port 1");
    writeln!(shown, "{err}\n{err:?}").unwrap();

    // A real server that rejects the credentials (or has no password set).
    let url =
        session_core::testing::require_url("SESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let with_secret = url.replacen("redis://", &format!("redis://default:{SECRET}@"), 1);
    let prefix = format!("secrets-{}:", SessionId::generate().as_str());
    match RedisStore::connect(RedisConfig::new(with_secret).prefix(prefix)).await {
        Err(err) => writeln!(shown, "{err}\n{err:?}").unwrap(),
        Ok(store) => {
            // Accepted (a server without AUTH configured): use it once.
            let id = SessionId::generate();
            let _ = store.create(&id, &Metadata::new(), Ttl::Default).await;
            let _ = store.delete(&id).await;
            writeln!(shown, "{store:?}").unwrap();
        }
    }
    let logged = logs.text();
    assert!(!shown.contains(SECRET), "a password was shown:\n{shown}");
    assert!(!logged.contains(SECRET), "a password was logged:\n{logged}");
}
