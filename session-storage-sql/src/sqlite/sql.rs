//! The statements a [`super::SqliteStore`] runs. Times are Unix
//! milliseconds from SQLite's own clock (`unixepoch('subsec')`, stable
//! within one statement), never the application's.

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::ident::Ident;

const NOW: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

#[derive(Clone, Debug)]
pub(crate) struct Statements {
    /// `?1` id, `?2` metadata, `?3` ttl ms, `?4` max lifetime ms, `?5`
    /// the create's write list entry → `version` if created.
    pub(crate) create: SqlStr,
    /// `?1` id → `writes` of the live row.
    pub(crate) writes: SqlStr,
    /// `?1` id, `?2` max ms, `?3` fraction → `version`, `metadata`, `stale`.
    pub(crate) load: SqlStr,
    /// `?1` id, `?2` max ms, `?3` fraction → rows affected (never a row
    /// past its capped deadline: see `expire`).
    pub(crate) slide: SqlStr,
    /// `?1` id → `version`.
    pub(crate) version: SqlStr,
    /// `?1` id, `?2` max ms → `version`, `past` (its capped deadline has
    /// passed), `writes`.
    pub(crate) current: SqlStr,
    /// `?1` id, `?2` expected, `?3` metadata, `?4` ttl ms, `?5` max ms,
    /// `?6` this write's list entry → `version`.
    pub(crate) update: SqlStr,
    /// `?1` id, `?2` max ms → rows affected (as `slide`).
    pub(crate) touch: SqlStr,
    /// `?1` id, `?2` max ms → a row if a live row past its capped
    /// deadline (`created_at + max`) was deleted.
    pub(crate) expire: SqlStr,
    /// `?1` id → `live` if a row was removed.
    pub(crate) delete: SqlStr,
    /// `?1` limit → ids.
    pub(crate) scan_first: SqlStr,
    /// `?1` after, `?2` limit → ids.
    pub(crate) scan_next: SqlStr,
    /// `?1` batch → rows affected.
    pub(crate) purge: SqlStr,
}

fn sql(s: String) -> SqlStr {
    AssertSqlSafe(s).into_sql_str()
}

impl Statements {
    pub(crate) fn new(table: &Ident) -> Self {
        let t = table.quoted();
        let row_deadline = format!("min({NOW} + ttl_ms, created_at + ?2)");
        let stale = format!("expires_at < {row_deadline} - CAST(ttl_ms * ?3 AS INTEGER)");
        Self {
            create: sql(format!(
                "INSERT INTO {t} (id, version, metadata, created_at, expires_at, ttl_ms, writes) \
                 VALUES (?1, 1, ?2, {NOW}, {NOW} + min(?3, ?4), ?3, ?5) \
                 ON CONFLICT (id) DO UPDATE SET version = 1, metadata = excluded.metadata, \
                   created_at = excluded.created_at, expires_at = excluded.expires_at, \
                   ttl_ms = excluded.ttl_ms, writes = excluded.writes \
                 WHERE {t}.expires_at <= {NOW} \
                 RETURNING version"
            )),
            writes: sql(format!(
                "SELECT writes FROM {t} WHERE id = ?1 AND expires_at > {NOW}"
            )),
            load: sql(format!(
                "SELECT version, metadata, {stale} AS stale FROM {t} WHERE id = ?1 AND expires_at > {NOW}"
            )),
            slide: sql(format!(
                "UPDATE {t} SET expires_at = {row_deadline} \
                 WHERE id = ?1 AND expires_at > {NOW} AND created_at + ?2 > {NOW} AND {stale}"
            )),
            version: sql(format!(
                "SELECT version FROM {t} WHERE id = ?1 AND expires_at > {NOW}"
            )),
            current: sql(format!(
                "SELECT version, created_at + ?2 <= {NOW} AS past, writes FROM {t} \
                 WHERE id = ?1 AND expires_at > {NOW}"
            )),
            update: sql(format!(
                "UPDATE {t} SET version = version + 1, metadata = ?3, ttl_ms = ?4, \
                   expires_at = min({NOW} + ?4, created_at + ?5), \
                   writes = rtrim(substr(?6 || ' ' || writes, 1, {max_writes})) \
                 WHERE id = ?1 AND version = ?2 AND version < {max_version} \
                   AND expires_at > {NOW} AND created_at + ?5 > {NOW} \
                 RETURNING version",
                max_version = session_core::Version::MAX.get(),
                max_writes = session_core::write_log::MAX_LEN,
            )),
            touch: sql(format!(
                "UPDATE {t} SET expires_at = {row_deadline} \
                 WHERE id = ?1 AND expires_at > {NOW} AND created_at + ?2 > {NOW}"
            )),
            expire: sql(format!(
                "DELETE FROM {t} WHERE id = ?1 AND expires_at > {NOW} AND created_at + ?2 <= {NOW} \
                 RETURNING 1"
            )),
            delete: sql(format!(
                "DELETE FROM {t} WHERE id = ?1 RETURNING expires_at > {NOW} AS live"
            )),
            scan_first: sql(format!(
                "SELECT id FROM {t} WHERE expires_at > {NOW} ORDER BY id LIMIT ?1"
            )),
            scan_next: sql(format!(
                "SELECT id FROM {t} WHERE id > ?1 AND expires_at > {NOW} ORDER BY id LIMIT ?2"
            )),
            purge: sql(format!(
                "DELETE FROM {t} WHERE id IN (\
                   SELECT id FROM {t} WHERE expires_at <= {NOW} LIMIT ?1) \
                 AND expires_at <= {NOW}"
            )),
        }
    }
}
