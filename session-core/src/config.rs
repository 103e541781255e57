//! Store-level expiry configuration.

use std::time::Duration;

use crate::error::ConfigError;

/// Expiry settings shared by every store: a sliding `ttl` (each load, touch
/// and applied update pushes expiry to `now + ttl`) and an optional absolute
/// `max_lifetime` counted from creation that no slide can pass. The storage
/// server's clock decides, never the application's.
///
/// ```
/// use std::time::Duration;
/// use session_core::StoreConfig;
///
/// let cfg = StoreConfig::new(Duration::from_secs(1800))?
///     .with_max_lifetime(Duration::from_secs(12 * 3600))?;
/// assert_eq!(cfg.ttl(), Duration::from_secs(1800));
/// assert!(StoreConfig::new(Duration::ZERO).is_err());
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    ttl: Duration,
    max_lifetime: Option<Duration>,
}

impl StoreConfig {
    /// The default sliding TTL: 30 minutes.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

    /// A configuration with sliding `ttl` (at least 1 ms) and no absolute cap.
    pub fn new(ttl: Duration) -> Result<Self, ConfigError> {
        if ttl.as_millis() == 0 {
            return Err(ConfigError::ZeroTtl);
        }
        Ok(Self {
            ttl,
            max_lifetime: None,
        })
    }

    /// Adds an absolute lifetime cap; it must not be shorter than the TTL.
    pub fn with_max_lifetime(self, max_lifetime: Duration) -> Result<Self, ConfigError> {
        if max_lifetime < self.ttl {
            return Err(ConfigError::MaxLifetimeBelowTtl {
                ttl: self.ttl,
                max_lifetime,
            });
        }
        Ok(Self {
            max_lifetime: Some(max_lifetime),
            ..self
        })
    }

    /// The sliding TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The absolute lifetime cap, if any.
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// The TTL a record created with `ttl` slides by: the store TTL, or a
    /// shorter custom one (clamped to `1ms..=ttl`).
    pub fn effective_ttl(&self, ttl: Ttl) -> Duration {
        match ttl {
            Ttl::Default => self.ttl,
            Ttl::Custom(d) => d.clamp(Duration::from_millis(1), self.ttl),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            ttl: Self::DEFAULT_TTL,
            max_lifetime: None,
        }
    }
}

/// The TTL a record is created with.
///
/// A record created with [`Ttl::Custom`] (a reservation placeholder) slides
/// by that shorter TTL on load and touch, so an abandoned placeholder vanishes
/// quickly; its first applied update switches it to the store TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ttl {
    /// The store's configured TTL.
    #[default]
    Default,
    /// A shorter TTL (clamped to the store TTL).
    Custom(Duration),
}
