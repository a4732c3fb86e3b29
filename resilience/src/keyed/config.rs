//! The keyed layer's bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check_positive};

/// How many keys a [`KeyedLayer`](super::KeyedLayer) holds at once, and how long an unused
/// key stays.
///
/// Durations are human strings in serde formats (`"10m"`, `"90s"`).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::keyed::KeyedConfig;
///
/// let config: KeyedConfig = toml::from_str("max_keys = 256\nidle = \"5m\"").unwrap();
/// assert_eq!(config.idle, Duration::from_secs(300));
/// config.validate().unwrap();
/// assert_eq!(KeyedConfig { max_keys: 0, ..config }.validate().unwrap_err().field(), "max_keys");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyedConfig {
    /// Most keys held at once. A new key that finds the registry full evicts the least
    /// recently used one (after the idle ones); keys added by hand with
    /// [`pin`](super::KeyedLayer::pin) are never evicted and come on top.
    pub max_keys: usize,
    /// A key unused for this long is evicted: its breaker, bulkhead and retry budget are
    /// dropped, its name freed, and its metric series no longer updated.
    #[serde(with = "crate::config::duration")]
    pub idle: Duration,
}

impl Default for KeyedConfig {
    /// 1024 keys; a key unused for 10 minutes goes.
    fn default() -> Self {
        Self {
            max_keys: 1024,
            idle: Duration::from_secs(600),
        }
    }
}

impl KeyedConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("max_keys", self.max_keys)?;
        check_positive("idle", self.idle)
    }
}
