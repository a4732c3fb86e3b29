//! The switches of one fault injector, shared by every service it wraps.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    config::ConfigError,
    random::{SplitMix64, random_seed},
};

/// The switches of a [`FaultLayer`](super::FaultLayer): added latency and an error rate,
/// changed at run time (from an admin endpoint, a chaos script) by any clone.
///
/// Everything is off until set, and the off path costs two atomic loads.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::fault::FaultHandle;
///
/// let faults = FaultHandle::new();
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
    latency_ns: AtomicU64,
    /// The error rate as a fraction of `u64::MAX`: a draw below it injects an error.
    error_threshold: AtomicU64,
    rng: AtomicU64,
    injected_errors: AtomicU64,
    delayed: AtomicU64,
}

/// A fault injector's settings and counts, serialisable for an admin endpoint.
///
/// ```
/// use resilience_layers::fault::FaultHandle;
///
/// let json = serde_json::to_value(FaultHandle::new().snapshot()).unwrap();
/// assert_eq!(json["error_rate"], 0.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSnapshot {
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
    /// A handle with every fault off.
    pub fn new() -> Self {
        Self {
            state: Arc::new(State {
                latency_ns: AtomicU64::new(0),
                error_threshold: AtomicU64::new(0),
                rng: AtomicU64::new(random_seed()),
                injected_errors: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
            }),
        }
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
        if !(0.0..=1.0).contains(&rate) {
            return Err(ConfigError::out_of_range(
                "error_rate",
                rate,
                0.0,
                1.0,
                false,
            ));
        }
        let threshold = if rate >= 1.0 {
            u64::MAX
        } else {
            (rate * u64::MAX as f64) as u64
        };
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
        }
        hit
    }

    /// Counts one delayed call.
    pub(super) fn count_delay(&self) {
        self.state.delayed.fetch_add(1, Ordering::Relaxed);
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

impl Default for FaultHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle")
            .field("latency", &self.latency())
            .field("error_rate", &self.error_rate())
            .finish()
    }
}
