//! Every soak run works in a namespace of its own (a Redis key prefix or a
//! Postgres schema named after a random tag) and removes it at the end,
//! so runs can share servers with tests and other runs.

use std::sync::Arc;

use session_core::SessionStore;

/// Where a run's sessions live.
#[derive(Debug)]
pub enum Namespace {
    /// `memory://`: the three managers share one store in this process.
    Memory(String),
    /// A Redis key prefix of our own.
    Redis { url: String, prefix: String },
    /// A Postgres schema of our own (dropped at the end).
    Postgres {
        url: String,
        schema: String,
        base: String,
    },
    /// A SQLite file the caller named: our sessions are deleted at the end.
    Sqlite(String),
}

/// Store options that would take the run out of its own namespace.
const OWN: [&str; 3] = ["prefix", "schema", "table"];

impl Namespace {
    /// The run's namespace for the store `url` names.
    pub fn for_url(url: &str) -> Result<Self, String> {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        if let Some(opt) = query
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .find(|k| OWN.contains(k))
        {
            return Err(format!(
                "the soak picks its own {opt} (it removes everything in it at the end): drop `{opt}=` from the URL"
            ));
        }
        let tag = format!("{:08x}", rand::random::<u32>());
        let sep = if url.contains('?') { '&' } else { '?' };
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        Ok(match scheme {
            "memory" => Self::Memory(url.to_owned()),
            "redis" | "rediss" | "redis+unix" | "unix" => {
                let prefix = format!("soak:{tag}:");
                Self::Redis {
                    url: format!("{url}{sep}prefix={prefix}"),
                    prefix,
                }
            }
            "postgres" | "postgresql" => {
                let schema = format!("soak_{tag}");
                Self::Postgres {
                    url: format!("{url}{sep}schema={schema}"),
                    base: sqlx_url(url),
                    schema,
                }
            }
            _ if url.starts_with("sqlite:") => Self::Sqlite(url.to_owned()),
            _ => {
                return Err(format!(
                    "unsupported store URL {}",
                    session_core::redact_url(url)
                ));
            }
        })
    }

    /// The URL every node connects with.
    pub fn url(&self) -> &str {
        match self {
            Self::Memory(u) | Self::Sqlite(u) => u,
            Self::Redis { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    /// Whether the three managers run in this process (memory).
    pub fn in_process(&self) -> bool {
        matches!(self, Self::Memory(_))
    }

    /// For the summary.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory(_) => "one MemoryStore shared by three managers in one process".into(),
            Self::Redis { prefix, .. } => format!("key prefix {prefix}, removed at the end"),
            Self::Postgres { schema, .. } => format!("schema {schema}, dropped at the end"),
            Self::Sqlite(_) => "the SQLite file given; sessions deleted at the end".into(),
        }
    }

    /// Removes what the run left: every session in the namespace (deleted
    /// through the store, so this also works for a cluster), and the
    /// Postgres schema.
    pub async fn clean(&self, store: &Arc<dyn SessionStore>) -> Result<(), String> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis { .. } | Self::Sqlite(_) => delete_all(store).await,
            Self::Postgres { schema, base, .. } => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(base)
                    .await
                    .map_err(|e| format!("connecting to drop schema {schema}: {e}"))?;
                // `schema` is `soak_` and eight hex digits, made here.
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| format!("dropping schema {schema}: {e}"))?;
                Ok(())
            }
        }
    }
}

/// Deletes every session the store scans.
async fn delete_all(store: &Arc<dyn SessionStore>) -> Result<(), String> {
    let err = |e: session_core::Error| session_core::display_chain(&e);
    let mut cursor = None;
    loop {
        let page = store.scan(cursor.as_ref(), 500).await.map_err(err)?;
        for id in &page.ids {
            store.delete(id).await.map_err(err)?;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// The URL without the store's own options, for a plain sqlx connection.
fn sqlx_url(url: &str) -> String {
    const SQLX: [&str; 11] = [
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "application_name",
        "options",
        "host",
        "port",
        "dbname",
        "user",
        "password",
    ];
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| SQLX.contains(&kv.split('=').next().unwrap_or("")))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_gets_its_own_namespace() {
        let a = Namespace::for_url("redis://127.0.0.1:6379").unwrap();
        let b = Namespace::for_url("redis://127.0.0.1:6379").unwrap();
        assert_ne!(a.url(), b.url());
        assert!(a.url().starts_with("redis://127.0.0.1:6379?prefix=soak:"));
        let p = Namespace::for_url("postgres://u@h/db?sslmode=disable&pool_size=4").unwrap();
        let Namespace::Postgres { url, base, schema } = &p else {
            panic!("{p:?}")
        };
        assert_eq!(
            url,
            &format!("postgres://u@h/db?sslmode=disable&pool_size=4&schema={schema}")
        );
        assert_eq!(base, "postgres://u@h/db?sslmode=disable");
        assert!(Namespace::for_url("memory://").unwrap().in_process());
    }

    #[test]
    fn refuses_a_namespace_it_did_not_pick() {
        for url in [
            "redis://h?prefix=x:",
            "postgres://h/db?schema=public",
            "sqlite:x.db?table=t",
        ] {
            assert!(Namespace::for_url(url).is_err(), "{url}");
        }
        assert!(Namespace::for_url("ftp://h").is_err());
    }
}
