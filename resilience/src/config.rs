//! Validation errors shared by every layer's configuration.
//!
//! Every config type in this crate is plain serde data with a `Default`; it is checked when a
//! layer is built from it, and a bad value is reported as a [`ConfigError`] naming the field by
//! its path (`retry.max_attempts`, `circuit_breaker.window.size`), so a service can refuse to
//! start with a message that points at the line to fix.
//!
//! ```
//! use resilience_layers::config::{ConfigError, ConfigProblem};
//!
//! let err = ConfigError::new("max_attempts", ConfigProblem::MustBePositive).within("retry");
//! assert_eq!(err.field(), "retry.max_attempts");
//! assert_eq!(err.to_string(), "invalid `retry.max_attempts`: must be greater than zero");
//! ```

use std::{borrow::Cow, fmt};

pub(crate) mod duration;

/// What is wrong with a configured value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// A count or duration that must be greater than zero was zero.
    MustBePositive,
    /// A number outside its allowed range (inclusive bounds unless said otherwise).
    OutOfRange {
        /// The value given.
        value: f64,
        /// The smallest allowed value.
        min: f64,
        /// The largest allowed value.
        max: f64,
        /// True when `min` itself is not allowed (a range such as `(0, 100]`).
        min_exclusive: bool,
    },
    /// Two fields that must be ordered are not (for example a base delay above its cap).
    Conflicts {
        /// The other field involved, by its path.
        other: Cow<'static, str>,
        /// Why the two cannot stand together.
        reason: Cow<'static, str>,
    },
    /// A percentage written as a fraction: `0.5` where `50` (percent) was surely meant.
    /// Refused rather than read as 0.5 %, a threshold that nearly any failure would cross.
    PercentAsFraction {
        /// The value given, in `(0, 1)`.
        value: f64,
    },
    /// Any other invalid value, with the reason.
    Invalid(Cow<'static, str>),
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigProblem::MustBePositive => f.write_str("must be greater than zero"),
            ConfigProblem::OutOfRange {
                value,
                min,
                max,
                min_exclusive,
            } => {
                let open = if *min_exclusive { '(' } else { '[' };
                write!(f, "{value} is outside {open}{min}, {max}]")
            }
            ConfigProblem::Conflicts { other, reason } => {
                write!(f, "conflicts with `{other}`: {reason}")
            }
            ConfigProblem::PercentAsFraction { value } => {
                // Rounded so 0.3 suggests 30, not 30.000000000000004.
                let percent = (value * 1e8).round() / 1e6;
                write!(
                    f,
                    "{value} means {value} %, not a fraction: this is a percentage in [1, 100]; \
                     write {percent} for {percent} %"
                )
            }
            ConfigProblem::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// A configuration value that failed validation, with the path of the field.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    problem: ConfigProblem,
}

impl ConfigError {
    /// A problem with `field` (a name or a dotted path).
    pub fn new(field: impl Into<Cow<'static, str>>, problem: ConfigProblem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }

    /// Shorthand for a value that must lie in `(min, max]` or `[min, max]`.
    pub fn out_of_range(
        field: impl Into<Cow<'static, str>>,
        value: f64,
        min: f64,
        max: f64,
        min_exclusive: bool,
    ) -> Self {
        Self::new(
            field,
            ConfigProblem::OutOfRange {
                value,
                min,
                max,
                min_exclusive,
            },
        )
    }

    /// Prefixes the field path with the section it sits in: `size` within `window` becomes
    /// `window.size`.
    #[must_use]
    pub fn within(mut self, section: &str) -> Self {
        self.field = Cow::Owned(format!("{section}.{}", self.field));
        if let ConfigProblem::Conflicts { other, .. } = &mut self.problem {
            *other = Cow::Owned(format!("{section}.{other}"));
        }
        self
    }

    /// The dotted path of the offending field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &ConfigProblem {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Checks that a percentage lies in `[1, 100]`; a value in `(0, 1)` is refused as a fraction
/// written for a percentage (other libraries take `0.5` for half).
pub(crate) fn check_percent(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value < 1.0 {
        Err(ConfigError::new(
            field,
            ConfigProblem::PercentAsFraction { value },
        ))
    } else {
        check_range(field, value, 1.0, 100.0)
    }
}

/// Checks that `value` lies in `min..=max` (NaN and infinities outside it never do).
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::out_of_range(field, value, min, max, false))
    }
}

/// Checks that a count or duration is not zero.
pub(crate) fn check_positive<T: Copy + PartialEq + Default>(
    field: &'static str,
    value: T,
) -> Result<(), ConfigError> {
    if value == T::default() {
        Err(ConfigError::new(field, ConfigProblem::MustBePositive))
    } else {
        Ok(())
    }
}

/// A duration in nanoseconds, saturating at about 584 years: how layers keep durations in
/// atomics.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_lie_in_one_to_a_hundred() {
        assert!(check_percent("t", 1.0).is_ok());
        assert!(check_percent("t", 100.0).is_ok());
        for bad in [0.0, -5.0, 100.5, f64::NAN] {
            let err = check_percent("t", bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid `t`: {bad} is outside [1, 100]")
            );
        }
    }

    #[test]
    fn a_fraction_for_a_percentage_is_refused_with_the_percentage() {
        let err = check_percent("failure_rate_threshold", 0.5).unwrap_err();
        assert_eq!(
            err.problem(),
            &ConfigProblem::PercentAsFraction { value: 0.5 }
        );
        assert_eq!(
            err.to_string(),
            "invalid `failure_rate_threshold`: 0.5 means 0.5 %, not a fraction: this is a \
             percentage in [1, 100]; write 50 for 50 %"
        );
        let err = check_percent("t", 0.3).unwrap_err();
        assert!(err.to_string().ends_with("write 30 for 30 %"), "{err}");
    }

    #[test]
    fn within_prefixes_both_fields_of_a_conflict() {
        let err = ConfigError::new(
            "base",
            ConfigProblem::Conflicts {
                other: "max".into(),
                reason: "base must not exceed max".into(),
            },
        )
        .within("backoff")
        .within("retry");
        assert_eq!(err.field(), "retry.backoff.base");
        assert_eq!(
            err.to_string(),
            "invalid `retry.backoff.base`: conflicts with `retry.backoff.max`: base must not exceed max"
        );
        assert!(check_positive("n", 0u32).is_err());
        assert!(check_positive("d", std::time::Duration::ZERO).is_err());
        assert!(check_positive("n", 3u32).is_ok());
    }
}
