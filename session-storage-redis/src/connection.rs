//! The command connection: a [`ConnectionManager`] on one server, or a
//! cluster connection (feature `cluster`), behind one `ConnectionLike`.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisFuture, Value};
use session_core::{ConfigError, Error, InvalidInput, Misconfiguration};

use crate::config::{RedisConfig, Topology};

/// A multiplexed command connection that reconnects by itself.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// An invalid URL (or a feature the URL needs but the build lacks).
pub(crate) fn bad_url(url: &str, err: &redis::RedisError) -> Error {
    // Never echo credentials: report the scheme and the parse error only.
    let scheme = url.split_once("://").map_or("?", |(s, _)| s);
    InvalidInput::Config(ConfigError::Invalid {
        setting: "redis url",
        reason: format!("{scheme}:// url rejected: {err}"),
    })
    .into()
}

/// A `rediss://` URL in a build without TLS: a configuration error naming
/// the feature, before redis-rs reports it in its own words.
fn check_tls_compiled(url: &str) -> Result<(), Error> {
    let wants_tls = url.starts_with("rediss://") || url.starts_with("rediss+");
    if wants_tls && !cfg!(feature = "tls-rustls") {
        return Err(Error::Misconfigured {
            problem: Misconfiguration::TlsNotCompiled {
                feature: "tls-rustls",
            },
            source: None,
        });
    }
    Ok(())
}

/// Opens a client on `url`.
fn client(url: &str) -> Result<Client, Error> {
    check_tls_compiled(url)?;
    Client::open(url).map_err(|e| bad_url(url, &e))
}

/// The clients the change subscriber dials (one per seed node for a cluster:
/// classic pub/sub messages reach every node).
pub(crate) fn pubsub_clients(config: &RedisConfig) -> Result<Vec<Client>, Error> {
    match &config.topology {
        Topology::Standalone(url) => Ok(vec![client(url)?]),
        Topology::Cluster(nodes) => nodes.iter().map(|url| client(url)).collect(),
    }
}

/// One connection attempt to `url`, bounded by the connect timeout, then a
/// `PING`: fails fast with what the server said (refused, wrong password,
/// no such database, not TLS) instead of the connection manager's retries
/// wearing it down into a timeout. A server that accepts but never answers
/// fails after `connect_timeout`.
async fn probe(client: &Client, url: &str, config: &RedisConfig) -> Result<(), Error> {
    let limit = config.connect_timeout;
    let attempt = async {
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(Some(limit));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&settings)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    // redis-rs bounds the dial and the handshake; this bounds the PING too.
    match tokio::time::timeout(limit + Duration::from_millis(50), attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(crate::error::map_connect(e, url, limit)),
        Err(_) => Err(Error::Timeout(limit)),
    }
}

/// Opens the command connection.
pub(crate) async fn connect(config: &RedisConfig) -> Result<Conn, Error> {
    let attempt = async {
        match &config.topology {
            Topology::Standalone(url) => {
                let client = client(url)?;
                probe(&client, url, config).await?;
                let cm = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    .set_number_of_retries(config.reconnect_retries)
                    .set_max_delay(config.reconnect_max_delay);
                let conn = ConnectionManager::new_with_config(client, cm)
                    .await
                    .map_err(|e| crate::error::map_connect(e, url, config.connect_timeout))?;
                Ok(Conn::Single(conn))
            }
            #[cfg(feature = "cluster")]
            Topology::Cluster(nodes) => {
                for url in nodes {
                    check_tls_compiled(url)?;
                }
                let mut builder =
                    redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(config.connect_timeout)
                        .response_timeout(config.response_timeout)
                        .retries(u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX));
                if !config.node_map.is_empty() {
                    builder = builder.node_address_map(node_map(&config.node_map)?);
                }
                let client = builder
                    .build()
                    .map_err(|e| bad_url(nodes.first().map_or("", String::as_str), &e))?;
                let conn = client.get_async_connection().await.map_err(|e| {
                    let first = nodes.first().map_or("", String::as_str);
                    crate::error::map_connect(e, first, config.connect_timeout)
                })?;
                Ok(Conn::Cluster(conn))
            }
            #[cfg(not(feature = "cluster"))]
            Topology::Cluster(_) => Err(InvalidInput::Config(ConfigError::Invalid {
                setting: "topology",
                reason: "cluster support needs the `cluster` feature".to_owned(),
            })
            .into()),
        }
    };
    // Bound the whole dial, retries included (the probe has already
    // failed fast if the server cannot be reached at all).
    let retries = u32::try_from(config.reconnect_retries)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let limit = config.connect_timeout.saturating_mul(retries) + config.reconnect_max_delay;
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(limit)),
    }
}

/// [`RedisConfig::map_node`]'s pairs, parsed.
#[cfg(feature = "cluster")]
fn node_map(
    pairs: &[(String, String)],
) -> Result<
    std::collections::HashMap<redis::cluster::NodeAddress, redis::cluster::NodeAddress>,
    Error,
> {
    let parse = |addr: &str| {
        addr.parse::<redis::cluster::NodeAddress>().map_err(|e| {
            Error::from(InvalidInput::Config(ConfigError::Invalid {
                setting: "map_node",
                reason: format!("{addr:?} is not host:port: {e}"),
            }))
        })
    };
    pairs
        .iter()
        .map(|(from, to)| Ok((parse(from)?, parse(to)?)))
        .collect()
}
