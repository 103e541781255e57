//! Properties the `connect_url` fuzz target checks, written once: the
//! fuzz target calls them on libFuzzer's inputs and the unit test below
//! replays the committed seed corpus (`fuzz/corpus/connect_url/`).
//! Parsing only: nothing is dialled.
//!
//! **Not part of the API** (feature `fuzzing`, for the repository's
//! `fuzz/` package only); it may change in any release.

use std::fmt::Write as _;
use std::time::Duration;

use session_core::StoreConfig;

use super::error::ConnectError;
use super::options::{Cleanup, ConnectOptions, Kind};
use super::url::{self, SplitUrl};

/// A password planted in the URLs checked, to look for in errors.
const PLANTED: &str = "Fz9PlantedPassw0rd";

const KINDS: [Kind; 4] = [Kind::Memory, Kind::Redis, Kind::Postgres, Kind::Sqlite];

/// The `connect` URL parser on arbitrary text (invalid UTF-8 is skipped:
/// `connect` takes `&str`):
///
/// 1. what `connect` decides before dialling (scheme, options, driver URL,
///    expiry settings) is consistent: the kind is the scheme's, the error
///    is the typed one for the URL's fault;
/// 2. for every kind of store, splitting the query is idempotent (the
///    driver's URL re-splits to no options and itself), keeps the driver's
///    pairs in order, and the options parsed round-trip through a rendered
///    query; an error is `UnknownOption`, `InvalidOption` or
///    `RepeatedOption` naming one of that store's options;
/// 3. a password planted in the URL's userinfo never appears in an
///    error's `Display`, `Debug` or source chain.
pub fn connect_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    planned(text);
    for kind in KINDS {
        resolved(kind, text);
    }
    if !text.contains(PLANTED) {
        let planted = match text.find("://") {
            Some(i) => format!("{}user:{PLANTED}@{}", &text[..i + 3], &text[i + 3..]),
            None => format!("user:{PLANTED}@{text}"),
        };
        if let Err(err) = ConnectOptions::new().plan(&planted) {
            assert_secret_kept(&planted, &err);
        }
        for kind in KINDS {
            if let Err(err) = ConnectOptions::new().resolve(kind, &planted) {
                assert_secret_kept(&planted, &err);
            }
        }
    }
}

fn assert_secret_kept(url: &str, err: &ConnectError) {
    let mut shown = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let _ = write!(shown, "\n{s}\n{s:?}");
        source = s.source();
    }
    assert!(
        !shown.contains(PLANTED),
        "the password of {url:?} is shown:\n{shown}"
    );
}

fn planned(text: &str) {
    let scheme = url::scheme(text);
    match ConnectOptions::new().plan(text) {
        Ok(plan) => {
            let expected = match scheme {
                Some("memory") => Kind::Memory,
                Some("redis" | "rediss" | "redis+unix" | "unix") => Kind::Redis,
                Some("postgres" | "postgresql") => Kind::Postgres,
                Some("sqlite") => Kind::Sqlite,
                other => panic!("{text:?}: planned a store for scheme {other:?}"),
            };
            assert_eq!(plan.kind, expected);
            let (options, driver_url) = ConnectOptions::new().resolve(plan.kind, text).unwrap();
            assert_eq!((&plan.options, &plan.driver_url), (&options, &driver_url));
            assert_eq!(
                plan.store.ttl(),
                options.ttl.unwrap_or(StoreConfig::DEFAULT_TTL)
            );
        }
        Err(ConnectError::NoScheme(shown)) => {
            assert!(scheme.is_none());
            assert_eq!(shown, session_core::redact_url(text));
        }
        Err(ConnectError::UnsupportedScheme(s)) => {
            assert_eq!(scheme.map(url::hide_userinfo).as_deref(), Some(s.as_str()));
            assert!(!matches!(
                s.as_str(),
                "memory"
                    | "redis"
                    | "rediss"
                    | "redis+unix"
                    | "unix"
                    | "postgres"
                    | "postgresql"
                    | "sqlite"
            ));
        }
        Err(ConnectError::FeatureDisabled { scheme: s, feature }) => {
            assert_eq!(Some(s.as_str()), scheme);
            assert!(matches!(feature, "redis" | "postgres" | "sqlite"));
        }
        Err(ConnectError::Store { source, .. }) => {
            // Only the expiry settings are checked before dialling.
            assert!(
                matches!(source, session_core::Error::InvalidInput(_)),
                "{source:?}"
            );
        }
        Err(err) => assert_resolve_error(text, &err),
    }
}

/// An error of `resolve` names an option of the store and nothing else.
fn assert_resolve_error(text: &str, err: &ConnectError) {
    match err {
        ConnectError::UnknownOption { .. } => {}
        ConnectError::InvalidOption { option, value, .. } => {
            assert!(KINDS.iter().any(|k| k.ours().contains(option)));
            assert!(
                value == "***"
                    || SplitUrl::new(text)
                        .pairs
                        .iter()
                        .any(|p| url::hide_userinfo(&url::decode(
                            p.split_once('=').map_or("", |(_, v)| v)
                        )) == *value),
                "{text:?}: {err:?} names a value the URL does not hold"
            );
        }
        ConnectError::RepeatedOption(option) => {
            assert!(KINDS.iter().any(|k| k.ours().contains(option)));
        }
        ConnectError::SpilledUserinfo => {
            let split = SplitUrl::new(text);
            assert!(!split.base.contains('@') && split.pairs.iter().any(|p| p.contains('@')));
        }
        other => panic!("{text:?}: splitting the query gave {other:?}"),
    }
}

fn resolved(kind: Kind, text: &str) {
    let split = SplitUrl::new(text);
    let (options, driver_url) = match ConnectOptions::new().resolve(kind, text) {
        Ok(ok) => ok,
        Err(err) => {
            if let ConnectError::UnknownOption { store, .. } = &err {
                assert_eq!(*store, kind.name());
            }
            assert_resolve_error(text, &err);
            return;
        }
    };
    // The driver's URL: the base, the driver's pairs in order, the fragment.
    let kept: Vec<&str> = split
        .pairs
        .iter()
        .copied()
        .filter(|p| {
            let key = url::decode(p.split_once('=').map_or(*p, |(k, _)| k));
            !kind.ours().contains(&key.as_str())
        })
        .collect();
    assert_eq!(driver_url, split.rebuild(&kept), "{text:?}");
    // Idempotent: nothing of ours is left in it.
    let again = ConnectOptions::new().resolve(kind, &driver_url);
    assert!(
        matches!(&again, Ok((o, u)) if *o == ConnectOptions::default() && *u == driver_url),
        "{text:?}: re-split gave {again:?}"
    );
    // The options round-trip through a rendered query.
    let rendered = format!("{}?{}{}", split.base, render(&options), split.fragment);
    let back = ConnectOptions::new().resolve(kind, &rendered);
    assert!(
        matches!(&back, Ok((o, _)) if *o == options),
        "{text:?}: {options:?} rendered as {rendered:?} gave {back:?}"
    );
}

/// `options` as a URL query.
fn render(options: &ConnectOptions) -> String {
    fn duration(d: Duration) -> String {
        if d.subsec_nanos() == 0 {
            format!("{}s", d.as_secs())
        } else {
            format!("{}ms", d.as_millis())
        }
    }
    fn text(s: &str) -> String {
        s.bytes().fold(String::new(), |mut out, b| {
            if b.is_ascii_alphanumeric() {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
    }
    let ConnectOptions {
        ttl,
        max_lifetime,
        slide_fraction,
        prefix,
        connect_timeout,
        response_timeout,
        reconnect_retries,
        schema,
        table,
        pool_size,
        acquire_timeout,
        statement_timeout,
        migrate,
        listen,
        busy_timeout,
        cleanup,
    } = options;
    let durations = [
        ("ttl", ttl),
        ("max_lifetime", max_lifetime),
        ("connect_timeout", connect_timeout),
        ("response_timeout", response_timeout),
        ("acquire_timeout", acquire_timeout),
        ("statement_timeout", statement_timeout),
        ("busy_timeout", busy_timeout),
    ];
    let mut pairs: Vec<String> = durations
        .into_iter()
        .filter_map(|(k, v)| v.map(|d| format!("{k}={}", duration(d))))
        .collect();
    for (k, v) in [("prefix", prefix), ("schema", schema), ("table", table)] {
        if let Some(v) = v {
            pairs.push(format!("{k}={}", text(v)));
        }
    }
    for (k, v) in [("migrate", migrate), ("listen", listen)] {
        if let Some(v) = v {
            pairs.push(format!("{k}={v}"));
        }
    }
    if let Some(f) = slide_fraction {
        pairs.push(format!("slide_fraction={f}"));
    }
    if let Some(n) = reconnect_retries {
        pairs.push(format!("reconnect_retries={n}"));
    }
    if let Some(n) = pool_size {
        pairs.push(format!("pool_size={n}"));
    }
    match cleanup {
        Some(Cleanup::Off) => pairs.push("cleanup=off".to_owned()),
        Some(Cleanup::Every(d)) => pairs.push(format!("cleanup={}", duration(*d))),
        None => {}
    }
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_url_corpus_holds_the_properties() {
        assert!(session_core::__fuzz::replay("connect_url", connect_url) >= 5);
    }

    #[test]
    #[should_panic(expected = "is shown")]
    fn a_planted_password_is_found_when_shown() {
        assert_secret_kept("u", &ConnectError::UnsupportedScheme(format!("x{PLANTED}")));
    }
}
