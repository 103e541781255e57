//! The peer benchmark: our Redis and Postgres stores against the raw
//! clients they are built on and against tower-sessions' stores (its Redis
//! store on fred, its sqlx Postgres store), on the same servers with the
//! same data shape, interleaved in one run. See README.md for what each
//! cell runs and how to read the table.
//!
//! ```text
//! cargo xtask bench peers          # builds with the workspace's target dir
//! ```
//!
//! Environment: `SESSION_TEST_REDIS_URL` and `SESSION_TEST_POSTGRES_URL`
//! (either may be absent: that half is skipped), `PEER_ROUNDS` (default 5
//! interleaved rounds), `PEER_WINDOW_MS` (default 1000 ms per operation per
//! round), `PEER_ONLY` (`redis` or `postgres`).

mod cpu;
mod postgres;
mod redis_side;
mod run;

use std::time::Duration;

/// Sessions per side, spread over the tasks.
pub const SESSIONS: usize = 1000;

/// The benchmark's settings, from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Interleaved rounds; the median round counts.
    pub rounds: usize,
    /// The length of one measured window.
    pub window: Duration,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// About 0.5 KB of session metadata: string values, as a gateway keeps
/// (backends, their session ids, a binding).
pub fn metadata_pairs() -> Vec<(String, String)> {
    let mut pairs = vec![
        (
            "binding".to_owned(),
            "sub:4f1c2a9e-user@example.com".to_owned(),
        ),
        ("protocol".to_owned(), "2025-06-18".to_owned()),
    ];
    for i in 0..4 {
        pairs.push((
            format!("backend:{i}:session"),
            format!("{:032x}-{i}", 0x5eed_u128 * (i + 1) as u128),
        ));
        pairs.push((
            format!("backend:{i}:url"),
            format!("http://backend-{i}.internal:8080/mcp"),
        ));
    }
    pairs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = Settings {
        rounds: env_num("PEER_ROUNDS", 5).max(1) as usize,
        window: Duration::from_millis(env_num("PEER_WINDOW_MS", 1000).max(100)),
    };
    let only = std::env::var("PEER_ONLY").ok();
    let json: usize = serde_json::to_string(
        &metadata_pairs()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap()
    .len();
    println!(
        "# peer benchmark: {SESSIONS} sessions per side, metadata JSON {json} bytes, \
         {} rounds x {} ms per operation, medians of the rounds\n",
        settings.rounds,
        settings.window.as_millis()
    );
    let mut ran = false;
    if only.as_deref().is_none_or(|o| o == "redis") {
        match std::env::var("SESSION_TEST_REDIS_URL") {
            Ok(url) => {
                redis_side::run(&url, &settings).await;
                ran = true;
            }
            Err(_) => eprintln!("peer-bench: SESSION_TEST_REDIS_URL unset, Redis skipped"),
        }
    }
    if only.as_deref().is_none_or(|o| o == "postgres") {
        match std::env::var("SESSION_TEST_POSTGRES_URL") {
            Ok(url) => {
                postgres::run(&url, &settings).await;
                ran = true;
            }
            Err(_) => eprintln!("peer-bench: SESSION_TEST_POSTGRES_URL unset, Postgres skipped"),
        }
    }
    if !ran {
        eprintln!("peer-bench: nothing measured (no server URL)");
        std::process::exit(1);
    }
}
