//! The Lua scripts behind every mutation (and a `load` whose slide window
//! has passed, through `touch`): each is one `EVALSHA`
//! (the `redis` crate reloads a script on `NOSCRIPT`, e.g. after
//! `SCRIPT FLUSH` or a failover to a fresh replica).
//!
//! The scripts are lean on purpose: every `redis.call` costs the server
//! far more than the Lua around it, and so does building closures, so no
//! prelude of functions runs per call. The header check shared by
//! `update` and `touch` (`lua/header.lua`) is pasted into them as text in
//! place of their `--@header` line.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisResult, Script, ScriptInvocation};

/// The header check `update` and `touch` share (see the module doc).
const HEADER: &str = include_str!("lua/header.lua");

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

/// A script's full text: `body` with the shared header check pasted in.
fn source(body: &str) -> String {
    body.replace("--@header\n", HEADER)
}

fn script(body: &str) -> Script {
    Script::new(&source(body))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_check_is_pasted_where_it_is_named() {
        for body in [
            include_str!("lua/update.lua"),
            include_str!("lua/touch.lua"),
        ] {
            assert!(body.contains("--@header\n"));
            let text = source(body);
            assert!(!text.contains("--@header"));
            assert!(text.contains("redis.pcall('GETRANGE', key, 0, 255)"));
        }
        // The hot paths define no function (a closure per call): the only
        // `function` is the hex encoder on the corrupt-version error path.
        assert_eq!(HEADER.matches("function(").count(), 2);
        for body in [
            include_str!("lua/update.lua"),
            include_str!("lua/touch.lua"),
            include_str!("lua/create.lua"),
            include_str!("lua/delete.lua"),
        ] {
            assert!(!body.contains("function("));
        }
    }
}
