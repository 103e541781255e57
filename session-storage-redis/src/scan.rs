//! Paging through a prefix's keys with `SCAN MATCH prefix*`.
//!
//! Standalone cursors are Redis' own cursor (`"<n>"`). Cluster cursors are
//! `"<slot>:<n>"`: the masters are visited one after another in the order of
//! the lowest slot each serves, `<slot>` names the one being scanned.
//! Like `SCAN` itself, a scan may return a key more than once; a topology
//! change in the middle of a cluster scan may also skip keys that moved.

use redis::RedisResult;
use redis::aio::ConnectionManager;
use session_core::Cursor;

/// `SCAN` round trips per page at most, so a sparse prefix in a big
/// keyspace returns (possibly empty) pages instead of blocking.
const ROUNDS_PER_PAGE: usize = 16;

/// The largest `COUNT` hint (one `SCAN` call should stay short on the
/// server): rounds that match nothing (a prefix that is sparse in the
/// keyspace) widen the hint from `limit` up to this.
const MAX_COUNT: usize = 1000;

/// The `COUNT` hint after a round that found `found` keys with hint `count`.
fn widen(count: usize, found: usize) -> usize {
    if found == 0 {
        count.saturating_mul(4).min(MAX_COUNT).max(count)
    } else {
        count
    }
}

/// Keys found and the cursor to continue from.
pub(crate) type Found = (Vec<Vec<u8>>, Option<Cursor>);

pub(crate) fn parse_single(c: &Cursor) -> Option<u64> {
    c.as_str().parse().ok().filter(|n| *n != 0)
}

fn scan_cmd(pattern: &str, cursor: u64, limit: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(limit);
    cmd
}

/// One page on a standalone server.
pub(crate) async fn single(
    conn: &mut ConnectionManager,
    pattern: &str,
    mut cursor: u64,
    limit: usize,
) -> RedisResult<Found> {
    let mut keys = Vec::new();
    let mut count = limit.min(MAX_COUNT);
    for _ in 0..ROUNDS_PER_PAGE {
        let (next, mut batch): (u64, Vec<Vec<u8>>) =
            scan_cmd(pattern, cursor, count).query_async(conn).await?;
        count = widen(count, batch.len());
        keys.append(&mut batch);
        cursor = next;
        if cursor == 0 || keys.len() >= limit {
            break;
        }
    }
    Ok((keys, (cursor != 0).then(|| Cursor::new(cursor.to_string()))))
}

#[cfg(feature = "cluster")]
pub(crate) use cluster_scan::{cluster, parse_cluster};

#[cfg(feature = "cluster")]
mod cluster_scan {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use redis::Value;
    use redis::cluster_async::ClusterConnection;
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    use session_core::{Cursor, Error};

    use super::{Found, MAX_COUNT, ROUNDS_PER_PAGE, scan_cmd, widen};
    use crate::error::{UnexpectedReply, map_redis};

    pub(crate) fn parse_cluster(c: &Cursor) -> Option<(u16, u64)> {
        let (slot, n) = c.as_str().split_once(':')?;
        Some((slot.parse().ok()?, n.parse().ok()?))
    }

    fn int(v: &Value) -> Option<i64> {
        match v {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The lowest slot of every master, ascending.
    async fn masters(conn: &mut ClusterConnection, timeout: Duration) -> Result<Vec<u16>, Error> {
        let reply = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .map_err(|e| map_redis(e, "CLUSTER SLOTS", timeout))?;
        let bad = || Error::from(UnexpectedReply::new("CLUSTER SLOTS", &reply));
        let Value::Array(ranges) = &reply else {
            return Err(bad());
        };
        let mut lowest: BTreeMap<String, u16> = BTreeMap::new();
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(bad());
            };
            let (Some(start), Some(Value::Array(master))) =
                (fields.first().and_then(int), fields.get(2))
            else {
                return Err(bad());
            };
            let start = u16::try_from(start).map_err(|_| bad())?;
            let node = format!("{:?}", master.iter().take(2).collect::<Vec<_>>());
            let e = lowest.entry(node).or_insert(start);
            *e = (*e).min(start);
        }
        let mut slots: Vec<u16> = lowest.into_values().collect();
        slots.sort_unstable();
        Ok(slots)
    }

    /// One page across the cluster's masters.
    pub(crate) async fn cluster(
        conn: &mut ClusterConnection,
        pattern: &str,
        start: Option<(u16, u64)>,
        limit: usize,
        timeout: Duration,
    ) -> Result<Found, Error> {
        let masters = masters(conn, timeout).await?;
        let Some(&first) = masters.first() else {
            return Ok((Vec::new(), None));
        };
        let (mut slot, mut cursor) = start.unwrap_or((first, 0));
        let mut keys = Vec::new();
        let mut count = limit.min(MAX_COUNT);
        for _ in 0..ROUNDS_PER_PAGE {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                slot,
                SlotAddr::Master,
            )));
            let reply = conn
                .route_command(scan_cmd(pattern, cursor, count), route)
                .await
                .map_err(|e| map_redis(e, pattern, timeout))?;
            let (next, mut batch): (u64, Vec<Vec<u8>>) = redis::from_redis_value_ref(&reply)
                .map_err(|_| Error::from(UnexpectedReply::new("SCAN", &reply)))?;
            count = widen(count, batch.len());
            keys.append(&mut batch);
            cursor = next;
            if cursor == 0 {
                match masters.iter().find(|&&s| s > slot) {
                    Some(&s) => slot = s,
                    None => return Ok((keys, None)),
                }
            }
            if keys.len() >= limit {
                break;
            }
        }
        Ok((keys, Some(Cursor::new(format!("{slot}:{cursor}")))))
    }
}
