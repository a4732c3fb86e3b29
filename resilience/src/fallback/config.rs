//! The fallback's configuration: which outcomes it answers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigProblem};

/// The outcomes a fallback can answer: a closed set, one per rejection or failure the
/// stack can produce.
///
/// An error has exactly one outcome: a rejection or timeout of this crate is that kind
/// (wherever it sits in the `source` chain), and only an error of none of those kinds (or a
/// response) that the classifier calls a failure is [`Failure`](Self::Failure). So
/// `on = ["failure"]` does not answer an open circuit.
///
/// ```
/// use resilience_layers::fallback::FallbackOutcome;
///
/// assert_eq!(FallbackOutcome::CircuitOpen.as_str(), "circuit_open");
/// assert_eq!("rate_limited".parse::<FallbackOutcome>(), Ok(FallbackOutcome::RateLimited));
/// assert!("open".parse::<FallbackOutcome>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackOutcome {
    /// The circuit breaker is open ([`CircuitOpen`](crate::error::CircuitOpen)).
    CircuitOpen,
    /// The breaker is half-open and its probe slots are taken.
    HalfOpenFull,
    /// The bulkhead is full.
    BulkheadFull,
    /// The rate limiter had no permit.
    RateLimited,
    /// An attempt timed out ([`Elapsed`](crate::error::Elapsed)).
    Timeout,
    /// The total deadline passed.
    DeadlineExceeded,
    /// Any other error, or a response, that the classifier calls a failure.
    Failure,
}

impl FallbackOutcome {
    /// Every outcome, in the order of their names in [`FallbackOutcome::NAMES`].
    pub const ALL: [FallbackOutcome; 7] = [
        FallbackOutcome::CircuitOpen,
        FallbackOutcome::HalfOpenFull,
        FallbackOutcome::BulkheadFull,
        FallbackOutcome::RateLimited,
        FallbackOutcome::Timeout,
        FallbackOutcome::DeadlineExceeded,
        FallbackOutcome::Failure,
    ];

    /// The names accepted in `on`.
    pub const NAMES: [&'static str; 7] = [
        "circuit_open",
        "half_open_full",
        "bulkhead_full",
        "rate_limited",
        "timeout",
        "deadline_exceeded",
        "failure",
    ];

    /// The name, as in config, metrics labels and the HTTP marker header.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FallbackOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FallbackOutcome {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let i = Self::NAMES.iter().position(|n| *n == s).ok_or(())?;
        Ok(Self::ALL[i])
    }
}

/// A set of [`FallbackOutcome`]s, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutcomeSet(u8);

impl OutcomeSet {
    pub(crate) fn insert(&mut self, outcome: FallbackOutcome) {
        self.0 |= 1 << outcome.index();
    }

    #[inline]
    pub(crate) fn contains(self, outcome: FallbackOutcome) -> bool {
        self.0 & (1 << outcome.index()) != 0
    }
}

/// Which outcomes the fallback answers; the answer itself is given in code
/// ([`FallbackLayer::new`](super::FallbackLayer::new)).
///
/// `on` names outcomes from the closed set of [`FallbackOutcome::NAMES`]; an unknown name is
/// refused with its index (`on[1]`) and the names allowed. At least one is needed.
///
/// ```
/// use resilience_layers::fallback::FallbackConfig;
///
/// let config: FallbackConfig = toml::from_str(r#"on = ["circuit_open", "timeout"]"#).unwrap();
/// config.validate().unwrap();
///
/// let bad: FallbackConfig = toml::from_str(r#"on = ["timeout", "open"]"#).unwrap();
/// let err = bad.validate().unwrap_err();
/// assert_eq!(err.field(), "on[1]");
/// assert!(err.to_string().contains("circuit_open, half_open_full"), "{err}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    /// The outcomes answered by the fallback; others pass through unchanged.
    pub on: Vec<String>,
}

impl FallbackConfig {
    /// A config answering `outcomes`.
    ///
    /// ```
    /// use resilience_layers::fallback::{FallbackConfig, FallbackOutcome};
    ///
    /// let config = FallbackConfig::on([FallbackOutcome::CircuitOpen]);
    /// assert_eq!(config.on, ["circuit_open"]);
    /// ```
    pub fn on(outcomes: impl IntoIterator<Item = FallbackOutcome>) -> Self {
        Self {
            on: outcomes
                .into_iter()
                .map(|o| o.as_str().to_owned())
                .collect(),
        }
    }

    /// Checks the names; the error names the offending entry (`on[1]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.outcomes().map(|_| ())
    }

    /// The outcomes named, validated.
    pub(crate) fn outcomes(&self) -> Result<OutcomeSet, ConfigError> {
        if self.on.is_empty() {
            return Err(ConfigError::new(
                "on",
                ConfigProblem::Invalid(
                    format!(
                        "names no outcome; name at least one of {}",
                        FallbackOutcome::NAMES.join(", ")
                    )
                    .into(),
                ),
            ));
        }
        let mut set = OutcomeSet::default();
        for (i, name) in self.on.iter().enumerate() {
            let outcome: FallbackOutcome = name.parse().map_err(|()| {
                ConfigError::new(
                    format!("on[{i}]"),
                    ConfigProblem::Invalid(
                        format!(
                            "unknown outcome `{name}`; expected one of {}",
                            FallbackOutcome::NAMES.join(", ")
                        )
                        .into(),
                    ),
                )
            })?;
            set.insert(outcome);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_checked() {
        for o in FallbackOutcome::ALL {
            assert_eq!(o.as_str().parse::<FallbackOutcome>(), Ok(o));
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
        }
        let empty = FallbackConfig::default().validate().unwrap_err();
        assert_eq!(empty.field(), "on");
        let set = FallbackConfig::on([FallbackOutcome::Timeout])
            .outcomes()
            .unwrap();
        assert!(set.contains(FallbackOutcome::Timeout));
        assert!(!set.contains(FallbackOutcome::Failure));
        assert!(toml::from_str::<FallbackConfig>("outcomes = []").is_err());
    }
}
