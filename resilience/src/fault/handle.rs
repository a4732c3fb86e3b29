//! The switches of one fault injector, shared by every service it wraps.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics::Counter;
use serde::{Deserialize, Serialize};

use crate::{
    config::ConfigError,
    random::{SplitMix64, random_seed},
};

/// The switches of a [`FaultLayer`](super::FaultLayer): added latency and an error rate,
/// changed at run time (from an admin endpoint, a chaos script) by any clone.
///
/// Everything is off until set, and the off path costs two atomic loads. The name labels its
/// `resilience_faults_injected_total{name, kind="error"|"latency"}` series, its trace events
/// and its snapshot, so the injectors of two stacks never read as one.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::fault::FaultHandle;
///
/// let faults = FaultHandle::new("users");
/// assert_eq!(faults.name(), "users");
/// faults.set_latency(Duration::from_millis(250));
/// faults.set_error_rate(0.1).unwrap();
/// assert!(faults.set_error_rate(1.5).is_err());
/// let snap = faults.snapshot();
/// assert_eq!((snap.latency_ms, snap.error_rate), (250, 0.1));
/// faults.reset();
/// assert_eq!(faults.snapshot().error_rate, 0.0);
/// ```
#[derive(Clone)]
pub struct FaultHandle {
    state: Arc<State>,
}

struct State {
    name: Arc<str>,
    latency_ns: AtomicU64,
    /// The error rate as a fraction of `u64::MAX`: a draw below it injects an error.
    error_threshold: AtomicU64,
    rng: AtomicU64,
    injected_errors: AtomicU64,
    delayed: AtomicU64,
    errors_metric: Counter,
    delays_metric: Counter,
}

/// A fault injector's settings and counts, serialisable for an admin endpoint.
///
/// ```
/// use resilience_layers::fault::FaultHandle;
///
/// let json = serde_json::to_value(FaultHandle::new("users").snapshot()).unwrap();
/// assert_eq!((json["name"].as_str(), json["error_rate"].as_f64()), (Some("users"), Some(0.0)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSnapshot {
    /// The injector's name.
    pub name: String,
    /// Latency added to every call, in milliseconds.
    pub latency_ms: u64,
    /// Fraction of calls failed on purpose, 0 to 1.
    pub error_rate: f64,
    /// Errors injected so far.
    pub injected_errors_total: u64,
    /// Calls delayed so far (by the set latency or a per-request one).
    pub delayed_total: u64,
}

impl FaultHandle {
    /// A handle named `name` with every fault off.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        Self {
            state: Arc::new(State {
                latency_ns: AtomicU64::new(0),
                error_threshold: AtomicU64::new(0),
                rng: AtomicU64::new(random_seed()),
                injected_errors: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
                errors_metric: faults_counter(&name, "error"),
                delays_metric: faults_counter(&name, "latency"),
                name,
            }),
        }
    }

    /// The name given to [`new`](Self::new).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Adds `latency` before every call's response (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.state.latency_ns.store(ns, Ordering::Relaxed);
    }

    /// The latency added to every call.
    #[inline]
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.state.latency_ns.load(Ordering::Relaxed))
    }

    /// Fails this fraction of calls (0 to 1) with [`InjectedFault`](super::InjectedFault);
    /// anything else is a [`ConfigError`] on `error_rate`.
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ConfigError> {
        let threshold = error_threshold(rate)?;
        self.state
            .error_threshold
            .store(threshold, Ordering::Relaxed);
        Ok(())
    }

    /// The fraction of calls failed on purpose.
    pub fn error_rate(&self) -> f64 {
        match self.state.error_threshold.load(Ordering::Relaxed) {
            u64::MAX => 1.0,
            t => t as f64 / u64::MAX as f64,
        }
    }

    /// Turns every fault off (counts are kept).
    pub fn reset(&self) {
        self.set_latency(Duration::ZERO);
        self.state.error_threshold.store(0, Ordering::Relaxed);
    }

    /// Settings and counts right now.
    pub fn snapshot(&self) -> FaultSnapshot {
        let state = &self.state;
        FaultSnapshot {
            name: state.name.to_string(),
            latency_ms: u64::try_from(self.latency().as_millis()).unwrap_or(u64::MAX),
            // Rounded to parts per million so a rate set as 0.1 reads back as 0.1.
            error_rate: (self.error_rate() * 1e6).round() / 1e6,
            injected_errors_total: state.injected_errors.load(Ordering::Relaxed),
            delayed_total: state.delayed.load(Ordering::Relaxed),
        }
    }

    /// Whether this call fails on purpose (and counts it).
    #[inline]
    pub(super) fn draw_error(&self) -> bool {
        let threshold = self.state.error_threshold.load(Ordering::Relaxed);
        if threshold == 0 {
            return false;
        }
        let hit = threshold == u64::MAX || self.next_u64() < threshold;
        if hit {
            self.state.injected_errors.fetch_add(1, Ordering::Relaxed);
            self.state.errors_metric.increment(1);
            tracing::debug!(target: "resilience", name = %self.state.name, "injecting an error");
        }
        hit
    }

    /// Counts one delayed call.
    pub(super) fn count_delay(&self) {
        self.state.delayed.fetch_add(1, Ordering::Relaxed);
        self.state.delays_metric.increment(1);
    }

    /// The next draw of one SplitMix64 sequence every clone shares: one atomic add claims
    /// the next state, lock-free.
    fn next_u64(&self) -> u64 {
        let state = self
            .state
            .rng
            .fetch_add(SplitMix64::GAMMA, Ordering::Relaxed);
        SplitMix64(state).next_u64()
    }
}

/// The draw below which a call fails, for an error rate of 0 to 1 (anything else is an error
/// on `error_rate`).
pub(super) fn error_threshold(rate: f64) -> Result<u64, ConfigError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(ConfigError::out_of_range(
            "error_rate",
            rate,
            0.0,
            1.0,
            false,
        ));
    }
    Ok(if rate >= 1.0 {
        u64::MAX
    } else {
        (rate * u64::MAX as f64) as u64
    })
}

/// The `resilience_faults_injected_total{name, kind}` series (made once per handle).
fn faults_counter(name: &str, kind: &'static str) -> Counter {
    metrics::describe_counter!(
        "resilience_faults_injected_total",
        "Calls a fault injector failed (kind error) or delayed (kind latency) on purpose, by name."
    );
    metrics::counter!("resilience_faults_injected_total", "name" => name.to_string(), "kind" => kind)
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle")
            .field("name", &self.name())
            .field("latency", &self.latency())
            .field("error_rate", &self.error_rate())
            .finish()
    }
}
