//! Redaction of secrets in connection URLs, for `Debug` output, errors and logs.

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "passwd",
    "pwd",
    "sslpassword",
    "secret",
    "token",
    "auth",
    "access_token",
    "api_key",
    "apikey",
];

/// `url` with its secrets replaced by `***`: the password in the userinfo
/// (`scheme://user:***@host`; a user name alone is kept) and the values of
/// query parameters that carry secrets (`password`, `sslpassword`,
/// `token`, ...). Works on anything URL-shaped, with or without a scheme,
/// and never fails: text it cannot parse is returned with the same rules
/// applied to what it can find.
///
/// ```
/// use session_core::redact_url;
///
/// assert_eq!(redact_url("redis://:hunter2@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db/app?sslmode=require&password=x"),
///     "postgres://app:***@db/app?sslmode=require&password=***"
/// );
/// assert_eq!(redact_url("user:pw@host:1"), "user:***@host:1");
/// assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let (path_query, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    match path_query.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                        out.push_str(k);
                        out.push_str("=***");
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(path_query),
    }
    out.push_str(fragment);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_and_secret_params_only() {
        for (given, shown) in [
            ("redis://u:p@h:1/2", "redis://u:***@h:1/2"),
            ("rediss://default:p%40ss@h", "rediss://default:***@h"),
            ("redis://u@h", "redis://u@h"),
            (
                "unix:///tmp/redis.sock?pass=x&db=1",
                "unix:///tmp/redis.sock?pass=***&db=1",
            ),
            (
                "postgres://a:b@h/db?sslpassword=k#f",
                "postgres://a:***@h/db?sslpassword=***#f",
            ),
            (
                "postgres://h/db?user=a&Password=b",
                "postgres://h/db?user=a&Password=***",
            ),
            ("a:b@c", "a:***@c"),
            ("no url at all", "no url at all"),
            ("", ""),
            // `@` in the password itself: the last `@` ends the userinfo.
            ("redis://u:p@ss@h", "redis://u:***@h"),
        ] {
            assert_eq!(redact_url(given), shown, "{given}");
            assert!(!redact_url(given).contains("p@ss"));
        }
    }
}
