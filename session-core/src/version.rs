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
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
