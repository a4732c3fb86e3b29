//! governor's clock on tokio's time, so a paused runtime pauses the limiter too.
//!
//! governor's own clocks read the system's monotonic clock (or quanta's TSC), which a test on
//! tokio's paused clock cannot move; every other layer of this crate reads
//! [`tokio::time::Instant`], and so does this one. Outside a runtime tokio's instant is the
//! system's, so the limiter works there too.

use std::{ops::Add, time::Duration};

use governor::{
    clock::{Clock, Reference},
    nanos::Nanos,
};
use tokio::time::Instant;

/// A governor [`Clock`] that reads [`tokio::time::Instant::now`]: the limiter's default.
///
/// ```
/// use governor::clock::Clock;
/// use resilience_layers::rate_limit::TokioClock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let before = TokioClock.now();
/// tokio::time::advance(std::time::Duration::from_secs(1)).await;
/// assert_eq!(TokioClock.now().instant() - before.instant(), std::time::Duration::from_secs(1));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokioClock;

/// An instant of [`TokioClock`]: a [`tokio::time::Instant`] as governor's [`Reference`].
///
/// ```
/// use governor::clock::{Clock, Reference};
/// use resilience_layers::rate_limit::TokioClock;
///
/// let now = TokioClock.now();
/// assert_eq!(now.duration_since(now).as_u64(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(Instant);

impl TokioInstant {
    /// The tokio instant.
    pub fn instant(self) -> Instant {
        self.0
    }
}

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    #[inline]
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}
