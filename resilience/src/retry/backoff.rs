//! Backoff delays: exponential with a cap and jitter, or any iterator of durations.
//!
//! Pure arithmetic, no tokio and no clock: each [`Backoff`] is an iterator with its own small
//! random generator, seeded per request so that clients that failed together spread out.

use std::time::Duration;

use super::{BackoffConfig, Jitter};
use crate::random::{SplitMix64, random_seed};

/// Successive delays for one request's retries, from a [`BackoffConfig`]. Never ends;
/// `max_attempts` bounds how many are taken.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{Backoff, BackoffConfig, Jitter};
///
/// let config = BackoffConfig { base: Duration::from_millis(100), max: Duration::from_secs(1), ..Default::default() };
/// for (n, delay) in Backoff::new(&config, 7).take(6).enumerate() {
///     let exp = Duration::from_millis(100 * 2u64.pow(n as u32)).min(Duration::from_secs(1));
///     assert!(delay <= exp); // full jitter: anywhere in [0, exp]
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    multiplier: f64,
    jitter: Jitter,
    /// The un-jittered delay for the next retry.
    exp: Duration,
    /// The previous delay handed out (decorrelated jitter grows from it).
    prev: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// The delays of `config`, randomised from `seed` (the same seed gives the same delays).
    pub fn new(config: &BackoffConfig, seed: u64) -> Self {
        let base = config.base.min(config.max);
        Self {
            base,
            max: config.max,
            multiplier: config.multiplier.max(1.0),
            jitter: config.jitter,
            exp: base,
            prev: base,
            rng: SplitMix64(seed),
        }
    }

    /// The delays of `config` with a fresh random seed.
    pub fn random(config: &BackoffConfig) -> Self {
        Self::new(config, random_seed())
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(self.rng.next_f64())
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let exp = self.exp;
        // Grow in f64 seconds and clamp before converting back, so huge products cannot panic.
        let grown = exp.as_secs_f64() * self.multiplier;
        self.exp = if grown >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(grown)
        };
        let delay = match self.jitter {
            Jitter::None => exp,
            Jitter::Full => self.between(Duration::ZERO, exp),
            Jitter::Equal => self.between(exp / 2, exp),
            Jitter::Decorrelated => {
                let hi = self.prev.saturating_mul(3).min(self.max);
                self.between(self.base, hi)
            }
        };
        self.prev = delay;
        Some(delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

impl BackoffConfig {
    /// The delays of this config randomised from `seed`; see [`Backoff`].
    pub fn backoff_seeded(&self, seed: u64) -> Backoff {
        Backoff::new(self, seed)
    }
}

/// Makes a fresh sequence of delays for each request that needs retrying.
///
/// Implemented by [`BackoffConfig`] (a [`Backoff`] with a new random seed each time) and by
/// [`FromIter`], which adapts any cloneable `IntoIterator<Item = Duration>` (a `backon`
/// backoff, a `Vec`, an `iter::repeat(..).take(..)`).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{FromIter, MakeBackoff};
///
/// let fixed = FromIter::new([Duration::from_millis(10), Duration::from_millis(50)]);
/// assert_eq!(fixed.make_backoff().collect::<Vec<_>>().len(), 2);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not make a sequence of backoff delays",
    label = "not a `MakeBackoff`",
    note = "`with_backoff` takes any `IntoIterator<Item = Duration> + Clone` (a `Vec`, a `backon` builder); other types implement `MakeBackoff`"
)]
pub trait MakeBackoff {
    /// The delays for one request, in order; when it ends, retrying stops.
    type Backoff: Iterator<Item = Duration>;

    /// A fresh sequence for one request.
    fn make_backoff(&self) -> Self::Backoff;

    /// A fresh sequence for one request of a policy that follows its handle's backoff
    /// (built by `RetryPolicy::new`, whose maker is the handle's [`BackoffConfig`]):
    /// `configured` is the one in force now, which a reconfiguration may have replaced.
    /// Other makers ignore it.
    #[doc(hidden)]
    fn make_configured_backoff(&self, configured: &BackoffConfig) -> Self::Backoff {
        let _ = configured;
        self.make_backoff()
    }
}

impl MakeBackoff for BackoffConfig {
    type Backoff = Backoff;

    fn make_backoff(&self) -> Backoff {
        Backoff::random(self)
    }

    fn make_configured_backoff(&self, configured: &BackoffConfig) -> Backoff {
        Backoff::random(configured)
    }
}

/// Any cloneable iterable of durations as a [`MakeBackoff`]: each request starts from a clone.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{FromIter, MakeBackoff};
///
/// let constant = FromIter::new(std::iter::repeat(Duration::from_millis(20)).take(3));
/// assert_eq!(constant.make_backoff().sum::<Duration>(), Duration::from_millis(60));
/// ```
#[derive(Debug, Clone)]
pub struct FromIter<I>(I);

impl<I> FromIter<I> {
    /// Wraps `iter`.
    pub fn new(iter: I) -> Self {
        Self(iter)
    }
}

impl<I> MakeBackoff for FromIter<I>
where
    I: IntoIterator<Item = Duration> + Clone,
{
    type Backoff = I::IntoIter;

    fn make_backoff(&self) -> I::IntoIter {
        self.0.clone().into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: Jitter) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter,
        }
    }

    fn exp(n: u32) -> Duration {
        Duration::from_millis(100 * 2u64.pow(n)).min(Duration::from_secs(2))
    }

    #[test]
    fn no_jitter_doubles_up_to_the_cap() {
        let delays: Vec<_> = Backoff::new(&config(Jitter::None), 0).take(7).collect();
        let want: Vec<_> = (0..7).map(exp).collect();
        assert_eq!(delays, want);
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn every_jitter_stays_in_its_band_and_under_the_cap() {
        for seed in 0..200 {
            for (n, d) in Backoff::new(&config(Jitter::Full), seed)
                .take(10)
                .enumerate()
            {
                assert!(d <= exp(n as u32), "full #{n}: {d:?}");
            }
            for (n, d) in Backoff::new(&config(Jitter::Equal), seed)
                .take(10)
                .enumerate()
            {
                let e = exp(n as u32);
                assert!(d >= e / 2 && d <= e, "equal #{n}: {d:?}");
            }
            let mut prev = Duration::from_millis(100);
            for d in Backoff::new(&config(Jitter::Decorrelated), seed).take(10) {
                let hi = (prev * 3).min(Duration::from_secs(2));
                assert!(
                    d >= Duration::from_millis(100) && d <= hi,
                    "decorrelated {d:?}"
                );
                prev = d;
            }
        }
    }

    #[test]
    fn jitter_spreads_and_seeds_repeat() {
        let a: Vec<_> = Backoff::new(&config(Jitter::Full), 1).take(5).collect();
        let b: Vec<_> = Backoff::new(&config(Jitter::Full), 1).take(5).collect();
        let c: Vec<_> = Backoff::new(&config(Jitter::Full), 2).take(5).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(random_seed(), random_seed());
    }

    #[test]
    fn huge_multipliers_saturate_at_the_cap() {
        let config = BackoffConfig {
            multiplier: 1e300,
            jitter: Jitter::None,
            ..config(Jitter::None)
        };
        let delays: Vec<_> = Backoff::new(&config, 0).take(50).collect();
        assert_eq!(delays[1], Duration::from_secs(2));
        assert_eq!(delays[49], Duration::from_secs(2));
    }
}
