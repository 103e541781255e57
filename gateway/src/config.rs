//! Gateway configuration: a small TOML file and/or repeated `--backend NAME=URL`.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! store = "memory://"            # redis://…, postgres://…, sqlite:PATH?mode=rwc (features)
//! policy = "push"                # push | every-access | bounded:500ms
//! max_body_bytes = 4194304
//! forbidden_status = 403         # or 404 to hide that a session id exists
//! idle_timeout = "300s"          # a node closes a live session unused this long
//! reap_interval = "30s"          # how often a node looks for expired sessions
//! direct_calls = true            # answer plain tools/call without rmcp's server
//!
//! [backends]
//! math = "http://127.0.0.1:9001/mcp"
//!
//! [tokens]                        # optional bearer tokens: token -> identity
//! "s3cr3t" = { issuer = "https://idp.example", subject = "alice" }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use session_core::{Binding, WorkloadId};
use session_manager::ValidationPolicy;

/// A backend MCP server the gateway aggregates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Its name: tools appear as `NAME__TOOL`.
    pub name: WorkloadId,
    /// Its streamable HTTP endpoint.
    pub url: String,
}

/// Everything a gateway node needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Store URL (`memory://`, `redis://`, `postgres://`, `sqlite:PATH?mode=rwc`), options in its query (see `session_manager::ConnectOptions`).
    pub store: String,
    /// Redis key prefix (ends with `:`) or Postgres schema; `None`: the store's default.
    pub store_prefix: Option<String>,
    /// The manager's validation policy (`None`: the manager's default).
    pub policy: Option<ValidationPolicy>,
    /// Backends, sorted by name.
    pub backends: Vec<BackendSpec>,
    /// Bearer token → identity. Empty: every caller is unauthenticated.
    pub tokens: BTreeMap<String, Binding>,
    /// Largest accepted request body (larger → 413).
    pub max_body_bytes: usize,
    /// Status for a caller presenting another identity's session (403 or 404).
    pub forbidden_status: u16,
    /// Hosts accepted in the `Host` header (empty: any; default loopback only).
    pub allowed_hosts: Vec<String>,
    /// A live session unused this long on a node is closed there, with
    /// rmcp's worker for it (`None`: the manager's default, 5 minutes).
    /// Storage and the backend sessions keep it.
    pub idle_timeout: Option<Duration>,
    /// How often a node checks that the client sessions whose backend
    /// sessions it has used still exist in storage (one `version` read per
    /// session); the backend sessions of vanished (expired) ones are
    /// deleted, once across nodes.
    pub reap_interval: Duration,
    /// Whether a node answers a plain `tools/call` itself, as one JSON
    /// response, instead of through rmcp's server (see
    /// [`crate::direct_call`]; default `true`).
    pub direct_calls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: "memory://".to_owned(),
            store_prefix: None,
            policy: None,
            backends: Vec::new(),
            tokens: BTreeMap::new(),
            max_body_bytes: 4 * 1024 * 1024,
            forbidden_status: 403,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            idle_timeout: None,
            reap_interval: Duration::from_secs(30),
            direct_calls: true,
        }
    }
}

/// A configuration error naming the offending line or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid (the message names line and column).
    #[error("invalid config file {path}: {message}")]
    Toml {
        /// The file.
        path: String,
        /// The parser's message, with the line.
        message: String,
    },
    /// A value is invalid.
    #[error("invalid {what} {value:?}: {why}")]
    Value {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        why: String,
    },
}

fn bad(what: &'static str, value: impl Into<String>, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Value {
        what,
        value: value.into(),
        why: why.to_string(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    store: Option<String>,
    store_prefix: Option<String>,
    policy: Option<String>,
    max_body_bytes: Option<usize>,
    forbidden_status: Option<u16>,
    allowed_hosts: Option<Vec<String>>,
    idle_timeout: Option<String>,
    reap_interval: Option<String>,
    direct_calls: Option<bool>,
    #[serde(default)]
    backends: BTreeMap<String, String>,
    #[serde(default)]
    tokens: BTreeMap<String, TokenIdentity>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIdentity {
    issuer: String,
    subject: String,
}

impl Config {
    /// Parses a TOML configuration (`path` is only used in messages).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut cfg = Self::default();
        if let Some(listen) = file.listen {
            cfg.listen = parse_listen(&listen)?;
        }
        if let Some(store) = file.store {
            cfg.store = store;
        }
        cfg.store_prefix = file.store_prefix;
        if let Some(policy) = file.policy {
            cfg.policy = Some(parse_policy(&policy)?);
        }
        if let Some(n) = file.max_body_bytes {
            cfg.max_body_bytes = n;
        }
        if let Some(on) = file.direct_calls {
            cfg.direct_calls = on;
        }
        if let Some(s) = file.forbidden_status {
            cfg.set_forbidden_status(s)?;
        }
        if let Some(hosts) = file.allowed_hosts {
            cfg.allowed_hosts = hosts;
        }
        if let Some(d) = file.idle_timeout {
            cfg.idle_timeout =
                Some(parse_duration(&d).map_err(|why| bad("idle_timeout", &d, why))?);
        }
        if let Some(d) = file.reap_interval {
            let every = parse_duration(&d).map_err(|why| bad("reap_interval", &d, why))?;
            if every.is_zero() {
                return Err(bad("reap_interval", d, "must be positive"));
            }
            cfg.reap_interval = every;
        }
        for (name, url) in file.backends {
            cfg.add_backend(&name, &url)?;
        }
        for (token, id) in file.tokens {
            let binding = Binding::identity(id.issuer.clone(), id.subject.clone())
                .map_err(|e| bad("token identity", format!("{}/{}", id.issuer, id.subject), e))?;
            cfg.tokens.insert(token, binding);
        }
        Ok(cfg)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Adds `NAME=URL` (the `--backend` syntax).
    pub fn add_backend_arg(&mut self, arg: &str) -> Result<(), ConfigError> {
        let (name, url) = arg
            .split_once('=')
            .ok_or_else(|| bad("--backend", arg, "expected NAME=URL"))?;
        self.add_backend(name, url)
    }

    /// Adds a backend.
    pub fn add_backend(&mut self, name: &str, url: &str) -> Result<(), ConfigError> {
        let id = WorkloadId::parse(name).map_err(|e| bad("backend name", name, e))?;
        if name.contains("__") {
            return Err(bad(
                "backend name",
                name,
                "must not contain `__` (tools are named NAME__TOOL)",
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(bad("backend url", url, "expected http://HOST[:PORT]/PATH"));
        }
        if self.backends.iter().any(|b| b.name == id) {
            return Err(bad("backend name", name, "given twice"));
        }
        self.backends.push(BackendSpec {
            name: id,
            url: url.to_owned(),
        });
        self.backends.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// Sets the status for a foreign-identity session (403 or 404).
    pub fn set_forbidden_status(&mut self, status: u16) -> Result<(), ConfigError> {
        if status != 403 && status != 404 {
            return Err(bad(
                "forbidden_status",
                status.to_string(),
                "must be 403 or 404",
            ));
        }
        self.forbidden_status = status;
        Ok(())
    }
}

/// Opens the store `url` names (its query may carry store options, see
/// [`session_manager::ConnectOptions`]), with `prefix` as the Redis key
/// prefix or the Postgres schema (`None`: the URL's, else the store's
/// default).
pub async fn connect_store(
    url: &str,
    prefix: Option<&str>,
) -> Result<std::sync::Arc<dyn session_core::SessionStore>, Box<dyn std::error::Error + Send + Sync>>
{
    let mut options = session_manager::ConnectOptions::new();
    if let Some(prefix) = prefix {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        options = match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" => options.prefix(prefix),
            "postgres" | "postgresql" => options.schema(prefix),
            _ => {
                return Err(format!(
                    "store_prefix {prefix:?} applies to redis:// and postgres:// stores, not {:?}",
                    session_core::redact_url(url)
                )
                .into());
            }
        };
    }
    Ok(options.connect(url).await?)
}

/// Parses `HOST:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|e| bad("listen address", s, e))
}

/// Parses `push`, `every-access` or `bounded:DURATION` (`500ms`, `2s`).
pub fn parse_policy(s: &str) -> Result<ValidationPolicy, ConfigError> {
    match s {
        "push" => Ok(ValidationPolicy::Push),
        "every-access" => Ok(ValidationPolicy::EveryAccess),
        _ => {
            let d = s.strip_prefix("bounded:").ok_or_else(|| {
                bad(
                    "policy",
                    s,
                    "expected push, every-access or bounded:DURATION",
                )
            })?;
            Ok(ValidationPolicy::BoundedStaleness(
                parse_duration(d).map_err(|why| bad("policy", s, why))?,
            ))
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        _ => Err(format!("bad duration unit in {s:?} (ms or s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_file() {
        let cfg = Config::from_toml(
            "listen = \"127.0.0.1:9\"\n[backends]\nmath = \"http://127.0.0.1:1/mcp\"\n[tokens]\nt = { issuer = \"i\", subject = \"s\" }\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(cfg.backends.len(), 1);
        assert_eq!(cfg.tokens.len(), 1);
        assert_eq!(cfg.listen.port(), 9);
        assert!(cfg.direct_calls, "on by default");
        let off = Config::from_toml("direct_calls = false\n", "x.toml").unwrap();
        assert!(!off.direct_calls);
    }

    #[test]
    fn errors_name_the_line_or_value() {
        let e = Config::from_toml("listen = \"x\"\nbogus = 1\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Config::from_toml("[backends]\nmath = \"ftp://x\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("ftp://x"), "{e}");
        let mut cfg = Config::default();
        let e = cfg.add_backend_arg("no-equals-sign").unwrap_err();
        assert!(e.to_string().contains("no-equals-sign"), "{e}");
        let e = cfg
            .add_backend_arg("a b=http://127.0.0.1:1/mcp")
            .unwrap_err();
        assert!(e.to_string().contains("a b"), "{e}");
        assert!(parse_policy("bounded:5x").is_err());
        assert!(parse_policy("bounded:500ms").is_ok());
    }
}
