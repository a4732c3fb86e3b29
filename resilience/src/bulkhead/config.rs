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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls allowed in flight at once; the next one waits or is rejected. With `adaptive`,
    /// the most the limit may grow to.
    pub max_concurrent: usize,
    /// How long a caller may wait for a permit before it is rejected; zero rejects at once,
    /// which keeps a saturated service from building a queue it can never drain.
    #[serde(with = "crate::config::duration")]
    pub max_wait: Duration,
    /// A limit that follows measured latency instead of a fixed one (off unless given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveConfig>,
}

/// An adaptive limit: it falls when the latency of completed calls rises above the lowest
/// seen (the dependency is queueing) and grows back while it stays near it, within
/// `[min_limit, max_concurrent]` (Netflix's concurrency-limits, Envoy's adaptive
/// concurrency filter).
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, LimitAlgorithm};
///
/// let config: BulkheadConfig = toml::from_str(r#"
///     max_concurrent = 200
///     max_wait = "50ms"
///     adaptive = { algorithm = "gradient2", min_limit = 4, initial_limit = 20 }
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.adaptive.unwrap().algorithm, LimitAlgorithm::Gradient2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// How the limit follows latency.
    pub algorithm: LimitAlgorithm,
    /// The limit never falls below this.
    pub min_limit: usize,
    /// The limit to start from (at most `max_concurrent`).
    pub initial_limit: usize,
    /// Latency above `tolerance` times the lowest seen counts as queueing (at least 1).
    pub tolerance: f64,
    /// `aimd`: the factor the limit is multiplied by on a queueing sample, in (0, 1).
    pub backoff: f64,
    /// `gradient2`: how much of each new target the limit takes, in (0, 1].
    pub smoothing: f64,
}

/// The algorithms an [`AdaptiveConfig`] can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease: simple, reacts at once to one slow call.
    Aimd,
    /// The ratio of the no-load latency to a short average scales the limit, smoothed:
    /// steadier under noisy latency.
    Gradient2,
}

impl Default for AdaptiveConfig {
    /// AIMD from 20 permits, down to 1, with a 1.5× tolerance and a 0.9 backoff.
    fn default() -> Self {
        Self {
            algorithm: LimitAlgorithm::Aimd,
            min_limit: 1,
            initial_limit: 20,
            tolerance: 1.5,
            backoff: 0.9,
            smoothing: 0.2,
        }
    }
}

impl AdaptiveConfig {
    fn validate(&self, max_concurrent: usize) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, why: &'static str| {
            Err(ConfigError::new(field, ConfigProblem::Invalid(why.into())))
        };
        check_positive("min_limit", self.min_limit)?;
        if self.min_limit > max_concurrent {
            return invalid("min_limit", "above max_concurrent");
        }
        if self.initial_limit < self.min_limit || self.initial_limit > max_concurrent {
            return invalid("initial_limit", "outside [min_limit, max_concurrent]");
        }
        if !(self.tolerance >= 1.0 && self.tolerance.is_finite()) {
            return invalid(
                "tolerance",
                "must be at least 1 (a factor of the lowest latency)",
            );
        }
        if !(self.backoff > 0.0 && self.backoff < 1.0) {
            return invalid("backoff", "must be between 0 and 1, exclusive (e.g. 0.9)");
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return invalid("smoothing", "must be in (0, 1] (e.g. 0.2)");
        }
        Ok(())
    }
}

impl Default for BulkheadConfig {
    /// 25 concurrent calls, no waiting (the Resilience4j defaults).
    fn default() -> Self {
        Self {
            max_concurrent: 25,
            max_wait: Duration::ZERO,
            adaptive: None,
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
        if let Some(adaptive) = &self.adaptive {
            adaptive
                .validate(self.max_concurrent)
                .map_err(|e| e.within("adaptive"))?;
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

    #[test]
    fn adaptive_errors_name_the_field() {
        let with = |text: &str| {
            let config: BulkheadConfig =
                toml::from_str(&format!("max_concurrent = 50\nadaptive = {{ {text} }}")).unwrap();
            config.validate().map_err(|e| e.field().to_owned())
        };
        assert_eq!(with(""), Ok(()));
        assert_eq!(with("min_limit = 0").unwrap_err(), "adaptive.min_limit");
        assert_eq!(with("min_limit = 60").unwrap_err(), "adaptive.min_limit");
        assert_eq!(
            with("initial_limit = 51").unwrap_err(),
            "adaptive.initial_limit"
        );
        assert_eq!(with("tolerance = 0.5").unwrap_err(), "adaptive.tolerance");
        assert_eq!(with("backoff = 1.0").unwrap_err(), "adaptive.backoff");
        assert_eq!(with("smoothing = 0").unwrap_err(), "adaptive.smoothing");
        assert!(toml::from_str::<BulkheadConfig>("adaptive = { algorithm = \"vegas\" }").is_err());
    }
}
