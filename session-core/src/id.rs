//! Identifiers: the gateway session id and a backend workload id.

use std::fmt;
use std::sync::Arc;

use crate::error::InvalidInput;

/// The longest accepted session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;
/// The longest accepted workload id, in bytes (a DNS name's limit).
pub const MAX_WORKLOAD_ID_LEN: usize = 253;

/// A gateway client session id (the `Mcp-Session-Id` header value).
///
/// New ids are random UUIDv4 strings: 16 bytes read from the operating
/// system's CSPRNG (`getrandom`: the `getrandom(2)` system call on Linux)
/// for every id, of which 122 bits are random (the other 6 mark version 4
/// and the RFC 9562 variant). Knowing any number of other ids does not
/// help guess one: 122 bits means about 2^61 live sessions before two ids
/// are expected to collide, and a guess hits one of `n` live sessions with
/// probability `n / 2^122`. The bytes come straight from the OS, not from a
/// user-space generator, whatever features other crates enable on `uuid`.
///
/// Parsing accepts what the MCP specification allows in the header: 1 to 128
/// bytes of visible ASCII (`0x21..=0x7E`), so ids minted by another gateway
/// can still be looked up. Cloning is cheap (the string is shared).
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::generate();
/// assert_eq!(id.as_str().len(), 36);
/// assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
/// assert!(SessionId::parse("has space").is_err());
/// assert!(SessionId::parse("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// A new random id: a UUIDv4 whose 122 random bits come from the
    /// operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system has no random source to read (no
    /// `getrandom(2)` or `/dev/urandom`): an id must never be predictable.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        Self(Arc::from(uuid.hyphenated().to_string()))
    }

    /// Parses an id received from a client or read from storage.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.len() > MAX_SESSION_ID_LEN {
            return Err(InvalidInput::SessionIdLength { len: s.len() });
        }
        if let Some(pos) = s.bytes().position(|b| !(0x21..=0x7E).contains(&b)) {
            return Err(InvalidInput::SessionIdByte {
                byte: s.as_bytes()[pos],
                pos,
            });
        }
        Ok(Self(Arc::from(s)))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", &*self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The name of a backend MCP server (a workload) behind the gateway.
///
/// 1 to 253 bytes of `[A-Za-z0-9._-]`: no comma (the list separator in
/// `vmcp.backend.ids`), no whitespace, nothing that needs escaping in a key.
///
/// ```
/// use session_core::WorkloadId;
///
/// assert!(WorkloadId::parse("github-mcp.v2").is_ok());
/// assert!(WorkloadId::parse("a,b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId(Arc<str>);

impl WorkloadId {
    /// Parses a workload name.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.len() > MAX_WORKLOAD_ID_LEN {
            return Err(InvalidInput::WorkloadIdLength { len: s.len() });
        }
        if let Some(pos) = s
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
        {
            return Err(InvalidInput::WorkloadIdByte {
                byte: s.as_bytes()[pos],
                pos,
            });
        }
        Ok(Self(Arc::from(s)))
    }

    /// The workload name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkloadId({})", &*self.0)
    }
}

impl std::str::FromStr for WorkloadId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for WorkloadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
