//! Concurrency limits that follow measured latency (Netflix's concurrency-limits, Envoy's
//! adaptive concurrency filter): pure arithmetic on samples, no clock and no tokio, so each
//! algorithm is tested on numbers.
//!
//! Each completed call gives a sample: when it started, its latency, and the calls in flight
//! with it. The limit falls when latency rises above the no-load minimum (the dependency is
//! queueing) and recovers when it falls, always within `[min_limit, max_limit]`.
//!
//! A fall is taken at most once per round trip, as TCP does: the calls already in flight
//! when the limit fell started under the old limit, so their slow answers say nothing new,
//! and counting each of them would take the limit to its minimum on one burst (which the
//! bulkhead's paused-clock test showed: 59 calls in flight, 59 falls of 10 %).
//!
//! The bulkhead (with `adaptive` in its config) feeds each completed call's latency to a
//! [`Limiter`] and applies the limit it answers through the same permit arithmetic as a
//! reconfiguration: permits in use are never revoked.

use super::{AdaptiveConfig, LimitAlgorithm};

/// One of the algorithms, as the config chose.
#[derive(Debug, Clone)]
pub(crate) enum Limiter {
    Aimd(Aimd),
    Gradient2(Gradient2),
}

impl Limiter {
    pub(crate) fn new(config: &AdaptiveConfig, max_concurrent: usize) -> Self {
        let bounds = Bounds {
            min_limit: config.min_limit as f64,
            max_limit: max_concurrent as f64,
        };
        let initial = config.initial_limit as f64;
        match config.algorithm {
            LimitAlgorithm::Aimd => {
                Self::Aimd(Aimd::new(bounds, initial, config.tolerance, config.backoff))
            }
            LimitAlgorithm::Gradient2 => Self::Gradient2(Gradient2::new(
                bounds,
                initial,
                config.tolerance,
                config.smoothing,
            )),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        match self {
            Self::Aimd(a) => a.limit(),
            Self::Gradient2(g) => g.limit(),
        }
    }

    /// One completed call: its latency (any unit) and the calls in flight with it; the
    /// limit to apply.
    pub(crate) fn sample(&mut self, started: f64, latency: f64, in_flight: usize) -> usize {
        match self {
            Self::Aimd(a) => a.sample(started, latency, in_flight),
            Self::Gradient2(g) => g.sample(started, latency, in_flight),
        }
    }
}

/// The bounds every algorithm keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    pub(crate) min_limit: f64,
    pub(crate) max_limit: f64,
}

impl Bounds {
    fn clamp(&self, limit: f64) -> f64 {
        limit.clamp(self.min_limit, self.max_limit)
    }
}

/// Additive increase, multiplicative decrease: `1 / sqrt(limit)` more permits per sample that saw latency
/// within `tolerance` of the no-load minimum while the limit was in use, `backoff` times
/// the limit on a sample above it.
#[derive(Debug, Clone)]
pub(crate) struct Aimd {
    bounds: Bounds,
    limit: f64,
    /// Latency above `tolerance * min_latency` means the dependency is queueing.
    tolerance: f64,
    backoff: f64,
    min_latency: Option<f64>,
    /// When the call that last lowered the limit completed: calls started before say nothing new.
    fell_at: f64,
}

impl Aimd {
    pub(crate) fn new(bounds: Bounds, initial: f64, tolerance: f64, backoff: f64) -> Self {
        Self {
            bounds,
            limit: bounds.clamp(initial),
            tolerance,
            backoff,
            min_latency: None,
            fell_at: f64::NEG_INFINITY,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit as usize
    }

    /// One completed call: when it started and its latency (any one unit), and the calls in
    /// flight with it.
    pub(crate) fn sample(&mut self, started: f64, latency: f64, in_flight: usize) -> usize {
        let min = self.min_latency.map_or(latency, |m| m.min(latency));
        self.min_latency = Some(min);
        if latency > min * self.tolerance {
            if started >= self.fell_at {
                self.limit = self.bounds.clamp(self.limit * self.backoff);
                self.fell_at = started + latency;
            }
        } else if in_flight as f64 * 2.0 >= self.limit {
            // Only a limit in use may grow: an idle client learns nothing about the knee.
            self.limit = self
                .bounds
                .clamp(self.limit + 1.0 / self.limit.max(1.0).sqrt());
        }
        self.limit()
    }
}

/// Gradient2's update: the ratio of a reference latency to the short-term average scales the
/// limit (below 1 when latency is rising), plus a queue allowance of `sqrt(limit)`, smoothed.
///
/// The reference is the no-load minimum, as in Envoy's gradient controller, rather than
/// Netflix's long-term average: under a load that stays above the knee the long-term average
/// rises to meet the short one, the gradient returns to 1 and the limit creeps to its
/// maximum (which the simulated dependency in the tests shows).
#[derive(Debug, Clone)]
pub(crate) struct Gradient2 {
    bounds: Bounds,
    limit: f64,
    tolerance: f64,
    smoothing: f64,
    /// The lowest latency seen: the dependency with no queue.
    min_latency: Option<f64>,
    /// An exponential average of the last few latencies.
    short: Option<f64>,
    /// When the call that last changed the limit completed: calls started before say nothing new.
    changed_at: f64,
}

impl Gradient2 {
    pub(crate) fn new(bounds: Bounds, initial: f64, tolerance: f64, smoothing: f64) -> Self {
        Self {
            bounds,
            limit: bounds.clamp(initial),
            tolerance,
            smoothing,
            min_latency: None,
            short: None,
            changed_at: f64::NEG_INFINITY,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit as usize
    }

    pub(crate) fn sample(&mut self, started: f64, latency: f64, in_flight: usize) -> usize {
        let ema = |avg: Option<f64>, window: f64| {
            avg.map_or(latency, |a| a + (latency - a) * (2.0 / (window + 1.0)))
        };
        let short = ema(self.short, 10.0);
        let min = self.min_latency.map_or(latency, |m| m.min(latency));
        self.short = Some(short);
        self.min_latency = Some(min);
        // An idle client learns nothing about the knee; a call started before the last
        // change nothing new.
        if (in_flight as f64) < self.limit / 2.0 || started < self.changed_at {
            return self.limit();
        }
        let gradient = (self.tolerance * min / short).clamp(0.5, 1.0);
        let queue = self.limit.sqrt();
        let target = self.limit * gradient + queue;
        let next = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        let next = self.bounds.clamp(next);
        if next as usize != self.limit as usize {
            self.changed_at = started + latency;
        }
        self.limit = next;
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        min_limit: 2.0,
        max_limit: 200.0,
    };

    /// A dependency whose latency is `base` up to `knee` calls in flight and grows linearly
    /// above; callers always have more work than the limit lets through.
    fn latency(in_flight: usize, knee: usize) -> f64 {
        let base = 10.0;
        if in_flight <= knee {
            base
        } else {
            base * in_flight as f64 / knee as f64
        }
    }

    /// `n` calls one after another (each starts when the one before completed), with the
    /// dependency at the limit.
    fn run(
        sample: &mut impl FnMut(f64, f64, usize) -> usize,
        start: usize,
        knee: usize,
        n: usize,
    ) -> Vec<usize> {
        let (mut limit, mut now) = (start, 0.0);
        (0..n)
            .map(|_| {
                let took = latency(limit, knee);
                limit = sample(now, took, limit);
                now += took;
                limit
            })
            .collect()
    }

    fn settled(limits: &[usize]) -> (usize, usize) {
        let tail = &limits[limits.len() - 500..];
        (*tail.iter().min().unwrap(), *tail.iter().max().unwrap())
    }

    #[test]
    fn aimd_converges_near_the_knee_and_follows_it() {
        let mut aimd = Aimd::new(BOUNDS, 10.0, 1.2, 0.9);
        let limits = run(&mut |t, l, f| aimd.sample(t, l, f), 10, 40, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 30 && hi <= 60,
            "settled in [{lo}, {hi}] for a knee of 40"
        );
        // The knee drops (the dependency got slower): the limit falls.
        let limits = run(&mut |t, l, f| aimd.sample(t, l, f), hi, 15, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 10 && hi <= 23,
            "settled in [{lo}, {hi}] for a knee of 15"
        );
        // It recovers: the limit rises again.
        let limits = run(&mut |t, l, f| aimd.sample(t, l, f), hi, 40, 20000);
        let (lo, hi) = settled(&limits);
        assert!(lo >= 30 && hi <= 60, "recovered to [{lo}, {hi}]");
    }

    #[test]
    fn gradient2_converges_near_the_knee_and_follows_it() {
        let mut g = Gradient2::new(BOUNDS, 10.0, 1.2, 0.2);
        let limits = run(&mut |t, l, f| g.sample(t, l, f), 10, 40, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 30 && hi <= 80,
            "settled in [{lo}, {hi}] for a knee of 40"
        );
        let limits = run(&mut |t, l, f| g.sample(t, l, f), hi, 15, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 10 && hi <= 35,
            "settled in [{lo}, {hi}] for a knee of 15"
        );
        let limits = run(&mut |t, l, f| g.sample(t, l, f), hi, 40, 20000);
        let (lo, hi) = settled(&limits);
        assert!(lo >= 30 && hi <= 80, "recovered to [{lo}, {hi}]");
    }

    #[test]
    fn bounds_are_respected() {
        let bounds = Bounds {
            min_limit: 5.0,
            max_limit: 20.0,
        };
        let mut aimd = Aimd::new(bounds, 100.0, 1.5, 0.5);
        assert_eq!(aimd.limit(), 20);
        for _ in 0..1000 {
            assert!((5..=20).contains(&aimd.sample(0.0, 10.0, 20)));
        }
        for i in 0..100 {
            let started = f64::from(i) * 1000.0; // each after the one before completed
            assert!((5..=20).contains(&aimd.sample(started, 1000.0, 20)));
        }
        assert_eq!(aimd.limit(), 5);
        let mut g = Gradient2::new(bounds, 1.0, 1.5, 0.5);
        assert_eq!(g.limit(), 5);
        for i in 0..2000 {
            let l = g.sample(
                f64::from(i) * 1000.0,
                if i < 1000 { 10.0 } else { 1000.0 },
                20,
            );
            assert!((5..=20).contains(&l));
        }
    }

    #[test]
    fn an_idle_client_does_not_grow_its_limit() {
        let mut aimd = Aimd::new(BOUNDS, 10.0, 1.2, 0.9);
        let mut g = Gradient2::new(BOUNDS, 10.0, 1.2, 0.2);
        for _ in 0..1000 {
            aimd.sample(0.0, 10.0, 1);
            g.sample(0.0, 10.0, 1);
        }
        assert_eq!((aimd.limit(), g.limit()), (10, 10));
    }
}
