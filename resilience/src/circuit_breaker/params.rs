//! The breaker's numbers, replaceable while calls run.
//!
//! Each number the call path reads sits in an atomic of its own, so a reconfiguration can
//! store new values without a lock and without a pointer to swap: a call that races one may
//! see some fields old and some new (every mix is a valid configuration's value for each
//! field, and each field is read whole), never a torn value. Plain std atomics even under
//! loom: the models explore the state word and the windows, and any interleaving of these
//! loads is one of the mixes above.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::state::Params;

/// `Option<u64>` fields store this for `None`.
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct LiveParams {
    failure_rate_threshold: AtomicU64,
    slow_call_rate_threshold: AtomicU64,
    slow_call_nanos: AtomicU64,
    minimum_calls: AtomicU64,
    consecutive_failures: AtomicU64,
    probes: AtomicU64,
    max_half_open_nanos: AtomicU64,
    automatic_half_open: AtomicBool,
}

impl LiveParams {
    pub(crate) fn new(params: &Params) -> Self {
        let live = Self {
            failure_rate_threshold: AtomicU64::new(0),
            slow_call_rate_threshold: AtomicU64::new(0),
            slow_call_nanos: AtomicU64::new(NONE),
            minimum_calls: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(NONE),
            probes: AtomicU64::new(0),
            max_half_open_nanos: AtomicU64::new(NONE),
            automatic_half_open: AtomicBool::new(false),
        };
        live.store(params);
        live
    }

    /// Publishes `params` (the waits live under the transition lock, not here).
    pub(crate) fn store(&self, p: &Params) {
        let opt = |v: Option<u64>| v.unwrap_or(NONE);
        self.failure_rate_threshold
            .store(p.failure_rate_threshold.to_bits(), Relaxed);
        self.slow_call_rate_threshold
            .store(p.slow_call_rate_threshold.to_bits(), Relaxed);
        self.slow_call_nanos.store(opt(p.slow_call_nanos), Relaxed);
        self.minimum_calls.store(p.minimum_calls, Relaxed);
        self.consecutive_failures
            .store(opt(p.consecutive_failures), Relaxed);
        self.probes.store(p.probes, Relaxed);
        self.max_half_open_nanos
            .store(opt(p.max_half_open_nanos), Relaxed);
        self.automatic_half_open
            .store(p.automatic_half_open, Relaxed);
    }

    #[inline]
    pub(crate) fn failure_rate_threshold(&self) -> f64 {
        f64::from_bits(self.failure_rate_threshold.load(Relaxed))
    }

    #[inline]
    pub(crate) fn slow_call_rate_threshold(&self) -> f64 {
        f64::from_bits(self.slow_call_rate_threshold.load(Relaxed))
    }

    /// `None`: slow-call detection off, the clock is never read for it.
    #[inline]
    pub(crate) fn slow_call_nanos(&self) -> Option<u64> {
        some(self.slow_call_nanos.load(Relaxed))
    }

    #[inline]
    pub(crate) fn minimum_calls(&self) -> u64 {
        self.minimum_calls.load(Relaxed)
    }

    #[inline]
    pub(crate) fn consecutive_failures(&self) -> Option<u64> {
        some(self.consecutive_failures.load(Relaxed))
    }

    #[inline]
    pub(crate) fn probes(&self) -> u64 {
        self.probes.load(Relaxed)
    }

    #[inline]
    pub(crate) fn max_half_open_nanos(&self) -> Option<u64> {
        some(self.max_half_open_nanos.load(Relaxed))
    }

    #[inline]
    pub(crate) fn automatic_half_open(&self) -> bool {
        self.automatic_half_open.load(Relaxed)
    }
}

fn some(v: u64) -> Option<u64> {
    (v != NONE).then_some(v)
}
