//! The limiter itself: GCRA state for one quota, as a plain value.
//!
//! No runtime, no metrics, no name: a [`RateLimiter`] is the quota and one atomic word of
//! state (governor's lock-free GCRA), checked with [`RateLimiter::check`]. The layer's handle
//! holds one; a keyed layer can hold one per key (per client address, account or upstream
//! host), built from the same config, at the cost of that word each.

use std::{fmt, num::NonZeroU32, time::Duration};

use governor::{
    Quota,
    clock::Clock,
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
};

use super::{RateLimitConfig, TokioClock};
use crate::config::ConfigError;

type Gcra<Time> = governor::RateLimiter<NotKeyed, InMemoryState, Time, StateInformationMiddleware>;

/// One quota's GCRA state: `permits` per `period`, `burst` at once.
///
/// Every clone of a layer shares one through its handle; for one limiter per key, build one
/// per key from one config. The clock is tokio's ([`TokioClock`]) unless given.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::rate_limit::{Decision, RateLimitConfig, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = RateLimitConfig { permits: 2, period: Duration::from_secs(1), ..Default::default() };
/// let limiter = RateLimiter::new(&config).unwrap();
/// assert_eq!(limiter.check(), Decision::Allowed { remaining: 1 });
/// assert_eq!(limiter.check(), Decision::Allowed { remaining: 0 });
/// assert_eq!(limiter.check(), Decision::Denied { retry_after: Duration::from_millis(500) });
/// tokio::time::advance(Duration::from_millis(500)).await;
/// assert_eq!(limiter.check(), Decision::Allowed { remaining: 0 });
/// # }
/// ```
pub struct RateLimiter<Time: Clock = TokioClock> {
    gcra: Gcra<Time>,
    permits: u32,
    period: Duration,
    burst: u32,
}

/// What [`RateLimiter::check`] decided.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::rate_limit::Decision;
///
/// let denied = Decision::Denied { retry_after: Duration::from_millis(20) };
/// assert!(!denied.is_allowed());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A permit was taken.
    Allowed {
        /// Permits that could still be taken at once after this one.
        remaining: u32,
    },
    /// No permit now; nothing was taken.
    Denied {
        /// How long until one comes back (if nobody else takes it first).
        retry_after: Duration,
    },
}

impl Decision {
    /// True when a permit was taken.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

impl RateLimiter {
    /// Validates `config` and builds a full bucket on tokio's clock.
    pub fn new(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, TokioClock)
    }
}

impl<Time: Clock> RateLimiter<Time> {
    /// Validates `config` and builds a full bucket on `clock`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use governor::clock::FakeRelativeClock;
    /// use resilience_layers::rate_limit::{RateLimitConfig, RateLimiter};
    ///
    /// let clock = FakeRelativeClock::default();
    /// let config = RateLimitConfig { permits: 1, period: Duration::from_secs(1), ..Default::default() };
    /// let limiter = RateLimiter::with_clock(&config, clock.clone()).unwrap();
    /// assert!(limiter.check().is_allowed());
    /// assert!(!limiter.check().is_allowed());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(limiter.check().is_allowed());
    /// ```
    pub fn with_clock(config: &RateLimitConfig, clock: Time) -> Result<Self, ConfigError> {
        config.validate()?;
        let burst = NonZeroU32::new(config.burst()).expect("validated: burst is positive");
        let quota = Quota::with_period(config.interval())
            .expect("validated: the interval is positive")
            .allow_burst(burst);
        Ok(Self {
            gcra: governor::RateLimiter::direct_with_clock(quota, clock).with_middleware(),
            permits: config.permits,
            period: config.period,
            burst: burst.get(),
        })
    }

    /// Takes a permit if there is one now; otherwise says how long until there is.
    #[inline]
    pub fn check(&self) -> Decision {
        match self.gcra.check() {
            Ok(state) => Decision::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Denied {
                retry_after: not_until.wait_time_from(self.gcra.clock().now()),
            },
        }
    }

    /// The quota's permits per [`period`](Self::period).
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The quota's period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Permits that can be taken at once from a full bucket.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

impl<Time: Clock> fmt::Debug for RateLimiter<Time> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("permits", &self.permits)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(
        permits: u32,
        period_ms: u64,
        burst: Option<u32>,
    ) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let config = RateLimitConfig {
            permits,
            period: Duration::from_millis(period_ms),
            burst,
            ..Default::default()
        };
        (
            RateLimiter::with_clock(&config, clock.clone()).unwrap(),
            clock,
        )
    }

    fn allowed_now(limiter: &RateLimiter<FakeRelativeClock>) -> u32 {
        std::iter::from_fn(|| limiter.check().is_allowed().then_some(())).count() as u32
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_per_interval() {
        let (limiter, clock) = limiter(10, 1_000, Some(3));
        assert_eq!(allowed_now(&limiter), 3);
        assert_eq!(
            limiter.check(),
            Decision::Denied {
                retry_after: Duration::from_millis(100)
            }
        );
        clock.advance(Duration::from_millis(99));
        assert_eq!(
            limiter.check(),
            Decision::Denied {
                retry_after: Duration::from_millis(1)
            }
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(allowed_now(&limiter), 1);
        // A quiet spell refills the bucket, never beyond the burst.
        clock.advance(Duration::from_secs(60));
        assert_eq!(allowed_now(&limiter), 3);
    }

    #[test]
    fn sustained_rate_is_permits_per_period() {
        let (limiter, clock) = limiter(10, 1_000, None);
        assert_eq!(allowed_now(&limiter), 10);
        for _ in 0..5 {
            let mut in_period = 0;
            for _ in 0..1_000 {
                clock.advance(Duration::from_millis(1));
                in_period += allowed_now(&limiter);
            }
            assert_eq!(in_period, 10);
        }
    }

    #[test]
    fn remaining_counts_down_the_burst() {
        let (limiter, _clock) = limiter(5, 1_000, None);
        let remaining: Vec<_> = (0..5)
            .map(|_| match limiter.check() {
                Decision::Allowed { remaining } => remaining,
                Decision::Denied { .. } => panic!("denied within the burst"),
            })
            .collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
    }
}
