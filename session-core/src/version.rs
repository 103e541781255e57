//! The per-session write counter used for compare-and-set.

use std::fmt;

/// How many writes a stored session has seen: 1 on create, +1 on every
/// applied update. Every write after creation names the version it expects.
///
/// ```
/// use session_core::Version;
///
/// assert_eq!(Version::INITIAL.next(), Version::new(2));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Version(u64);

impl Version {
    /// The version of a freshly created record.
    pub const INITIAL: Version = Version(1);

    /// The highest version any store holds: 2^53 - 1, the largest integer
    /// every backend represents exactly (a Lua double in Redis scripts, a
    /// JSON number). An update of a record at this version is refused with
    /// [`Error::VersionLimit`](crate::Error::VersionLimit); a stored version
    /// above it is corrupt.
    pub const MAX: Version = Version((1 << 53) - 1);

    /// Wraps a raw counter (as read from storage).
    pub const fn new(v: u64) -> Self {
        Self(v)
    }

    /// The raw counter.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version an applied write produces.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The version an applied write produces, or `None` past [`Version::MAX`].
    #[must_use]
    pub const fn checked_next(self) -> Option<Self> {
        if self.0 >= Self::MAX.0 {
            None
        } else {
            Some(Self(self.0 + 1))
        }
    }

    /// The one rule every store applies to a stored version in text form:
    /// 1 to 16 ASCII decimal digits, no sign, no leading zero, and at most
    /// [`Version::MAX`]. `None` for anything else (the record is corrupt).
    ///
    /// ```
    /// use session_core::Version;
    ///
    /// assert_eq!(Version::from_stored_text(b"42"), Some(Version::new(42)));
    /// for bad in [&b"0"[..], b"+5", b"-1", b"05", b"", b"9007199254740992", b"\xff"] {
    ///     assert_eq!(Version::from_stored_text(bad), None);
    /// }
    /// assert_eq!(Version::from_stored_text(b"9007199254740991"), Some(Version::MAX));
    /// ```
    pub fn from_stored_text(raw: &[u8]) -> Option<Self> {
        if raw.is_empty() || raw.len() > 16 || raw[0] == b'0' || !raw.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let v = raw
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        (v <= Self::MAX.0).then_some(Self(v))
    }

    /// The same rule for a version stored as an integer (SQL `bigint`):
    /// 1..=[`Version::MAX`].
    pub fn from_stored_int(raw: i64) -> Option<Self> {
        u64::try_from(raw)
            .ok()
            .filter(|v| (1..=Self::MAX.0).contains(v))
            .map(Self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
