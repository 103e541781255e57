//! Who a session is bound to.

use std::fmt;

use crate::error::InvalidInput;

/// The encoded form of an anonymous session's binding.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The identity a session is bound to, stored under
/// [`crate::keys::IDENTITY_BINDING`] as `issuer \0 subject`, or
/// `unauthenticated`.
///
/// ```
/// use session_core::Binding;
///
/// let b = Binding::identity("https://idp.example", "alice")?;
/// assert_eq!(b.encode(), "https://idp.example\0alice");
/// assert_eq!(Binding::decode(&b.encode()), Some(b.clone()));
/// assert!(b.matches_encoded("https://idp.example\0alice"));
/// assert!(!b.matches_encoded("https://idp.example\0mallory"));
/// # Ok::<(), session_core::InvalidInput>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Binding {
    /// No authenticated caller.
    Unauthenticated,
    /// An authenticated caller.
    Identity {
        /// Token issuer.
        issuer: String,
        /// Subject within the issuer.
        subject: String,
    },
}

impl Binding {
    /// A binding to `subject` at `issuer`; both non-empty, no NUL byte.
    pub fn identity(
        issuer: impl Into<String>,
        subject: impl Into<String>,
    ) -> Result<Self, InvalidInput> {
        let (issuer, subject) = (issuer.into(), subject.into());
        if issuer.is_empty() || issuer.contains('\0') {
            return Err(InvalidInput::Binding { part: "issuer" });
        }
        if subject.is_empty() || subject.contains('\0') {
            return Err(InvalidInput::Binding { part: "subject" });
        }
        Ok(Self::Identity { issuer, subject })
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        match self {
            Self::Unauthenticated => UNAUTHENTICATED.to_owned(),
            Self::Identity { issuer, subject } => format!("{issuer}\0{subject}"),
        }
    }

    /// Parses the stored form; `None` if it is neither form.
    pub fn decode(s: &str) -> Option<Self> {
        if s == UNAUTHENTICATED {
            return Some(Self::Unauthenticated);
        }
        let (issuer, subject) = s.split_once('\0')?;
        Self::identity(issuer, subject).ok()
    }

    /// Compares against a stored binding in time that depends only on the
    /// lengths, not on where the bytes first differ.
    pub fn matches_encoded(&self, stored: &str) -> bool {
        constant_time_eq(self.encode().as_bytes(), stored.as_bytes())
    }
}

impl fmt::Debug for Binding {
    /// Redacts the subject: it is personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str("Unauthenticated"),
            Self::Identity { issuer, .. } => write!(f, "Identity({issuer}, <redacted>)"),
        }
    }
}

/// Byte-slice equality whose running time does not reveal the position of
/// the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
