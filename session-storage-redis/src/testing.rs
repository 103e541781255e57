//! Test-backend helper (feature `testcontainers`): a throwaway Redis in
//! Docker for harnesses that were given no URL.

use std::sync::OnceLock;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage};

/// The pinned image tag.
pub const REDIS_IMAGE: (&str, &str) = ("redis", "7.2");

static CONTAINER: OnceLock<Option<(String, Container<GenericImage>)>> = OnceLock::new();

/// The URL of a process-wide `redis:7.2` container, started on first call;
/// `None` if no Docker daemon answers. The container lives until the
/// process exits (testcontainers' reaper removes it).
pub fn container_url() -> Option<String> {
    CONTAINER
        .get_or_init(|| {
            // The sync runner builds its own runtime: run it off any async context.
            std::thread::spawn(start).join().ok().flatten()
        })
        .as_ref()
        .map(|(url, _)| url.clone())
}

fn start() -> Option<(String, Container<GenericImage>)> {
    let container = GenericImage::new(REDIS_IMAGE.0, REDIS_IMAGE.1)
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .start()
        .ok()?;
    let host = container.get_host().ok()?;
    let port = container.get_host_port_ipv4(6379).ok()?;
    Some((format!("redis://{host}:{port}"), container))
}
