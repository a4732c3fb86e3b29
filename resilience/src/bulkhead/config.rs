//! The bulkhead's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigProblem, check_positive};

/// How many calls may run at once, and how long a caller may wait for a turn.
///
/// Durations are human strings in serde formats (`"50ms"`, `"1s"`).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::bulkhead::BulkheadConfig;
///
/// let config: BulkheadConfig = serde_json::from_str(r#"{"max_concurrent": 8, "max_wait": "20ms"}"#).unwrap();
/// assert_eq!(config.max_wait, Duration::from_millis(20));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls allowed in flight at once; the next one waits or is rejected.
    pub max_concurrent: usize,
    /// How long a caller may wait for a permit before it is rejected; zero rejects at once,
    /// which keeps a saturated service from building a queue it can never drain.
    #[serde(with = "crate::config::duration")]
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    /// 25 concurrent calls, no waiting (the Resilience4j defaults).
    fn default() -> Self {
        Self {
            max_concurrent: 25,
            max_wait: Duration::ZERO,
        }
    }
}

impl BulkheadConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("max_concurrent", self.max_concurrent)?;
        if self.max_concurrent > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "max_concurrent",
                ConfigProblem::Invalid("larger than the semaphore's maximum".into()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_permits_is_rejected_by_name() {
        let config = BulkheadConfig {
            max_concurrent: 0,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "max_concurrent");
        assert!(BulkheadConfig::default().validate().is_ok());
    }
}
