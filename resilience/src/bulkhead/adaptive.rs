//! Concurrency limits that follow measured latency (Netflix's concurrency-limits, Envoy's
//! adaptive concurrency filter): pure arithmetic on samples, no clock and no tokio, so each
//! algorithm is tested on numbers.
//!
//! Each completed call gives a sample: its latency and the calls in flight when it started.
//! The limit falls when latency rises above the no-load minimum (the dependency is queueing)
//! and recovers when it falls, always within `[min_limit, max_limit]`.
//!
//! Not wired into the bulkhead yet: the bulkhead would feed each completed call's latency here
//! and apply the new limit through its reconfigure path.
#![cfg_attr(not(test), allow(dead_code))]

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
}

impl Aimd {
    pub(crate) fn new(bounds: Bounds, initial: f64, tolerance: f64, backoff: f64) -> Self {
        Self {
            bounds,
            limit: bounds.clamp(initial),
            tolerance,
            backoff,
            min_latency: None,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit as usize
    }

    /// One completed call: its latency (any unit) and the calls in flight with it.
    pub(crate) fn sample(&mut self, latency: f64, in_flight: usize) -> usize {
        let min = self.min_latency.map_or(latency, |m| m.min(latency));
        self.min_latency = Some(min);
        if latency > min * self.tolerance {
            self.limit = self.bounds.clamp(self.limit * self.backoff);
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
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit as usize
    }

    pub(crate) fn sample(&mut self, latency: f64, in_flight: usize) -> usize {
        let ema = |avg: Option<f64>, window: f64| {
            avg.map_or(latency, |a| a + (latency - a) * (2.0 / (window + 1.0)))
        };
        let short = ema(self.short, 10.0);
        let min = self.min_latency.map_or(latency, |m| m.min(latency));
        self.short = Some(short);
        self.min_latency = Some(min);
        // An idle client learns nothing about the knee.
        if (in_flight as f64) < self.limit / 2.0 {
            return self.limit();
        }
        let gradient = (self.tolerance * min / short).clamp(0.5, 1.0);
        let queue = self.limit.sqrt();
        let target = self.limit * gradient + queue;
        let next = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        self.limit = self.bounds.clamp(next);
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

    fn run(
        sample: &mut impl FnMut(f64, usize) -> usize,
        start: usize,
        knee: usize,
        n: usize,
    ) -> Vec<usize> {
        let mut limit = start;
        (0..n)
            .map(|_| {
                limit = sample(latency(limit, knee), limit);
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
        let limits = run(&mut |l, f| aimd.sample(l, f), 10, 40, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 30 && hi <= 60,
            "settled in [{lo}, {hi}] for a knee of 40"
        );
        // The knee drops (the dependency got slower): the limit falls.
        let limits = run(&mut |l, f| aimd.sample(l, f), hi, 15, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 10 && hi <= 23,
            "settled in [{lo}, {hi}] for a knee of 15"
        );
        // It recovers: the limit rises again.
        let limits = run(&mut |l, f| aimd.sample(l, f), hi, 40, 20000);
        let (lo, hi) = settled(&limits);
        assert!(lo >= 30 && hi <= 60, "recovered to [{lo}, {hi}]");
    }

    #[test]
    fn gradient2_converges_near_the_knee_and_follows_it() {
        let mut g = Gradient2::new(BOUNDS, 10.0, 1.2, 0.2);
        let limits = run(&mut |l, f| g.sample(l, f), 10, 40, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 30 && hi <= 80,
            "settled in [{lo}, {hi}] for a knee of 40"
        );
        let limits = run(&mut |l, f| g.sample(l, f), hi, 15, 5000);
        let (lo, hi) = settled(&limits);
        assert!(
            lo >= 10 && hi <= 35,
            "settled in [{lo}, {hi}] for a knee of 15"
        );
        let limits = run(&mut |l, f| g.sample(l, f), hi, 40, 20000);
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
            assert!((5..=20).contains(&aimd.sample(10.0, 20)));
        }
        for _ in 0..100 {
            assert!((5..=20).contains(&aimd.sample(1000.0, 20)));
        }
        assert_eq!(aimd.limit(), 5);
        let mut g = Gradient2::new(bounds, 1.0, 1.5, 0.5);
        assert_eq!(g.limit(), 5);
        for i in 0..2000 {
            let l = g.sample(if i < 1000 { 10.0 } else { 1000.0 }, 20);
            assert!((5..=20).contains(&l));
        }
    }

    #[test]
    fn an_idle_client_does_not_grow_its_limit() {
        let mut aimd = Aimd::new(BOUNDS, 10.0, 1.2, 0.9);
        let mut g = Gradient2::new(BOUNDS, 10.0, 1.2, 0.2);
        for _ in 0..1000 {
            aimd.sample(10.0, 1);
            g.sample(10.0, 1);
        }
        assert_eq!((aimd.limit(), g.limit()), (10, 10));
    }
}
