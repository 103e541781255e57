//! The statements a [`super::PostgresStore`] runs, rendered once per store
//! from validated identifiers. Every statement is one round trip and reads
//! time only from the server (`now()`).

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::ident::Ident;

/// `$n` milliseconds as an interval.
macro_rules! ms {
    ($n:literal) => {
        concat!("($", $n, "::bigint * interval '1 millisecond')")
    };
}

/// Rendered statements (cheap to clone: shared strings).
#[derive(Clone, Debug)]
pub(crate) struct Statements {
    /// `$1` id, `$2` metadata, `$3` ttl ms, `$4` max lifetime ms (nullable),
    /// `$5` the create's write list entry → one row (`version`) if created.
    pub(crate) create: SqlStr,
    /// `$1` id → `writes` of the live row (a create that found the id
    /// taken asks whether it was its own, earlier, attempt).
    pub(crate) writes: SqlStr,
    /// `$1` id, `$2` max lifetime ms, `$3` slide fraction → `version`,
    /// `metadata`, `stale` (whether the slide throttle's window has passed).
    pub(crate) load: SqlStr,
    /// `$1` id, `$2` max lifetime ms, `$3` slide fraction → `slid`,
    /// `expired`; re-checks liveness and the throttle, so a race makes it a
    /// no-op; deletes (and notifies) a row past its capped deadline.
    pub(crate) slide: SqlStr,
    /// `$1` id → `version`.
    pub(crate) version: SqlStr,
    /// `$1` id, `$2` expected, `$3` metadata, `$4` ttl ms, `$5` max ms,
    /// `$6` this write's list entry → `applied`, `current` (both
    /// nullable), `expired` (the row was at the expected version but past
    /// its capped deadline: deleted), `writes` (the live row's write list,
    /// from the same snapshot as `current`: a retried write finds itself
    /// there).
    pub(crate) update: SqlStr,
    /// `update`'s fast path, same parameters → `version` if applied, no
    /// row otherwise (then `update` tells why). A single `UPDATE`: no
    /// snapshot read of the current version and no expiry `DELETE` beside
    /// it, so the common case costs what a raw conditional `UPDATE` does.
    pub(crate) update_applied: SqlStr,
    /// `$1` id, `$2` max ms → `slid`, `expired` (as `slide`, no throttle).
    pub(crate) touch: SqlStr,
    /// `$1` id → a row with `live` if a row was removed.
    pub(crate) delete: SqlStr,
    /// `$1` limit → `id`s.
    pub(crate) scan_first: SqlStr,
    /// `$1` after, `$2` limit → `id`s.
    pub(crate) scan_next: SqlStr,
    /// `$1` batch size → rows affected.
    pub(crate) purge: SqlStr,
}

fn sql(s: String) -> SqlStr {
    AssertSqlSafe(s).into_sql_str()
}

impl Statements {
    /// `channel` is `None` when notifications are off; otherwise it holds
    /// only `[a-z0-9_.]` (built from identifiers), so it is safe as a
    /// literal.
    pub(crate) fn new(schema: &Ident, table: &Ident, channel: Option<&str>) -> Self {
        let t = format!("{}.{}", schema.quoted(), table.quoted());
        let deadline = |ttl: &str, max: &str| format!("least(now() + {ttl}, created_at + {max})");
        let notify_create = channel
            .map(|c| format!(", pg_notify('{c}', 'w:1:' || $1::text)::text AS n"))
            .unwrap_or_default();
        let notify_update = channel
            .map(|c| format!(", (SELECT pg_notify('{c}', 'w:' || version || ':' || $1::text) FROM upd)::text AS n"))
            .unwrap_or_default();
        let notify_applied = channel
            .map(|c| format!(", pg_notify('{c}', 'w:' || version || ':' || $1::text)::text AS n"))
            .unwrap_or_default();
        let notify_delete = channel
            .map(|c| {
                format!(", CASE WHEN live THEN pg_notify('{c}', 'd:' || $1::text)::text END AS n")
            })
            .unwrap_or_default();
        let notify_expired = channel
            .map(|c| {
                format!(
                    ", CASE WHEN EXISTS (SELECT 1 FROM del) THEN pg_notify('{c}', 'd:' || $1::text)::text END AS nd"
                )
            })
            .unwrap_or_default();
        let row_deadline = deadline("ttl", ms!(2));
        // A live row whose capped deadline (`created_at + max`) has passed:
        // max_lifetime lowered since it was created. Any slide deletes it.
        let past = |max: &str| format!("created_at + {max} <= now()");
        let not_past = |max: &str| format!("(created_at + {max} > now()) IS NOT FALSE");
        // Slides (touch, a load's throttled slide): the row slides, or is
        // deleted if past its capped deadline; never both (exclusive WHEREs).
        let slide = |throttle: &str| {
            format!(
                "WITH del AS (DELETE FROM {t} WHERE id = $1 AND expires_at > now() AND {past} RETURNING 1),                  upd AS (UPDATE {t} SET expires_at = {row_deadline}                    WHERE id = $1 AND expires_at > now() AND {not_past}{throttle} RETURNING 1)                  SELECT EXISTS (SELECT 1 FROM upd) AS slid, EXISTS (SELECT 1 FROM del) AS expired{notify_expired}",
                past = past(ms!(2)),
                not_past = not_past(ms!(2)),
            )
        };
        // Prepend this write's entry, keep the newest four (fixed-width
        // entries: see session_core::write_log).
        let push = format!(
            "rtrim(left($6::text || ' ' || writes, {}))",
            session_core::write_log::MAX_LEN
        );
        Self {
            create: sql(format!(
                "WITH ins AS (\
                   INSERT INTO {t} AS s (id, version, metadata, created_at, expires_at, ttl, writes) \
                   VALUES ($1, 1, $2, now(), least(now() + {ttl}, now() + {max}), {ttl}, $5) \
                   ON CONFLICT (id) DO UPDATE SET version = 1, metadata = excluded.metadata, \
                     created_at = excluded.created_at, expires_at = excluded.expires_at, ttl = excluded.ttl, \
                     writes = excluded.writes \
                   WHERE s.expires_at <= now() \
                   RETURNING s.version) \
                 SELECT version{notify_create} FROM ins",
                ttl = ms!(3),
                max = ms!(4),
            )),
            writes: sql(format!(
                "SELECT writes FROM {t} WHERE id = $1 AND expires_at > now()"
            )),
            load: sql(format!(
                "SELECT version, metadata, expires_at < {row_deadline} - ttl * $3::float8 AS stale \
                 FROM {t} WHERE id = $1 AND expires_at > now()"
            )),
            slide: sql(slide(&format!(
                " AND expires_at < {row_deadline} - ttl * $3::float8"
            ))),
            version: sql(format!(
                "SELECT version FROM {t} WHERE id = $1 AND expires_at > now()"
            )),
            // Order of checks, as in every store: missing, conflict, the
            // version ceiling (nothing written), the capped deadline
            // (deleted), then the write.
            update: sql(format!(
                "WITH cur AS (SELECT version, writes FROM {t} WHERE id = $1 AND expires_at > now()), \
                 del AS (DELETE FROM {t} WHERE id = $1 AND version = $2 AND version < {max_version} \
                   AND expires_at > now() AND {past} RETURNING 1), \
                 upd AS (\
                   UPDATE {t} SET version = version + 1, metadata = $3, ttl = {ttl}, \
                     expires_at = {dl}, writes = {push} \
                   WHERE id = $1 AND version = $2 AND version < {max_version} \
                     AND expires_at > now() AND {not_past} \
                   RETURNING version) \
                 SELECT (SELECT version FROM upd) AS applied, (SELECT version FROM cur) AS current, \
                   EXISTS (SELECT 1 FROM del) AS expired, (SELECT writes FROM cur) AS writes\
                   {notify_update}{notify_expired}",
                ttl = ms!(4),
                dl = deadline(ms!(4), ms!(5)),
                past = past(ms!(5)),
                not_past = not_past(ms!(5)),
                max_version = session_core::Version::MAX.get(),
            )),
            // Exactly `update`'s write: same WHERE, same SET.
            update_applied: sql(format!(
                "UPDATE {t} SET version = version + 1, metadata = $3, ttl = {ttl}, expires_at = {dl}, \
                   writes = {push} \
                 WHERE id = $1 AND version = $2 AND version < {max_version} \
                   AND expires_at > now() AND {not_past} \
                 RETURNING version{notify_applied}",
                ttl = ms!(4),
                dl = deadline(ms!(4), ms!(5)),
                not_past = not_past(ms!(5)),
                max_version = session_core::Version::MAX.get(),
            )),
            touch: sql(slide("")),
            delete: sql(format!(
                "WITH del AS (DELETE FROM {t} WHERE id = $1 RETURNING expires_at > now() AS live) \
                 SELECT live{notify_delete} FROM del"
            )),
            scan_first: sql(format!(
                "SELECT id FROM {t} WHERE expires_at > now() ORDER BY id LIMIT $1"
            )),
            scan_next: sql(format!(
                "SELECT id FROM {t} WHERE id > $1 AND expires_at > now() ORDER BY id LIMIT $2"
            )),
            purge: sql(format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY(\
                   SELECT ctid FROM {t} WHERE expires_at <= now() LIMIT $1)) \
                 AND expires_at <= now()"
            )),
        }
    }
}

/// The `LISTEN`/`pg_notify` channel for a schema and table:
/// `<schema>.<table>` when that fits Postgres's 63-byte limit, else a
/// prefix of it and a hash of the whole.
pub(crate) fn channel(schema: &Ident, table: &Ident) -> String {
    let full = format!("{schema}.{table}");
    if full.len() <= Ident::MAX_LEN {
        return full;
    }
    let hash = crate::ident::fnv1a(full.as_bytes());
    format!("{}.{hash:016x}", &full[..Ident::MAX_LEN - 17])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_fits() {
        let s = Ident::new("s", &"s".repeat(63)).unwrap();
        let t = Ident::new("t", &"t".repeat(63)).unwrap();
        let c = channel(&s, &t);
        assert_eq!(c.len(), 63);
        assert_eq!(channel(&Ident::new("s", "a").unwrap(), &t).len(), 63);
        assert_eq!(
            channel(
                &Ident::new("s", "public").unwrap(),
                &Ident::new("t", "x").unwrap()
            ),
            "public.x"
        );
    }
}
