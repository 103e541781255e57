//! Passwords in a Postgres URL never reach an error message, a `Debug`
//! output or a log line (spans and events captured with their fields).
#![cfg(feature = "postgres")]

use std::fmt::Write as _;

use session_core::testing::logs::CapturedLogs;
use session_core::{Metadata, SessionId, SessionStore, Ttl};
use session_storage_sql::{PostgresConfig, PostgresStore};
use sqlx::AssertSqlSafe;

const SECRET: &str = "Hunter2Swordfish";

#[tokio::test(flavor = "current_thread")]
async fn passwords_stay_out_of_errors_and_logs() {
    let logs = CapturedLogs::new();
    let _guard = logs.set_default();
    let mut shown = String::new();

    // Refused: nothing listens on port 1.
    let refused = PostgresConfig::new(format!("postgres://postgres:{SECRET}@127.0.0.1:1/test"));
    writeln!(shown, "{refused:?}").unwrap();
    let err = PostgresStore::connect(refused)
        .await
        .expect_err("nothing listens on port 1");
    writeln!(shown, "{err}\n{err:?}").unwrap();

    // The real server (trust authentication accepts any password): connect,
    // write, read, delete, under this test's own schema.
    let url = session_core::testing::require_url(
        "SESSION_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let with_secret = url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{SECRET}@"),
        1,
    );
    let schema = format!(
        "secrets_{}",
        SessionId::generate().as_str().replace('-', "")
    );
    let config = PostgresConfig::new(with_secret).schema(schema.clone());
    writeln!(shown, "{config:?}").unwrap();
    match PostgresStore::connect(config).await {
        Err(err) => writeln!(shown, "{err}\n{err:?}").unwrap(),
        Ok(store) => {
            let id = SessionId::generate();
            store
                .create(&id, &Metadata::new(), Ttl::Default)
                .await
                .unwrap();
            store.load(&id).await.unwrap();
            store.delete(&id).await.unwrap();
            writeln!(shown, "{store:?}").unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(store.pool())
            .await
            .unwrap();
        }
    }
    let logged = logs.text();
    assert!(!shown.contains(SECRET), "a password was shown:\n{shown}");
    assert!(!logged.contains(SECRET), "a password was logged:\n{logged}");
    assert!(
        !logs.is_empty(),
        "nothing was captured: the capture itself is broken"
    );
}
