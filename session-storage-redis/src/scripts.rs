//! The Lua scripts behind every mutation (and a `load` whose slide window
//! has passed, through `touch`): each is one `EVALSHA`
//! (the `redis` crate reloads a script on `NOSCRIPT`, e.g. after
//! `SCRIPT FLUSH` or a failover to a fresh replica).

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisResult, Script, ScriptInvocation};

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The compiled scripts, hashed once per process.
pub(crate) struct Scripts {
    /// Create if absent.
    pub create: Script,
    /// Compare-and-set.
    pub update: Script,
    /// Slide only (also a `load` past its slide window).
    pub touch: Script,
    /// Delete and publish.
    pub delete: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// The process-wide script set.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    create: script(include_str!("lua/create.lua")),
    update: script(include_str!("lua/update.lua")),
    touch: script(include_str!("lua/touch.lua")),
    delete: script(include_str!("lua/delete.lua")),
});

/// The error code the scripts use for a corrupt record.
pub(crate) const CORRUPT_CODE: &str = "VMCPCORRUPT";

/// Runs a prepared script: `EVALSHA`, and on `NOSCRIPT` `SCRIPT LOAD` then
/// `EVALSHA` again (inside the `redis` crate). A concurrent `SCRIPT FLUSH`
/// can strike between the load and the retry, so that is tried a few times.
pub(crate) async fn invoke<T: FromRedisValue>(
    invocation: &ScriptInvocation<'_>,
    conn: &mut impl ConnectionLike,
) -> RedisResult<T> {
    let mut attempts = 0;
    loop {
        match invocation.invoke_async(conn).await {
            Err(e)
                if attempts < 3
                    && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}
