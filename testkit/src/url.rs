//! Pointing a server URL at a proxy: find the address a URL dials
//! ([`upstream_of`]) and rewrite its host and port ([`through`]), keeping
//! the scheme, user, password, path and query as they are.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The port a scheme dials when the URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "redis" | "rediss" => Some(6379),
        "postgres" | "postgresql" => Some(5432),
        _ => None,
    }
}

/// `(scheme, start, end)`: the byte range of `host[:port]` in `url`.
fn authority(url: &str) -> io::Result<(&str, usize, usize)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "not a scheme://host URL");
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let start = scheme.len() + 3;
    let end = rest.find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    // The user info ends at the last '@' of the authority.
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    if host_start == end {
        return Err(bad());
    }
    Ok((scheme, host_start, end))
}

/// The socket address `url` dials (its host resolved, a loopback address
/// preferred, the scheme's default port if it names none: 6379 for
/// `redis`/`rediss`, 5432 for `postgres`/`postgresql`).
///
/// ```
/// let addr = session_testkit::url::upstream_of("redis://:pw@127.0.0.1/0").unwrap();
/// assert_eq!(addr, "127.0.0.1:6379".parse().unwrap());
/// ```
pub fn upstream_of(url: &str) -> io::Result<SocketAddr> {
    let (scheme, start, end) = authority(url)?;
    let host_port = &url[start..end];
    let has_port = if host_port.starts_with('[') {
        host_port.contains("]:")
    } else {
        host_port.contains(':')
    };
    let full = if has_port {
        host_port.to_owned()
    } else {
        let port = default_port(scheme).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no port in the URL and no default one for {scheme}"),
            )
        })?;
        format!("{host_port}:{port}")
    };
    let addrs: Vec<SocketAddr> = full.to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{full} does not resolve")))
}

/// `url` with its host and port replaced by `proxy`'s.
///
/// ```
/// let proxy = "127.0.0.1:4000".parse().unwrap();
/// assert_eq!(
///     session_testkit::url::through("postgres://u:p@localhost/db?x=1", proxy).unwrap(),
///     "postgres://u:p@127.0.0.1:4000/db?x=1"
/// );
/// ```
pub fn through(url: &str, proxy: SocketAddr) -> io::Result<String> {
    let (_, start, end) = authority(url)?;
    Ok(format!("{}{proxy}{}", &url[..start], &url[end..]))
}

/// A Postgres `url` with TLS turned off (`sslmode=disable` appended
/// unless it names an `sslmode`), so [`FaultProxy::drop_replies_to`]
/// can match request bytes: with sqlx's default `sslmode=prefer` and a
/// server that offers TLS, the proxy only sees ciphertext.
///
/// [`FaultProxy::drop_replies_to`]: crate::FaultProxy::drop_replies_to
///
/// ```
/// use session_testkit::url::plaintext;
/// assert_eq!(plaintext("postgres://h/db"), "postgres://h/db?sslmode=disable");
/// assert_eq!(plaintext("postgres://h/db?x=1"), "postgres://h/db?x=1&sslmode=disable");
/// ```
pub fn plaintext(url: &str) -> String {
    if url.contains("sslmode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_rewrites_the_authority() {
        let p: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            upstream_of("redis://127.0.0.1:7001").unwrap(),
            "127.0.0.1:7001".parse().unwrap()
        );
        assert_eq!(
            upstream_of("postgres://postgres@127.0.0.1/test").unwrap(),
            "127.0.0.1:5432".parse().unwrap()
        );
        assert_eq!(
            upstream_of("redis://[::1]:7000").unwrap(),
            "[::1]:7000".parse().unwrap()
        );
        assert_eq!(
            through("redis://127.0.0.1:6379", p).unwrap(),
            "redis://127.0.0.1:9"
        );
        assert_eq!(
            through("redis://u:p@w@h:1/2?q#f", p).unwrap(),
            "redis://u:p@w@127.0.0.1:9/2?q#f"
        );
        assert!(through("no-scheme", p).is_err());
        assert!(upstream_of("redis://").is_err());
        assert!(upstream_of("http://127.0.0.1").is_err());
    }
}
