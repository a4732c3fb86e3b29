//! A serializable picture of one breaker.

use serde::Serialize;

use super::state::{CircuitState, View};

/// What a breaker is doing now: served by `GET /resilience`, shown by the dashboard.
///
/// In Closed, Open and MetricsOnly the counts are the window's (in Open, as it was when the
/// circuit tripped, which shows why); in HalfOpen they are the probes that have reported.
///
/// ```
/// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
///
/// let handle = CircuitBreakerLayer::new("users", CircuitBreakerConfig::default()).unwrap().handle();
/// let json = serde_json::to_value(handle.snapshot()).unwrap();
/// assert_eq!(json["name"], "users");
/// assert_eq!(json["state"], "closed");
/// assert_eq!(json["retry_after_ms"], serde_json::Value::Null);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitSnapshot {
    /// The breaker's name.
    pub name: String,
    /// Its state.
    pub state: CircuitState,
    /// Calls in the window (probes that reported, in half-open).
    pub calls: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of those, slow calls (a slow failure counts as both).
    pub slow_calls: u64,
    /// `failures / calls` in percent (0 when there are no calls).
    pub failure_rate: f64,
    /// `slow_calls / calls` in percent (0 when there are no calls).
    pub slow_call_rate: f64,
    /// Probe calls admitted and not yet reported (half-open only).
    pub probes_in_flight: u32,
    /// How long the breaker has been in this state.
    pub time_in_state_ms: u64,
    /// In Open: how long until a probe is admitted, rounded up. `None` in every other state.
    ///
    /// `Some(0)` means the wait is over and a probe is due: without
    /// `automatic_transition_to_half_open` the breaker moves to half-open only when the next
    /// call arrives, so until then `state` still says `open`. Read it as "open, probing on
    /// the next call".
    pub retry_after_ms: Option<u64>,
    /// Calls rejected since the breaker was built.
    pub rejected_total: u64,
    /// State transitions since the breaker was built.
    pub transitions_total: u64,
}

impl CircuitSnapshot {
    pub(crate) fn new(name: &str, view: View, rejected_total: u64, transitions_total: u64) -> Self {
        let rate = |n: u64| {
            if view.counts.calls == 0 {
                0.0
            } else {
                n as f64 * 100.0 / view.counts.calls as f64
            }
        };
        let ms = |nanos: u64| nanos / 1_000_000;
        Self {
            name: name.to_owned(),
            state: view.state,
            calls: view.counts.calls,
            failures: view.counts.failures,
            slow_calls: view.counts.slow,
            failure_rate: rate(view.counts.failures),
            slow_call_rate: rate(view.counts.slow),
            probes_in_flight: u32::try_from(view.probes_in_flight).unwrap_or(u32::MAX),
            time_in_state_ms: ms(view.in_state_for),
            retry_after_ms: view.retry_after.map(|n| n.div_ceil(1_000_000)),
            rejected_total,
            transitions_total,
        }
    }
}
