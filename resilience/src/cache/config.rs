//! The cache's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigProblem, check_positive};

/// How much a cache holds, how long an answer stays fresh, and how long past that it may still
/// be served when the call fails (RFC 5861 `stale-if-error`).
///
/// Durations are human strings in serde formats (`"30s"`, `"5m"`).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::cache::CacheConfig;
///
/// let config: CacheConfig = toml::from_str(r#"
///     max_entries = 1000
///     max_bytes = 1048576
///     ttl = "30s"
///     stale_if_error = "5m"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.ttl, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// The most entries the cache holds.
    pub max_entries: u64,
    /// The most bytes the cache holds, as the weigher counts them.
    pub max_bytes: u64,
    /// How long a stored answer is fresh (served without a call). An upstream's shorter
    /// `max-age` wins (HTTP); a longer one is cut to this.
    #[serde(with = "crate::config::duration")]
    pub ttl: Duration,
    /// How long past its freshness an answer may still be served when the call fails; zero
    /// turns stale-if-error off.
    #[serde(with = "crate::config::duration")]
    pub stale_if_error: Duration,
}

impl Default for CacheConfig {
    /// 10,000 entries, 16 MiB, fresh for 60 s, served stale on error for 5 minutes more.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 << 20,
            ttl: Duration::from_secs(60),
            stale_if_error: Duration::from_secs(300),
        }
    }
}

impl CacheConfig {
    /// Checks the values; the error names the offending field.
    ///
    /// ```
    /// use resilience_layers::cache::CacheConfig;
    ///
    /// let config = CacheConfig { max_entries: 0, ..Default::default() };
    /// assert_eq!(config.validate().unwrap_err().field(), "max_entries");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("max_entries", self.max_entries)?;
        check_positive("max_bytes", self.max_bytes)?;
        check_positive("ttl", self.ttl)?;
        if self.max_bytes < self.max_entries {
            return Err(ConfigError::new(
                "max_bytes",
                ConfigProblem::Conflicts {
                    other: "max_entries".into(),
                    reason: "fewer bytes than entries: every entry weighs at least one byte".into(),
                },
            ));
        }
        Ok(())
    }

    /// The least weight one entry counts for: `max_bytes / max_entries`, rounded up. Weighing
    /// every entry at least this bounds entries and bytes with one weighted capacity.
    pub(crate) fn min_weight(&self) -> u64 {
        self.max_bytes.div_ceil(self.max_entries.max(1))
    }

    /// How long an entry may be kept at all: fresh, then servable stale.
    pub(crate) fn keep(&self) -> Duration {
        self.ttl.saturating_add(self.stale_if_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_value_is_named() {
        let cases = [
            (
                CacheConfig {
                    max_entries: 0,
                    ..CacheConfig::default()
                },
                "max_entries",
            ),
            (
                CacheConfig {
                    max_bytes: 0,
                    ..CacheConfig::default()
                },
                "max_bytes",
            ),
            (
                CacheConfig {
                    ttl: Duration::ZERO,
                    ..CacheConfig::default()
                },
                "ttl",
            ),
            (
                CacheConfig {
                    max_entries: 10,
                    max_bytes: 9,
                    ..CacheConfig::default()
                },
                "max_bytes",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field(), field, "{config:?}");
        }
        CacheConfig::default().validate().unwrap();
        assert!(toml::from_str::<CacheConfig>("max_entry = 3").is_err());
        assert_eq!(
            CacheConfig {
                max_entries: 3,
                max_bytes: 10,
                ..CacheConfig::default()
            }
            .min_weight(),
            4
        );
    }
}
