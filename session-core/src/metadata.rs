//! The immutable string map that a session's storage record holds.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::MetadataError;

/// Limits every store enforces identically, checked when a [`Metadata`] is
/// built (so an oversized map never reaches storage) and again when a stored
/// record is decoded (so a record written by someone else cannot smuggle one in).
pub mod limits {
    /// Longest key, in bytes: room for the backend-session key of the
    /// longest workload id (`vmcp.backend.session.` + 253 bytes = 274), so
    /// every valid workload can record its backend session id.
    pub const MAX_KEY_LEN: usize = 512;
    /// Longest value, in bytes.
    pub const MAX_VALUE_LEN: usize = 8 * 1024;
    /// Most entries in one map.
    pub const MAX_ENTRIES: usize = 512;
    /// Largest JSON encoding of the whole map, in bytes.
    pub const MAX_ENCODED_LEN: usize = 64 * 1024;
}

/// A session's metadata: an ordered `String -> String` map, immutable and
/// cheap to clone (shared behind an `Arc`), with its JSON encoding computed
/// once when it is built. Changes produce a new map.
///
/// Keys are 1..=512 bytes without control characters, values at most 8 KiB,
/// at most 512 entries and 64 KiB of JSON (see [`limits`]).
///
/// ```
/// use session_core::Metadata;
///
/// let md = Metadata::new().with("tenant", "acme")?;
/// assert_eq!(md.get("tenant"), Some("acme"));
/// assert_eq!(md.json(), r#"{"tenant":"acme"}"#);
/// assert_eq!(Metadata::from_json(md.json())?, md);
/// assert!(Metadata::new().with("", "x").is_err());
/// # Ok::<(), session_core::MetadataError>(())
/// ```
#[derive(Clone)]
pub struct Metadata(Arc<Inner>);

struct Inner {
    map: BTreeMap<String, String>,
    json: String,
}

impl Metadata {
    /// The empty map.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            map: BTreeMap::new(),
            json: "{}".to_owned(),
        }))
    }

    /// Builds a map from pairs, enforcing the limits.
    pub fn from_pairs<K, V, I>(pairs: I) -> Result<Self, MetadataError>
    where
        K: Into<String>,
        V: Into<String>,
        I: IntoIterator<Item = (K, V)>,
    {
        Self::from_map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Builds a map, enforcing the limits.
    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, MetadataError> {
        check_map(&map)?;
        let json = serde_json::to_string(&map).expect("a string map always serializes");
        if json.len() > limits::MAX_ENCODED_LEN {
            return Err(MetadataError::TooLarge {
                len: json.len(),
                max: limits::MAX_ENCODED_LEN,
            });
        }
        Ok(Self(Arc::new(Inner { map, json })))
    }

    /// Decodes the JSON encoding produced by [`Metadata::json`], enforcing
    /// the limits. Stores use it to decode what they read; the input is kept
    /// as the map's encoding (it decodes to the same map), so a read does not
    /// serialize again.
    pub fn from_json(json: &str) -> Result<Self, MetadataError> {
        if json.len() > limits::MAX_ENCODED_LEN {
            return Err(MetadataError::TooLarge {
                len: json.len(),
                max: limits::MAX_ENCODED_LEN,
            });
        }
        let map: BTreeMap<String, String> =
            serde_json::from_str(json).map_err(|e| MetadataError::NotStringMap(e.to_string()))?;
        check_map(&map)?;
        Ok(Self(Arc::new(Inner {
            map,
            json: json.to_owned(),
        })))
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.map.get(key).map(String::as_str)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.map.contains_key(key)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Keys starting with `prefix`, in order.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }

    /// The JSON object encoding (computed once, at construction).
    pub fn json(&self) -> &str {
        &self.0.json
    }

    /// A copy of the underlying map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.map.clone()
    }

    /// A new map with `key` set to `value`.
    pub fn with(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MetadataError> {
        let mut map = self.0.map.clone();
        map.insert(key.into(), value.into());
        Self::from_map(map)
    }

    /// A new map without `key`.
    #[must_use]
    pub fn without(&self, key: &str) -> Self {
        if !self.contains_key(key) {
            return self.clone();
        }
        let mut map = self.0.map.clone();
        map.remove(key);
        Self::from_map(map).expect("removing an entry keeps a map within its limits")
    }

    /// Applies several edits at once: `set` pairs are inserted, then `remove`
    /// keys removed; limits are checked once on the result.
    pub fn edit<'a>(
        &self,
        set: impl IntoIterator<Item = (String, String)>,
        remove: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, MetadataError> {
        let mut map = self.0.map.clone();
        map.extend(set);
        for k in remove {
            map.remove(k);
        }
        Self::from_map(map)
    }
}

fn check_map(map: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    if map.len() > limits::MAX_ENTRIES {
        return Err(MetadataError::TooManyEntries {
            count: map.len(),
            max: limits::MAX_ENTRIES,
        });
    }
    map.iter().try_for_each(|(k, v)| check_entry(k, v))
}

fn check_entry(k: &str, v: &str) -> Result<(), MetadataError> {
    if k.is_empty() {
        return Err(MetadataError::EmptyKey);
    }
    if k.len() > limits::MAX_KEY_LEN {
        return Err(MetadataError::KeyTooLong {
            len: k.len(),
            max: limits::MAX_KEY_LEN,
        });
    }
    if k.chars().any(char::is_control) {
        return Err(MetadataError::KeyControlChar { key: k.to_owned() });
    }
    if v.len() > limits::MAX_VALUE_LEN {
        return Err(MetadataError::ValueTooLong {
            key: k.to_owned(),
            len: v.len(),
            max: limits::MAX_VALUE_LEN,
        });
    }
    Ok(())
}

impl Default for Metadata {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.map == other.0.map
    }
}

impl Eq for Metadata {}

impl fmt::Debug for Metadata {
    /// Prints keys only: values can hold personal data (identity bindings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.map.keys()).finish()
    }
}

impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.map.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Self::from_map(map).map_err(serde::de::Error::custom)
    }
}
