//! Taking a store URL apart: its scheme, the query pairs (ours are parsed
//! off, the driver's are passed on untouched), and the value syntaxes of
//! our options.

use std::time::Duration;

use super::error::ConnectError;

/// A store URL with its query split into pairs.
pub(crate) struct SplitUrl<'a> {
    /// Everything before `?` (for a `redis`/`postgres` URL, what the driver
    /// parses, together with the pairs passed on).
    pub(crate) base: &'a str,
    /// The raw `key=value` pairs of the query, in order.
    pub(crate) pairs: Vec<&'a str>,
    /// `#...`, kept for the driver (redis-rs reads `#insecure`).
    pub(crate) fragment: &'a str,
}

impl<'a> SplitUrl<'a> {
    pub(crate) fn new(url: &'a str) -> Self {
        let (rest, fragment) = match url.find('#') {
            Some(i) => url.split_at(i),
            None => (url, ""),
        };
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        Self {
            base,
            pairs: query.split('&').filter(|p| !p.is_empty()).collect(),
            fragment,
        }
    }

    /// The URL the driver gets: the base, the `kept` pairs, the fragment.
    pub(crate) fn rebuild(&self, kept: &[&str]) -> String {
        let mut out = self.base.to_owned();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        out.push_str(self.fragment);
        out
    }
}

/// The scheme of `url`: the text before `://`, or `sqlite` for sqlx's
/// `sqlite:` forms (`sqlite:file.db`, `sqlite::memory:`).
pub(crate) fn scheme(url: &str) -> Option<&str> {
    if let Some((scheme, _)) = url.split_once("://") {
        return Some(scheme);
    }
    url.starts_with("sqlite:").then_some("sqlite")
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query key or value.
pub(crate) fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

fn invalid(option: &'static str, value: &str, expected: &'static str) -> ConnectError {
    ConnectError::InvalidOption {
        option,
        value: hide_userinfo(value),
        expected,
    }
}

/// `text` as an error may show it: when it holds an `@`, everything before
/// the last one is replaced by `***`. No option name or value we read
/// contains an `@`; one that does is userinfo that spilled out of the
/// authority (a password with a raw `?`, `#` or `/`, such as
/// `redis://u:ab?cd@host`, puts `cd@host` in the query), and must not be
/// echoed. Found by the `connect_url` fuzz target.
pub(crate) fn hide_userinfo(text: &str) -> String {
    match text.rfind('@') {
        Some(at) => format!("***{}", &text[at..]),
        None => text.to_owned(),
    }
}

/// A duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d`
/// (`500ms`, `30s`, `30m`, `12h`, `1d`).
pub(crate) fn duration(option: &'static str, value: &str) -> Result<Duration, ConnectError> {
    const EXPECTED: &str = "a whole number and a unit: ms, s, m, h or d (e.g. 500ms, 30m)";
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| invalid(option, value, EXPECTED))?;
    let secs = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| invalid(option, value, EXPECTED))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(invalid(option, value, EXPECTED)),
    }
}

/// `true` or `false`.
pub(crate) fn boolean(option: &'static str, value: &str) -> Result<bool, ConnectError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(option, value, "true or false")),
    }
}

/// A whole number.
pub(crate) fn number<T: std::str::FromStr>(
    option: &'static str,
    value: &str,
) -> Result<T, ConnectError> {
    value
        .parse()
        .map_err(|_| invalid(option, value, "a whole number"))
}

/// A fraction in `0.0..=1.0`.
pub(crate) fn fraction(option: &'static str, value: &str) -> Result<f64, ConnectError> {
    match value.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(invalid(option, value, "a number from 0 to 1")),
    }
}

/// `off` or a duration (the cleanup interval).
pub(crate) fn interval(
    option: &'static str,
    value: &str,
) -> Result<Option<Duration>, ConnectError> {
    if value == "off" {
        return Ok(None);
    }
    duration(option, value)
        .map(Some)
        .map_err(|_| invalid(option, value, "off, or an interval such as 60s or 5m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rebuilds() {
        let u = SplitUrl::new("rediss://:pw@h:6380/0?prefix=gw:&protocol=3#insecure");
        assert_eq!(u.base, "rediss://:pw@h:6380/0");
        assert_eq!(u.pairs, ["prefix=gw:", "protocol=3"]);
        assert_eq!(u.fragment, "#insecure");
        assert_eq!(
            u.rebuild(&["protocol=3"]),
            "rediss://:pw@h:6380/0?protocol=3#insecure"
        );
        assert_eq!(u.rebuild(&[]), "rediss://:pw@h:6380/0#insecure");
        let u = SplitUrl::new("sqlite::memory:");
        assert_eq!((u.base, u.pairs.len()), ("sqlite::memory:", 0));
    }

    #[test]
    fn finds_schemes() {
        assert_eq!(scheme("redis+unix:///tmp/r.sock"), Some("redis+unix"));
        assert_eq!(scheme("sqlite:data.db"), Some("sqlite"));
        assert_eq!(scheme("sqlite::memory:"), Some("sqlite"));
        assert_eq!(scheme("sqlite://x.db?mode=rwc"), Some("sqlite"));
        assert_eq!(scheme("admin:pw@host:5432/db"), None);
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(decode("gw%3Aa%3a"), "gw:a:");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
    }

    #[test]
    fn parses_values() {
        assert_eq!(duration("ttl", "30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(
            duration("ttl", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(duration("ttl", "2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["30", "m", "1.5s", "-1s", "3 s", "18446744073709551615d"] {
            let err = duration("ttl", bad).unwrap_err();
            assert!(
                matches!(&err, ConnectError::InvalidOption { option: "ttl", value, .. } if value == bad),
                "{bad}: {err:?}"
            );
        }
        assert!(boolean("listen", "false").is_ok_and(|b| !b));
        assert!(boolean("listen", "no").is_err());
        assert_eq!(number::<u32>("pool_size", "8").unwrap(), 8);
        assert!(number::<u32>("pool_size", "-1").is_err());
        assert!(fraction("slide_fraction", "0.25").is_ok());
        assert!(fraction("slide_fraction", "1.5").is_err());
        assert_eq!(interval("cleanup", "off").unwrap(), None);
        assert_eq!(
            interval("cleanup", "5m").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert!(interval("cleanup", "never").is_err());
    }
}
