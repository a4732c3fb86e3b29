//! Hedging configuration: when to send another attempt, how many, and the budget they draw on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigProblem, check_percent, check_positive, check_range};
use crate::retry::BudgetConfig;

/// When a hedge is sent: after a fixed `delay`, or after the `percentile` of the latency
/// observed so far (once `min_samples` calls completed); at most `max_hedges` per request.
///
/// Set at most one of `delay` and `percentile`; with neither, the delay is the 95th
/// percentile. In a stack with a retry, hedges draw from
/// the retry's budget and `budget` must be left unset there; alone, `budget` is the hedge's own
/// (a table, `true` for the default, `false` for none).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::hedge::HedgeConfig;
///
/// let fixed: HedgeConfig = toml::from_str(r#"delay = "50ms""#).unwrap();
/// assert_eq!(fixed.delay, Some(Duration::from_millis(50)));
/// fixed.validate().unwrap();
///
/// let both: HedgeConfig = toml::from_str("delay = \"50ms\"\npercentile = 95.0").unwrap();
/// assert_eq!(both.validate().unwrap_err().field(), "percentile");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// A fixed wait before each hedge.
    #[serde(
        with = "crate::config::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub delay: Option<Duration>,
    /// Wait for this percentile (1 to 99.99) of observed latency before each hedge; 95 when
    /// no `delay` is set either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Completed calls needed before a percentile delay is trusted; no hedge before then.
    pub min_samples: u32,
    /// Hedges per request at most (attempts beyond the first), 1 to 10.
    pub max_hedges: u32,
    /// The hedge's own budget, when it is not in a stack with a retry.
    #[serde(with = "crate::retry::budget_switch")]
    pub budget: Option<BudgetConfig>,
}

impl Default for HedgeConfig {
    /// The 95th percentile after 100 calls, one hedge, and the default retry budget.
    fn default() -> Self {
        Self {
            delay: None,
            percentile: None,
            min_samples: 100,
            max_hedges: 1,
            budget: Some(BudgetConfig::default()),
        }
    }
}

/// The percentile used when neither `delay` nor `percentile` is set.
const DEFAULT_PERCENTILE: f64 = 95.0;

impl HedgeConfig {
    /// The percentile the delay follows: `None` with a fixed `delay`.
    ///
    /// ```
    /// use resilience_layers::hedge::HedgeConfig;
    ///
    /// assert_eq!(HedgeConfig::default().effective_percentile(), Some(95.0));
    /// ```
    pub fn effective_percentile(&self) -> Option<f64> {
        match self.delay {
            Some(_) => None,
            None => Some(self.percentile.unwrap_or(DEFAULT_PERCENTILE)),
        }
    }

    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (self.delay, self.percentile) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "percentile",
                    ConfigProblem::Conflicts {
                        other: "delay".into(),
                        reason: "a hedge waits either a fixed delay or a percentile, not both"
                            .into(),
                    },
                ));
            }
            (Some(delay), None) => check_positive("delay", delay)?,
            (None, p) => {
                let p = p.unwrap_or(DEFAULT_PERCENTILE);
                check_percent("percentile", p)?;
                check_range("percentile", p, 1.0, 99.99)?;
                check_positive("min_samples", self.min_samples)?;
            }
        }
        check_range("max_hedges", f64::from(self.max_hedges), 1.0, 10.0)?;
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|e| e.within("budget"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let both = HedgeConfig {
            delay: Some(Duration::from_millis(5)),
            percentile: Some(90.0),
            ..Default::default()
        };
        assert_eq!(both.validate().unwrap_err().field(), "percentile");
        let zero = HedgeConfig {
            delay: Some(Duration::ZERO),
            percentile: None,
            ..Default::default()
        };
        assert_eq!(zero.validate().unwrap_err().field(), "delay");
        let p100 = HedgeConfig {
            percentile: Some(100.0),
            ..Default::default()
        };
        assert_eq!(p100.validate().unwrap_err().field(), "percentile");
        let fraction = HedgeConfig {
            percentile: Some(0.95),
            ..Default::default()
        };
        assert_eq!(fraction.validate().unwrap_err().field(), "percentile");
        let many = HedgeConfig {
            max_hedges: 0,
            ..Default::default()
        };
        assert_eq!(many.validate().unwrap_err().field(), "max_hedges");
        let bad_budget = HedgeConfig {
            budget: Some(BudgetConfig {
                ttl: Duration::ZERO,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(bad_budget.validate().unwrap_err().field(), "budget.ttl");
        HedgeConfig::default().validate().unwrap();
    }

    #[test]
    fn reads_from_toml() {
        let c: HedgeConfig =
            toml::from_str("percentile = 99.0\nmin_samples = 20\nmax_hedges = 2\nbudget = false")
                .unwrap();
        assert_eq!(c.percentile, Some(99.0));
        assert_eq!(c.budget, None);
        c.validate().unwrap();
        let back: HedgeConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let fixed: HedgeConfig = toml::from_str("delay = \"50ms\"").unwrap();
        fixed.validate().unwrap();
        assert_eq!(fixed.effective_percentile(), None);
    }
}
