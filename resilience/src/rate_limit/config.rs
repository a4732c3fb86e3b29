//! The rate limiter's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigProblem, check_positive};

/// How many calls a limiter lets through per period, how many at once, and how long a caller
/// may wait for its turn.
///
/// The limiter is GCRA (a token bucket without a refill task): one permit comes back every
/// `period / permits`, and up to `burst` permits can be taken at once after a quiet spell.
/// So the sustained rate is `permits` per `period`, and any window of length `period` lets
/// through at most `burst + permits - 1`.
///
/// Two modes, chosen by `max_wait`, as in the bulkhead:
///
/// - **reject** (`max_wait` zero, the default): a call with no permit is refused at once with
///   [`RateLimited`](crate::error::RateLimited), carrying the time until the next permit.
///   For a server shedding load: a refused call costs nothing.
/// - **wait** (`max_wait` above zero): the caller waits for the next permit, at most
///   `max_wait` and never past the request's deadline
///   ([`current_deadline`](crate::deadline::current_deadline)); a permit further away than
///   that is refused at once rather than waited for in vain. For a client keeping within an
///   upstream's quota.
///
/// Durations are human strings in serde formats (`"1s"`, `"100ms"`).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::rate_limit::RateLimitConfig;
///
/// let config: RateLimitConfig = toml::from_str(r#"
///     permits = 50
///     period = "1s"
///     burst = 10
///     max_wait = "200ms"
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.interval(), Duration::from_millis(20));
/// assert_eq!(config.burst(), 10);
/// assert!(!config.rejects_at_once());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Permits per `period`: the sustained rate.
    pub permits: u32,
    /// The period `permits` are counted over.
    #[serde(with = "crate::config::duration")]
    pub period: Duration,
    /// Permits that may be taken at once after a quiet spell; absent means `permits` (a
    /// whole period's worth at once). `1` spaces calls evenly, one every `period / permits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// How long a caller may wait for a permit; zero (the default) rejects at once.
    #[serde(with = "crate::config::duration")]
    pub max_wait: Duration,
}

impl Default for RateLimitConfig {
    /// 100 permits a second, bursts of 100, no waiting.
    fn default() -> Self {
        Self {
            permits: 100,
            period: Duration::from_secs(1),
            burst: None,
            max_wait: Duration::ZERO,
        }
    }
}

/// The longest a full bucket may take to refill, beyond which GCRA's nanosecond arithmetic
/// would overflow: far above any meaningful quota.
const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl RateLimitConfig {
    /// Checks the values; the error names the offending field.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilience_layers::rate_limit::RateLimitConfig;
    ///
    /// let config = RateLimitConfig { burst: Some(0), ..Default::default() };
    /// assert_eq!(config.validate().unwrap_err().field(), "burst");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("permits", self.permits)?;
        check_positive("period", self.period)?;
        if self.interval().is_zero() {
            return Err(ConfigError::new(
                "period",
                ConfigProblem::Conflicts {
                    other: "permits".into(),
                    reason: "more permits than nanoseconds in the period".into(),
                },
            ));
        }
        if let Some(burst) = self.burst {
            check_positive("burst", burst)?;
        }
        if self.refill() > MAX_REFILL {
            return Err(ConfigError::new(
                "burst",
                ConfigProblem::Invalid(
                    "a full burst would take over 100 years to come back".into(),
                ),
            ));
        }
        Ok(())
    }

    /// The time one permit takes to come back: `period / permits`.
    pub fn interval(&self) -> Duration {
        self.period.checked_div(self.permits).unwrap_or_default()
    }

    /// The burst in force: `burst`, or `permits` when it is not set.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.permits)
    }

    /// True in reject mode (`max_wait` zero).
    pub fn rejects_at_once(&self) -> bool {
        self.max_wait.is_zero()
    }

    /// How long an empty bucket takes to fill up again.
    fn refill(&self) -> Duration {
        let nanos = self.interval().as_nanos() * u128::from(self.burst());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_value_is_named() {
        let cases = [
            (
                RateLimitConfig {
                    permits: 0,
                    ..RateLimitConfig::default()
                },
                "permits",
            ),
            (
                RateLimitConfig {
                    period: Duration::ZERO,
                    ..RateLimitConfig::default()
                },
                "period",
            ),
            (
                RateLimitConfig {
                    permits: 1_000,
                    period: Duration::from_nanos(10),
                    ..RateLimitConfig::default()
                },
                "period",
            ),
            (
                RateLimitConfig {
                    burst: Some(0),
                    ..RateLimitConfig::default()
                },
                "burst",
            ),
            (
                RateLimitConfig {
                    permits: 1,
                    period: Duration::from_secs(3600 * 24 * 365),
                    burst: Some(1_000),
                    max_wait: Duration::ZERO,
                },
                "burst",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field(), field, "{config:?}");
        }
        RateLimitConfig::default().validate().unwrap();
    }

    #[test]
    fn burst_defaults_to_permits_and_reject_is_the_default_mode() {
        let config: RateLimitConfig = toml::from_str("permits = 4\nperiod = \"2s\"").unwrap();
        assert_eq!(config.burst(), 4);
        assert_eq!(config.interval(), Duration::from_millis(500));
        assert!(config.rejects_at_once());
        assert!(toml::from_str::<RateLimitConfig>("permit = 4").is_err());
        let text = toml::to_string(&config).unwrap();
        assert!(!text.contains("burst"), "{text}");
        assert_eq!(toml::from_str::<RateLimitConfig>(&text).unwrap(), config);
    }
}
