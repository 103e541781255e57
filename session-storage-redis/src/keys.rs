//! The key layout: one hash per session at `prefix + id`, and the change
//! channel derived from the prefix.

use session_core::{ConfigError, SessionId};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "vmcp:session:";

/// The suffix appended to the prefix to name the change channel.
const CHANNEL_SUFFIX: &str = "changes";

/// Characters that `SCAN MATCH` treats as glob syntax; a prefix holding one
/// would make the scan pattern match other prefixes' keys.
const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '\\'];

/// A validated key prefix: non-empty, visible ASCII, ends with `:`, holds
/// no glob character (so `prefix*` matches exactly this prefix's keys) and
/// no `{` or `}`: a Redis Cluster hash tag in the prefix would put every
/// session in one slot, on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPrefix {
    prefix: String,
    channel: String,
    pattern: String,
}

impl KeyPrefix {
    /// Validates `prefix`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let invalid = |reason: &str| ConfigError::Invalid {
            setting: "key prefix",
            reason: format!("{prefix:?}: {reason}"),
        };
        if prefix.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if !prefix.ends_with(':') {
            return Err(invalid("must end with ':'"));
        }
        if let Some(c) = prefix.chars().find(|c| GLOB_CHARS.contains(c)) {
            return Err(invalid(&format!("holds glob character {c:?}")));
        }
        if let Some(c) = prefix.chars().find(|c| matches!(c, '{' | '}')) {
            return Err(invalid(&format!(
                "holds {c:?}: a hash tag would pin every session to one cluster slot"
            )));
        }
        if !prefix.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(invalid("must be visible ASCII without spaces"));
        }
        Ok(Self {
            channel: format!("{prefix}{CHANNEL_SUFFIX}"),
            pattern: format!("{prefix}*"),
            prefix,
        })
    }

    /// The prefix itself.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The key of `id`'s hash.
    pub fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + id.as_str().len());
        key.push_str(&self.prefix);
        key.push_str(id.as_str());
        key
    }

    /// The pub/sub channel changes under this prefix are published on:
    /// `prefix + "changes"` (channels and keys are separate namespaces).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The `SCAN MATCH` pattern for this prefix's keys.
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The session id a key under this prefix names, if it is one.
    pub(crate) fn id_of(&self, key: &[u8]) -> Option<SessionId> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        SessionId::parse(std::str::from_utf8(rest).ok()?).ok()
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_prefix() {
        assert!(KeyPrefix::new("vmcp:session:").is_ok());
        for bad in [
            "", "nocolon", "a*:", "a?:", "a[b]:", "a\\:", "a b:", "é:", "{vmcp}:", "a{:", "a}:",
        ] {
            assert!(KeyPrefix::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn key_channel_and_id_round_trip() {
        let p = KeyPrefix::new("t:").unwrap();
        let id = SessionId::parse("abc").unwrap();
        assert_eq!(p.key(&id), "t:abc");
        assert_eq!(p.channel(), "t:changes");
        assert_eq!(p.pattern(), "t:*");
        assert_eq!(p.id_of(b"t:abc"), Some(id));
        assert_eq!(p.id_of(b"u:abc"), None);
        assert_eq!(p.id_of(b"t:"), None);
    }
}
