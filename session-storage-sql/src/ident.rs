//! Validated SQL identifiers: the only way a schema or table name reaches
//! SQL text.

use std::fmt;

use session_core::ConfigError;

/// A schema or table name checked against `[a-z_][a-z0-9_]{0,62}` and
/// always written quoted, so no configured name can change a statement.
///
/// ```
/// use session_storage_sql::Ident;
///
/// assert_eq!(Ident::new("schema", "vmcp")?.quoted(), "\"vmcp\"");
/// assert!(Ident::new("schema", "Robert'); DROP TABLE x;--").is_err());
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident(String);

impl Ident {
    /// The longest identifier Postgres keeps without truncating.
    pub const MAX_LEN: usize = 63;

    /// Validates `name` for the setting called `setting` (used in the error).
    pub fn new(setting: &'static str, name: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { setting, reason };
        let bytes = name.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(invalid("must not be empty".to_owned()));
        };
        if bytes.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "{:?} is {} bytes, longer than {}",
                name,
                bytes.len(),
                Self::MAX_LEN
            )));
        }
        if !(first.is_ascii_lowercase() || first == b'_') {
            return Err(invalid(format!("{name:?} must start with [a-z_]")));
        }
        if let Some(bad) = bytes
            .iter()
            .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_'))
        {
            return Err(invalid(format!(
                "{name:?} holds {:?}; only [a-z0-9_] is allowed",
                char::from(*bad)
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in double quotes, as it is written into SQL.
    pub fn quoted(&self) -> String {
        // Validation admits no `"`, so quoting needs no escaping.
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// FNV-1a, 64 bit: a stable hash for advisory-lock keys and long channel
/// names (not for security).
#[cfg(feature = "postgres")]
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(Ident::new("t", "sessions").is_ok());
        assert!(Ident::new("t", "_x9").is_ok());
        assert!(Ident::new("t", &"a".repeat(63)).is_ok());
        assert!(Ident::new("t", &"a".repeat(64)).is_err());
        assert!(Ident::new("t", "").is_err());
        assert!(Ident::new("t", "9a").is_err());
        assert!(Ident::new("t", "Sessions").is_err());
        assert!(Ident::new("t", "a\"b").is_err());
        assert!(Ident::new("t", "a.b").is_err());
        assert!(Ident::new("t", "a-b").is_err());
    }
}
