//! Idempotency tokens for writes: a [`WriteId`] names one logical write so
//! that a retry after a lost reply is recognised instead of applied again.

use std::fmt;

use crate::error::InvalidInput;
use crate::version::Version;

/// The URL-safe base64 alphabet (RFC 4648 §5), the text form's digits.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The id of one logical write (a create or an update), for retrying it
/// after a lost reply without applying it twice.
///
/// 128 random bits from the operating system's CSPRNG. A store keeps the
/// ids of a record's last [`WriteId::RECENT`] applied writes, each with
/// the version it produced, and a write whose id is among them is not
/// applied again: it reports that original outcome
/// ([`Update::Applied`](crate::Update::Applied) with the version it
/// produced, or the created version). So a caller whose reply was lost
/// (a reset connection, a timeout) retries the *same* write with the
/// *same* id; a new edit (after a real conflict) takes a new id.
///
/// The text form is 22 characters of URL-safe base64 without padding
/// (`[A-Za-z0-9_-]`), as stored in Redis and SQL. `Debug` shows only its
/// first 8 characters: enough to follow one write through logs.
///
/// ```
/// use session_core::WriteId;
///
/// let w = WriteId::generate();
/// let text = w.to_string();
/// assert_eq!(text.len(), WriteId::TEXT_LEN);
/// assert_eq!(WriteId::parse(&text).unwrap(), w);
/// assert!(WriteId::parse("too-short").is_err());
/// assert_ne!(WriteId::generate(), w);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId([u8; 16]);

impl WriteId {
    /// The length of the text form.
    pub const TEXT_LEN: usize = 22;

    /// How many applied writes every store remembers per record: a retry
    /// is recognised while its write is among the record's last `RECENT`
    /// writes (so up to `RECENT - 1` other writers may have written since).
    pub const RECENT: usize = 4;

    /// A new random id (128 bits from the OS CSPRNG).
    ///
    /// # Panics
    ///
    /// If the operating system's random source fails, as
    /// [`SessionId::generate`](crate::SessionId::generate) does: a process
    /// that cannot draw randomness cannot mint safe ids at all.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        Self(bytes)
    }

    /// An id from raw bytes (tests, or ids minted elsewhere).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 22-character text form. Anything else (another length,
    /// a byte outside `[A-Za-z0-9_-]`, or a last character with bits set
    /// past the 128th, so every id has exactly one text form) is
    /// [`InvalidInput::WriteIdLength`] or [`InvalidInput::WriteIdByte`].
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let raw = s.as_bytes();
        if raw.len() != Self::TEXT_LEN {
            return Err(InvalidInput::WriteIdLength { len: raw.len() });
        }
        let mut acc: u128 = 0;
        for (pos, &byte) in raw.iter().enumerate() {
            let digit = digit(byte).ok_or(InvalidInput::WriteIdByte { byte, pos })?;
            if pos == Self::TEXT_LEN - 1 {
                // 21 digits carry 126 bits; the last one carries the top
                // 2 of its 6, the rest must be zero.
                if digit & 0x0F != 0 {
                    return Err(InvalidInput::WriteIdByte { byte, pos });
                }
                acc = (acc << 2) | u128::from(digit >> 4);
            } else {
                acc = (acc << 6) | u128::from(digit);
            }
        }
        Ok(Self(acc.to_be_bytes()))
    }

    /// The text form, without allocating.
    pub fn encode(&self) -> [u8; Self::TEXT_LEN] {
        let n = u128::from_be_bytes(self.0);
        let mut out = [0u8; Self::TEXT_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let digit = if i == Self::TEXT_LEN - 1 {
                ((n & 0b11) << 4) as usize
            } else {
                ((n >> (128 - 6 * (i + 1))) & 0x3F) as usize
            };
            *slot = ALPHABET[digit];
        }
        out
    }

    /// One entry of a stored write list (see [`write_log`](crate::write_log)):
    /// this id, `:`, and `version` as 16 zero-padded digits.
    pub fn log_entry(&self, version: Version) -> String {
        format!("{self}:{:016}", version.get())
    }
}

fn digit(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.encode();
        // The alphabet is ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.encode();
        let short = std::str::from_utf8(&text[..8]).map_err(|_| fmt::Error)?;
        write!(f, "WriteId({short}…)")
    }
}

impl std::str::FromStr for WriteId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The stored list of a record's recent writes, shared by the Redis and
/// SQL stores (they build and search it inside their scripts and
/// statements; these functions are the reference and the tests' oracle).
///
/// Entries are fixed width, newest first, separated by one space, at most
/// [`WriteId::RECENT`]:
///
/// ```text
/// <22-char write id>:<16-digit zero-padded version> <...> ...
/// ```
///
/// Fixed width keeps the server side trivial: prepending an entry and
/// cutting the text to [`MAX_LEN`](write_log::MAX_LEN) keeps the newest
/// four; a lookup finds `<id>:` at a multiple of
/// [`STRIDE`](write_log::STRIDE) and reads 16 digits after it.
///
/// ```
/// use session_core::{Version, WriteId, write_log};
///
/// let (a, b) = (WriteId::generate(), WriteId::generate());
/// let log = write_log::push("", &a.log_entry(Version::new(2)));
/// let log = write_log::push(&log, &b.log_entry(Version::new(3)));
/// assert_eq!(write_log::find(&log, &a), Some(Version::new(2)));
/// assert_eq!(write_log::find(&log, &b), Some(Version::new(3)));
/// assert_eq!(write_log::find(&log, &WriteId::generate()), None);
/// ```
pub mod write_log {
    use super::WriteId;
    use crate::version::Version;

    /// The length of one entry: id, `:`, 16 digits.
    pub const ENTRY_LEN: usize = WriteId::TEXT_LEN + 1 + 16;
    /// The distance between the starts of two entries.
    pub const STRIDE: usize = ENTRY_LEN + 1;
    /// The longest list: [`WriteId::RECENT`] entries and the spaces between.
    pub const MAX_LEN: usize = STRIDE * WriteId::RECENT - 1;

    /// `entry` prepended to `log`, cut to the newest [`WriteId::RECENT`].
    pub fn push(log: &str, entry: &str) -> String {
        let mut out = format!("{entry} {log}");
        out.truncate(MAX_LEN.min(out.len()));
        out.truncate(out.trim_end().len());
        out
    }

    /// The version `id`'s write produced, if the list holds it. Text that
    /// is not a well-formed list never matches anything wrongly: only an
    /// entry-aligned `<id>:` followed by 16 digits of a valid version
    /// counts.
    pub fn find(log: &str, id: &WriteId) -> Option<Version> {
        let needle = id.encode();
        let raw = log.as_bytes();
        (0..raw.len()).step_by(STRIDE).find_map(|at| {
            let entry = raw.get(at..at + ENTRY_LEN)?;
            if entry[..WriteId::TEXT_LEN] != needle || entry[WriteId::TEXT_LEN] != b':' {
                return None;
            }
            let digits = &entry[WriteId::TEXT_LEN + 1..];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = digits
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            (1..=Version::MAX.get())
                .contains(&v)
                .then_some(Version::new(v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_is_canonical() {
        for bytes in [[0u8; 16], [0xFF; 16], *WriteId::generate().as_bytes()] {
            let w = WriteId::from_bytes(bytes);
            let text = w.to_string();
            assert_eq!(text.len(), 22);
            assert_eq!(WriteId::parse(&text).unwrap(), w);
        }
        assert_eq!(WriteId::from_bytes([0; 16]).to_string(), "A".repeat(22));
        assert_eq!(
            WriteId::from_bytes([0xFF; 16]).to_string(),
            format!("{}w", "_".repeat(21))
        );
        // Bits past the 128th: not a canonical form.
        let bad = format!("{}x", "_".repeat(21));
        assert_eq!(
            WriteId::parse(&bad),
            Err(InvalidInput::WriteIdByte {
                byte: b'x',
                pos: 21
            })
        );
        assert_eq!(
            WriteId::parse(""),
            Err(InvalidInput::WriteIdLength { len: 0 })
        );
        assert_eq!(
            WriteId::parse(&"A".repeat(23)),
            Err(InvalidInput::WriteIdLength { len: 23 })
        );
        assert_eq!(
            WriteId::parse(&format!("AAA=AA{}", "A".repeat(16))),
            Err(InvalidInput::WriteIdByte { byte: b'=', pos: 3 })
        );
        // Multibyte text of the right byte length: a byte error, no panic.
        assert!(WriteId::parse(&"é".repeat(11)).is_err());
    }

    #[test]
    fn debug_is_short() {
        let w = WriteId::from_bytes([0; 16]);
        assert_eq!(format!("{w:?}"), "WriteId(AAAAAAAA…)");
    }

    #[test]
    fn log_keeps_the_newest_four_and_finds_only_aligned_entries() {
        let ids: Vec<WriteId> = (0..6).map(|_| WriteId::generate()).collect();
        let mut log = String::new();
        for (i, id) in ids.iter().enumerate() {
            log = write_log::push(&log, &id.log_entry(Version::new(i as u64 + 1)));
            assert!(log.len() <= write_log::MAX_LEN);
        }
        assert_eq!(log.len(), write_log::MAX_LEN);
        assert_eq!(write_log::find(&log, &ids[0]), None);
        assert_eq!(write_log::find(&log, &ids[1]), None);
        for (i, id) in ids.iter().enumerate().skip(2) {
            assert_eq!(write_log::find(&log, id), Some(Version::new(i as u64 + 1)));
        }
        // Shifted by one: the id is there, but not at an entry boundary.
        let entry = ids[0].log_entry(Version::new(7));
        assert_eq!(write_log::find(&format!("x{entry}"), &ids[0]), None);
        // Garbage digits, version 0: no match.
        let zero = format!("{}:{}", ids[0], "0".repeat(16));
        assert_eq!(write_log::find(&zero, &ids[0]), None);
        let letters = format!("{}:{}", ids[0], "a".repeat(16));
        assert_eq!(write_log::find(&letters, &ids[0]), None);
        assert_eq!(write_log::find("short", &ids[0]), None);
    }
}
