//! A fixed-size latency histogram over a rotating window of recent samples: the source of
//! the percentile hedge delay. Pure state on atomics, no clock and no lock.

use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

/// Buckets per window: 16 of one microsecond each, then four per power of two (a bucket is
/// at most 25 % wide) up to about 2^40 µs; longer samples share the last bucket.
const BUCKETS: usize = 16 + 4 * 37;

/// Samples per window. The percentile reads both windows, so it covers the last
/// `WINDOW`..`2 * WINDOW` samples: old latencies age out as new ones arrive.
pub(crate) const WINDOW: u64 = 1024;

/// How often (in samples) the cached percentile is computed again, once warm.
const RECOMPUTE_EVERY: u64 = 16;

/// No cached percentile yet.
const NONE: u64 = u64::MAX;

pub(crate) struct LatencyWindow {
    windows: [[AtomicU32; BUCKETS]; 2],
    /// Which of `windows` takes new samples.
    current: AtomicUsize,
    /// Samples recorded since the histogram was built.
    recorded: AtomicU64,
    /// The percentile over both windows, in nanoseconds, as last computed.
    cached: AtomicU64,
    percentile: f64,
    min_samples: u64,
}

impl LatencyWindow {
    /// `percentile` in `(0, 100)`; no delay is given before `min_samples` samples.
    pub(crate) fn new(percentile: f64, min_samples: u32) -> Self {
        Self {
            windows: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            current: AtomicUsize::new(0),
            recorded: AtomicU64::new(0),
            cached: AtomicU64::new(NONE),
            percentile,
            min_samples: u64::from(min_samples),
        }
    }

    /// Adds one sample. Every `WINDOW`th sample flips the windows and clears the one that now
    /// takes samples; a sample racing with the flip may land in either, which the percentile
    /// tolerates.
    pub(crate) fn record(&self, nanos: u64) {
        let current = self.current.load(Acquire);
        self.windows[current][bucket(nanos)].fetch_add(1, Relaxed);
        let n = self.recorded.fetch_add(1, AcqRel) + 1;
        if n % WINDOW == 0 {
            let next = 1 - current;
            for b in &self.windows[next] {
                b.store(0, Relaxed);
            }
            self.current.store(next, Release);
        }
        if n <= self.min_samples || n % RECOMPUTE_EVERY == 0 {
            self.recompute();
        }
    }

    /// The percentile in nanoseconds (a bucket's upper bound), once `min_samples` are in.
    pub(crate) fn percentile_nanos(&self) -> Option<u64> {
        if self.recorded.load(Relaxed) < self.min_samples {
            return None;
        }
        let cached = self.cached.load(Relaxed);
        (cached != NONE).then_some(cached)
    }

    /// Samples recorded so far.
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Relaxed)
    }

    fn recompute(&self) {
        let counts: [u64; BUCKETS] = std::array::from_fn(|i| {
            u64::from(self.windows[0][i].load(Relaxed))
                + u64::from(self.windows[1][i].load(Relaxed))
        });
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return;
        }
        let target = ((total as f64) * self.percentile / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= target {
                self.cached.store(upper_bound(i), Relaxed);
                return;
            }
        }
    }
}

/// The bucket of a sample of `nanos`.
fn bucket(nanos: u64) -> usize {
    let us = nanos / 1000;
    if us < 16 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 4
    let sub = ((us >> (octave - 2)) & 3) as usize;
    (16 + (octave - 4) * 4 + sub).min(BUCKETS - 1)
}

/// The largest sample, in nanoseconds, that falls in bucket `i` (rounded up: a hedge a
/// little late rather than a little early).
fn upper_bound(i: usize) -> u64 {
    if i < 16 {
        return (i as u64 + 1) * 1000;
    }
    let octave = (i - 16) / 4 + 4;
    let sub = ((i - 16) % 4) as u64;
    ((5 + sub) << (octave - 2)) * 1000
}

impl std::fmt::Debug for LatencyWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyWindow")
            .field("recorded", &self.recorded())
            .field("percentile_nanos", &self.percentile_nanos())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn buckets_are_ordered_and_narrow() {
        let mut last = 0;
        for us in [0u64, 1, 15, 16, 17, 20, 31, 32, 100, 1_000, 50_000, 1 << 30] {
            let b = bucket(us * 1000);
            assert!(b >= last, "{us} µs");
            last = b;
            let upper = upper_bound(b);
            assert!(upper > us * 1000, "{us} µs under its bound {upper}");
            assert!(
                upper as f64 <= (us as f64 * 1000.0 + 1000.0) * 1.25 + 1.0,
                "{us} µs bound {upper}"
            );
        }
    }

    #[test]
    fn no_delay_before_min_samples() {
        let w = LatencyWindow::new(95.0, 10);
        for _ in 0..9 {
            w.record(10 * MS);
        }
        assert_eq!(w.percentile_nanos(), None);
        w.record(10 * MS);
        let p = w.percentile_nanos().unwrap();
        assert!((10 * MS..=13 * MS).contains(&p), "{p}");
    }

    #[test]
    fn the_percentile_follows_the_tail() {
        let w = LatencyWindow::new(90.0, 1);
        // 89 fast, 11 slow: p90 is slow.
        for _ in 0..89 {
            w.record(MS);
        }
        for _ in 0..11 {
            w.record(100 * MS);
        }
        w.recompute();
        let p = w.percentile_nanos().unwrap();
        assert!((100 * MS..=125 * MS).contains(&p), "{p}");
    }

    #[test]
    fn old_samples_age_out() {
        let w = LatencyWindow::new(50.0, 1);
        for _ in 0..WINDOW {
            w.record(100 * MS);
        }
        // Two windows of fast samples push the slow ones out entirely.
        for _ in 0..2 * WINDOW {
            w.record(MS);
        }
        let p = w.percentile_nanos().unwrap();
        assert!(p <= 2 * MS, "{p}");
    }
}
