//! The breaker's configuration: plain serde data, checked when a layer is built.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::Params;
use super::window::{CountWindow, MAX_COUNT_SIZE, TimeWindow, Window};
use crate::config::{ConfigError, ConfigProblem, check_percent, check_positive, check_range};

/// How a circuit breaker is tuned.
///
/// Every field has a default (see [`Default`](#impl-Default-for-CircuitBreakerConfig)), and
/// durations are written as human strings (`"30s"`, `"250ms"`), so a config file names only
/// what it changes:
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
///
/// let config: CircuitBreakerConfig = toml::from_str(r#"
///     failure_rate_threshold = 25.0
///     slow_call_duration = "2s"
///     wait_in_open = "10s"
///     window = { kind = "time", duration = "60s", buckets = 60 }
/// "#).unwrap();
/// assert_eq!(config.window, SlidingWindow::Time { duration: Duration::from_secs(60), buckets: 60 });
/// assert_eq!(config.minimum_calls, 20); // untouched fields keep their defaults
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Which recent calls the rates are computed over.
    pub window: SlidingWindow,
    /// Trip when at least this percentage of the calls in the window failed, in `[1, 100]`:
    /// `50` is half. A fraction (`0.5`) is refused rather than read as 0.5 %.
    pub failure_rate_threshold: f64,
    /// Trip when at least this percentage of the calls in the window were slow, in
    /// `[1, 100]` (a fraction is refused). Only used when `slow_call_duration` is set.
    pub slow_call_rate_threshold: f64,
    /// A call that takes at least this long is slow (whether it succeeded or failed).
    /// `None` turns slow-call detection off, and with it every clock read on the closed path.
    #[serde(with = "crate::config::duration::option")]
    pub slow_call_duration: Option<Duration>,
    /// No rate trips the breaker until the window holds this many calls (for a count window,
    /// at most its size).
    pub minimum_calls: u32,
    /// Also trip after this many failures in a row, whatever the rates say.
    pub consecutive_failures: Option<u32>,
    /// How long the circuit stays open before letting probes through.
    #[serde(with = "crate::config::duration")]
    pub wait_in_open: Duration,
    /// Each time the probes fail again, the next wait is the last one times this (`>= 1`;
    /// `1` keeps the wait fixed). A successful round of probes resets it.
    pub wait_multiplier: f64,
    /// The longest a growing wait can become. `None`: no cap beyond the multiplier's reach.
    #[serde(with = "crate::config::duration::option")]
    pub max_wait_in_open: Option<Duration>,
    /// How many probe calls half-open admits (1 to 255); their results decide.
    pub permitted_calls_in_half_open: u32,
    /// Re-open if the probes have not all reported within this time (so a hung probe cannot
    /// keep the circuit half-open forever). `None`: wait for the probes however long.
    #[serde(with = "crate::config::duration::option")]
    pub max_wait_in_half_open: Option<Duration>,
    /// Move from Open to HalfOpen on a timer when the wait ends, instead of when the next
    /// call arrives (Resilience4j's `automaticTransitionFromOpenToHalfOpenEnabled`), so
    /// `state()`, snapshots, the state gauge and subscribers see half-open without traffic.
    ///
    /// Off by default, as in Resilience4j: the breaker then starts no task of its own and
    /// needs no runtime. On, each trip spawns one sleeping task on the tokio runtime that is
    /// current when it trips (none outside a runtime: the move then waits for a call); the
    /// task holds only a weak reference and is aborted when the breaker is dropped, so it
    /// neither keeps the breaker alive nor outlives it. Either way the first call after the
    /// wait is a probe; only what the breaker reports in between differs.
    pub automatic_transition_to_half_open: bool,
}

/// Which calls the failure and slow-call rates are computed over.
///
/// In configuration files: `{ kind = "count", size = 100 }` or
/// `{ kind = "time", duration = "60s", buckets = 60 }`.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::circuit_breaker::SlidingWindow;
///
/// // The last 50 calls, whenever they happened.
/// let by_count = SlidingWindow::Count { size: 50 };
/// // The calls of the last 30 seconds, in 1-second buckets.
/// let by_time = SlidingWindow::Time { duration: Duration::from_secs(30), buckets: 30 };
/// # let _ = (by_count, by_time);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// Exactly the last `size` calls (1 to 1,048,575).
    Count {
        /// How many calls.
        size: u32,
    },
    /// The calls of the last `duration`, counted in `buckets` equal buckets: a call leaves
    /// the window between `duration - duration / buckets` and `duration` after it ended.
    /// Each bucket counts up to 1,048,575 calls; beyond that, calls in it are not counted.
    Time {
        /// How far back the window reaches.
        #[serde(with = "crate::config::duration")]
        duration: Duration,
        /// Into how many buckets (1 to 1,000; each at least 1 ms long). Default 10.
        #[serde(default = "default_buckets")]
        buckets: u32,
    },
}

fn default_buckets() -> u32 {
    10
}

impl Default for SlidingWindow {
    /// The last 100 calls.
    fn default() -> Self {
        SlidingWindow::Count { size: 100 }
    }
}

impl Default for CircuitBreakerConfig {
    /// A breaker that trips when at least half of the last 100 calls (and at least 20) failed,
    /// stays open 30 s, then lets 5 probes decide. Slow-call detection, consecutive-failure
    /// tripping, a growing wait, a half-open time limit and the automatic move to half-open
    /// are off.
    fn default() -> Self {
        Self {
            window: SlidingWindow::default(),
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            minimum_calls: 20,
            consecutive_failures: None,
            wait_in_open: Duration::from_secs(30),
            wait_multiplier: 1.0,
            max_wait_in_open: None,
            permitted_calls_in_half_open: 5,
            max_wait_in_half_open: None,
            automatic_transition_to_half_open: false,
        }
    }
}

/// The most probes half-open admits (a probe count is an 8-bit field of the state word).
const MAX_PROBES: u32 = 255;
const MAX_BUCKETS: u32 = 1000;

impl CircuitBreakerConfig {
    /// Checks every field; the error names the first bad one by its path
    /// (`window.size`, `failure_rate_threshold`, ...).
    ///
    /// ```
    /// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
    ///
    /// let config = CircuitBreakerConfig {
    ///     window: SlidingWindow::Count { size: 0 },
    ///     ..Default::default()
    /// };
    /// assert_eq!(config.validate().unwrap_err().field(), "window.size");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            SlidingWindow::Count { size } => {
                check_positive("size", size).map_err(|e| e.within("window"))?;
                check_range(
                    "window.size",
                    f64::from(size),
                    1.0,
                    f64::from(MAX_COUNT_SIZE),
                )?;
            }
            SlidingWindow::Time { duration, buckets } => {
                check_positive("duration", duration).map_err(|e| e.within("window"))?;
                check_range(
                    "window.buckets",
                    f64::from(buckets),
                    1.0,
                    f64::from(MAX_BUCKETS),
                )?;
                if duration / buckets < Duration::from_millis(1) {
                    return Err(ConfigError::new(
                        "window.buckets",
                        ConfigProblem::Conflicts {
                            other: "window.duration".into(),
                            reason: "each bucket must span at least 1ms".into(),
                        },
                    ));
                }
            }
        }
        check_percent("failure_rate_threshold", self.failure_rate_threshold)?;
        check_percent("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(d) = self.slow_call_duration {
            check_positive("slow_call_duration", d)?;
        }
        check_positive("minimum_calls", self.minimum_calls)?;
        if let Some(n) = self.consecutive_failures {
            check_positive("consecutive_failures", n)?;
        }
        check_positive("wait_in_open", self.wait_in_open)?;
        if !(self.wait_multiplier >= 1.0 && self.wait_multiplier.is_finite()) {
            return Err(ConfigError::new(
                "wait_multiplier",
                ConfigProblem::Invalid("must be a finite number of at least 1".into()),
            ));
        }
        if self
            .max_wait_in_open
            .is_some_and(|max| max < self.wait_in_open)
        {
            return Err(ConfigError::new(
                "max_wait_in_open",
                ConfigProblem::Conflicts {
                    other: "wait_in_open".into(),
                    reason: "the cap must not be shorter than the first wait".into(),
                },
            ));
        }
        check_range(
            "permitted_calls_in_half_open",
            f64::from(self.permitted_calls_in_half_open),
            1.0,
            f64::from(MAX_PROBES),
        )?;
        if let Some(d) = self.max_wait_in_half_open {
            check_positive("max_wait_in_half_open", d)?;
        }
        Ok(())
    }

    /// The numbers the state machine works with (config must be valid).
    pub(crate) fn params(&self) -> Params {
        let minimum_calls = match self.window {
            SlidingWindow::Count { size } => self.minimum_calls.min(size),
            SlidingWindow::Time { .. } => self.minimum_calls,
        };
        Params {
            failure_rate_threshold: self.failure_rate_threshold,
            slow_call_rate_threshold: self.slow_call_rate_threshold,
            slow_call_nanos: self.slow_call_duration.map(nanos),
            minimum_calls: u64::from(minimum_calls),
            consecutive_failures: self.consecutive_failures.map(u64::from),
            wait_nanos: nanos(self.wait_in_open),
            wait_multiplier: self.wait_multiplier,
            max_wait_nanos: self.max_wait_in_open.map_or(u64::MAX, nanos),
            probes: u64::from(self.permitted_calls_in_half_open),
            max_half_open_nanos: self.max_wait_in_half_open.map(nanos),
            automatic_half_open: self.automatic_transition_to_half_open,
        }
    }

    /// A fresh, empty window of the configured kind (config must be valid).
    pub(crate) fn build_window(&self) -> Window {
        match self.window {
            SlidingWindow::Count { size } => Window::Count(CountWindow::new(size)),
            SlidingWindow::Time { duration, buckets } => {
                Window::Time(TimeWindow::new(nanos(duration), buckets))
            }
        }
    }
}

pub(crate) use crate::config::nanos;

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::*;

    fn field_of(config: &CircuitBreakerConfig) -> String {
        config.validate().unwrap_err().field().to_owned()
    }

    #[test]
    fn default_is_valid_and_documented_values_hold() {
        let c = CircuitBreakerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.window, SlidingWindow::Count { size: 100 });
        assert_eq!(c.failure_rate_threshold, 50.0);
        assert_eq!(c.slow_call_duration, None);
        assert_eq!(c.wait_in_open, Duration::from_secs(30));
    }

    #[test]
    fn each_bad_field_is_named() {
        let d = CircuitBreakerConfig::default;
        let cases = [
            (
                CircuitBreakerConfig {
                    window: SlidingWindow::Count { size: 0 },
                    ..d()
                },
                "window.size",
            ),
            (
                CircuitBreakerConfig {
                    window: SlidingWindow::Count { size: 2_000_000 },
                    ..d()
                },
                "window.size",
            ),
            (
                CircuitBreakerConfig {
                    window: SlidingWindow::Time {
                        duration: Duration::ZERO,
                        buckets: 10,
                    },
                    ..d()
                },
                "window.duration",
            ),
            (
                CircuitBreakerConfig {
                    window: SlidingWindow::Time {
                        duration: Duration::from_secs(1),
                        buckets: 0,
                    },
                    ..d()
                },
                "window.buckets",
            ),
            (
                CircuitBreakerConfig {
                    window: SlidingWindow::Time {
                        duration: Duration::from_millis(5),
                        buckets: 10,
                    },
                    ..d()
                },
                "window.buckets",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate_threshold: 0.0,
                    ..d()
                },
                "failure_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate_threshold: 100.5,
                    ..d()
                },
                "failure_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    slow_call_rate_threshold: -1.0,
                    ..d()
                },
                "slow_call_rate_threshold",
            ),
            (
                CircuitBreakerConfig {
                    slow_call_duration: Some(Duration::ZERO),
                    ..d()
                },
                "slow_call_duration",
            ),
            (
                CircuitBreakerConfig {
                    minimum_calls: 0,
                    ..d()
                },
                "minimum_calls",
            ),
            (
                CircuitBreakerConfig {
                    consecutive_failures: Some(0),
                    ..d()
                },
                "consecutive_failures",
            ),
            (
                CircuitBreakerConfig {
                    wait_in_open: Duration::ZERO,
                    ..d()
                },
                "wait_in_open",
            ),
            (
                CircuitBreakerConfig {
                    wait_multiplier: 0.5,
                    ..d()
                },
                "wait_multiplier",
            ),
            (
                CircuitBreakerConfig {
                    wait_multiplier: f64::NAN,
                    ..d()
                },
                "wait_multiplier",
            ),
            (
                CircuitBreakerConfig {
                    max_wait_in_open: Some(Duration::from_secs(1)),
                    ..d()
                },
                "max_wait_in_open",
            ),
            (
                CircuitBreakerConfig {
                    permitted_calls_in_half_open: 0,
                    ..d()
                },
                "permitted_calls_in_half_open",
            ),
            (
                CircuitBreakerConfig {
                    permitted_calls_in_half_open: 256,
                    ..d()
                },
                "permitted_calls_in_half_open",
            ),
            (
                CircuitBreakerConfig {
                    max_wait_in_half_open: Some(Duration::ZERO),
                    ..d()
                },
                "max_wait_in_half_open",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(&config), field);
        }
    }

    #[test]
    fn serde_reads_human_durations_and_rejects_unknown_fields() {
        let c: CircuitBreakerConfig = toml::from_str(
            r#"
            wait_in_open = "1m"
            max_wait_in_open = "10m"
            wait_multiplier = 2.0
            max_wait_in_half_open = "500ms"
            window = { kind = "count", size = 10 }
            "#,
        )
        .unwrap();
        assert_eq!(c.wait_in_open, Duration::from_secs(60));
        assert_eq!(c.max_wait_in_open, Some(Duration::from_secs(600)));
        assert_eq!(c.max_wait_in_half_open, Some(Duration::from_millis(500)));
        assert_eq!(c.window, SlidingWindow::Count { size: 10 });
        c.validate().unwrap();

        let t: CircuitBreakerConfig =
            toml::from_str(r#"window = { kind = "time", duration = "10s" }"#).unwrap();
        assert_eq!(
            t.window,
            SlidingWindow::Time {
                duration: Duration::from_secs(10),
                buckets: 10
            }
        );

        assert!(toml::from_str::<CircuitBreakerConfig>("wait_in_opne = \"1s\"").is_err());
        assert!(
            toml::from_str::<CircuitBreakerConfig>(
                r#"window = { kind = "count", size = 1, extra = 2 }"#
            )
            .is_err()
        );
    }

    #[test]
    fn serializes_back_to_the_same_value() {
        let c = CircuitBreakerConfig {
            slow_call_duration: Some(Duration::from_millis(250)),
            ..Default::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"250ms\""), "{json}");
        let back: CircuitBreakerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn minimum_calls_is_capped_by_a_count_window() {
        let c = CircuitBreakerConfig {
            window: SlidingWindow::Count { size: 5 },
            minimum_calls: 20,
            ..Default::default()
        };
        assert_eq!(c.params().minimum_calls, 5);
    }
}
