//! Retry configuration: attempts, backoff, budget.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigProblem, check_positive, check_range};

/// How often to try, how long to wait in between, and how much extra load retries may add.
///
/// Durations are human strings in serde formats (`"100ms"`, `"2s"`).
///
/// ```
/// use resilience_layers::retry::{Jitter, RetryConfig};
///
/// let config: RetryConfig = toml::from_str(r#"
///     max_attempts = 4
///     [backoff]
///     base = "50ms"
///     max = "2s"
///     jitter = "equal"
///     [budget]
///     retry_ratio = 0.1
/// "#).unwrap();
/// assert_eq!(config.backoff.jitter, Jitter::Equal);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first call included: 1 means no retry; 0 is invalid.
    pub max_attempts: u32,
    /// The wait between attempts.
    pub backoff: BackoffConfig,
    /// A cap on the load retries may add; `None` leaves only `max_attempts` as a bound,
    /// which multiplies load by `max_attempts` during an outage.
    ///
    /// In a config file: a table (`[retry.budget]`, unset fields at their defaults), `true`
    /// for the default budget, or `false` for none (TOML has no `null`; JSON's `null` also
    /// means none).
    #[serde(with = "budget_switch")]
    pub budget: Option<BudgetConfig>,
}

impl Default for RetryConfig {
    /// Three attempts, exponential backoff with full jitter from 100 ms up to 5 s, and the
    /// default budget (20 % extra load plus 10 retries a second).
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: BackoffConfig::default(),
            budget: Some(BudgetConfig::default()),
        }
    }
}

impl RetryConfig {
    /// Checks the values; the error names the offending field (`backoff.base`, `budget.ttl`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("max_attempts", self.max_attempts)?;
        self.backoff.validate().map_err(|e| e.within("backoff"))?;
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|e| e.within("budget"))?;
        }
        Ok(())
    }
}

/// Exponential backoff with a cap and jitter.
///
/// The `n`th retry (from 0) waits around `min(max, base * multiplier^n)`, spread by
/// [`Jitter`] so that clients that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{BackoffConfig, Jitter};
///
/// let backoff = BackoffConfig { base: Duration::from_millis(10), jitter: Jitter::None, ..Default::default() };
/// let delays: Vec<_> = backoff.backoff_seeded(1).take(3).collect();
/// assert_eq!(delays, [Duration::from_millis(10), Duration::from_millis(20), Duration::from_millis(40)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// The first delay (before jitter); also the floor of decorrelated jitter.
    #[serde(with = "crate::config::duration")]
    pub base: Duration,
    /// No delay is longer than this.
    #[serde(with = "crate::config::duration")]
    pub max: Duration,
    /// Growth per retry, at least 1 (1 gives a constant delay).
    pub multiplier: f64,
    /// How delays are randomised.
    pub jitter: Jitter,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl BackoffConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_positive("base", self.base)?;
        if self.max < self.base {
            return Err(ConfigError::new(
                "max",
                ConfigProblem::Conflicts {
                    other: "base".into(),
                    reason: "the cap must not be below the first delay".into(),
                },
            ));
        }
        check_range("multiplier", self.multiplier, 1.0, f64::MAX)
    }
}

/// How backoff delays are spread, after the AWS Architecture Blog's
/// ["Exponential Backoff And Jitter"](https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/);
/// `exp` is `min(max, base * multiplier^n)`.
///
/// ```
/// use resilience_layers::retry::Jitter;
///
/// let jitter: Jitter = serde_json::from_str(r#""decorrelated""#).unwrap();
/// assert_eq!(jitter, Jitter::Decorrelated);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exactly `exp`: clients that failed together retry together.
    None,
    /// Uniform in `[0, exp]`: the least total load, the widest spread.
    #[default]
    Full,
    /// Uniform in `[exp / 2, exp]`: never much shorter than planned.
    Equal,
    /// Uniform in `[base, 3 * previous]`, capped at `max` (`multiplier` is not used).
    Decorrelated,
}

/// A retry budget: retries may add at most `retry_ratio` of the recent requests, plus
/// `min_per_sec` a second so a quiet client can still retry. Built on tower's
/// [`TpsBudget`](tower::retry::budget::TpsBudget).
///
/// Over any `ttl`, retries stay within `retry_ratio * requests + min_per_sec * ttl`.
///
/// ```
/// use resilience_layers::retry::BudgetConfig;
///
/// let budget = BudgetConfig { retry_ratio: 0.5, ..Default::default() };
/// budget.validate().unwrap();
/// assert!(BudgetConfig { retry_ratio: -1.0, ..budget }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// How long a request counts towards the budget, 1 s to 60 s.
    #[serde(with = "crate::config::duration")]
    pub ttl: Duration,
    /// Retries a second allowed even with no recent requests.
    pub min_per_sec: u32,
    /// Retries allowed per request, 0 to 1000 (0.2 = one retry per five requests). Ratios
    /// below 1 are rounded to one retry per whole number of requests (0.3 acts as 1 in 3).
    pub retry_ratio: f64,
}

impl Default for BudgetConfig {
    /// tower's and Finagle's defaults: 10 s, 10 retries a second, 20 %.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Checks the values against tower's limits; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("ttl", self.ttl.as_secs_f64(), 1.0, 60.0)?;
        check_range("retry_ratio", self.retry_ratio, 0.0, 1000.0)?;
        check_range(
            "min_per_sec",
            f64::from(self.min_per_sec),
            0.0,
            f64::from(i32::MAX - 1),
        )
    }
}

/// `budget = false` (none), `true` (the default) or a table; written back as `false` or a
/// table, so every value survives a round trip through TOML.
pub(crate) mod budget_switch {
    use std::fmt;

    use serde::{
        Deserialize, Deserializer, Serialize, Serializer,
        de::{self, value::MapAccessDeserializer},
    };

    use super::BudgetConfig;

    pub(crate) fn serialize<S: Serializer>(
        budget: &Option<BudgetConfig>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match budget {
            Some(budget) => budget.serialize(s),
            None => s.serialize_bool(false),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BudgetConfig>, D::Error> {
        d.deserialize_any(Switch)
    }

    struct Switch;

    impl<'de> de::Visitor<'de> for Switch {
        type Value = Option<BudgetConfig>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a retry budget: a table such as { retry_ratio = 0.1 }, true for the default \
                 budget, or false for none",
            )
        }

        fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
            Ok(on.then(BudgetConfig::default))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            BudgetConfig::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field_path() {
        let mut config = RetryConfig {
            max_attempts: 0,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "max_attempts");
        config.max_attempts = 2;
        config.backoff.max = Duration::from_millis(1);
        assert_eq!(config.validate().unwrap_err().field(), "backoff.max");
        config.backoff = BackoffConfig {
            multiplier: 0.5,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "backoff.multiplier");
        config.backoff = BackoffConfig::default();
        config.budget = Some(BudgetConfig {
            ttl: Duration::from_millis(500),
            ..Default::default()
        });
        assert_eq!(config.validate().unwrap_err().field(), "budget.ttl");
        config.budget = None;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_budget_turns_off_from_toml_and_back() {
        let off: RetryConfig = toml::from_str("budget = false").unwrap();
        assert_eq!(off.budget, None);
        off.validate().unwrap();
        // Written back as `false`, so it reads back as off (TOML has no null).
        let text = toml::to_string(&off).unwrap();
        assert!(text.contains("budget = false"), "{text}");
        assert_eq!(toml::from_str::<RetryConfig>(&text).unwrap(), off);

        let on: RetryConfig = toml::from_str("budget = true").unwrap();
        assert_eq!(on.budget, Some(BudgetConfig::default()));
        let absent: RetryConfig = toml::from_str("max_attempts = 2").unwrap();
        assert_eq!(absent.budget, Some(BudgetConfig::default()));
        let tuned: RetryConfig = toml::from_str("[budget]\nretry_ratio = 0.5").unwrap();
        assert_eq!(tuned.budget.unwrap().retry_ratio, 0.5);
        let round = toml::to_string(&tuned).unwrap();
        assert_eq!(toml::from_str::<RetryConfig>(&round).unwrap(), tuned);

        // Anything else says what is accepted; unknown fields in the table are still refused.
        let err = toml::from_str::<RetryConfig>("budget = \"off\"").unwrap_err();
        assert!(err.message().contains("false for none"), "{err}");
        let err = toml::from_str::<RetryConfig>("[budget]\nratio = 0.5").unwrap_err();
        assert!(err.message().contains("unknown field `ratio`"), "{err}");
    }

    #[test]
    fn durations_are_human_strings() {
        let config: RetryConfig = serde_json::from_str(
            r#"{"max_attempts":2,"backoff":{"base":"25ms","max":"1s","multiplier":3.0,"jitter":"none"},"budget":null}"#,
        )
        .unwrap();
        assert_eq!(config.backoff.base, Duration::from_millis(25));
        assert_eq!(config.budget, None);
        let back = serde_json::to_value(&config).unwrap();
        assert_eq!(back["backoff"]["max"], "1s");
    }
}
