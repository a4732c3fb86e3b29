//! What a rate limiter tells its subscribers.

use std::time::Duration;

use tokio::time::Instant;

/// One thing a rate limiter did, as its [`subscribe`](super::RateLimitHandle::subscribe)
/// subscriptions see it. Calls that get a permit at once are not events.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::rate_limit::{RateLimitConfig, RateLimitEvent, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = RateLimitConfig { permits: 1, period: Duration::from_secs(1), ..Default::default() };
/// let handle = RateLimitLayer::new("search", config).unwrap().handle();
/// let mut events = handle.subscribe();
/// handle.acquire().await.unwrap();
/// assert!(handle.acquire().await.is_err());
/// assert!(matches!(
///     events.recv().await.unwrap(),
///     RateLimitEvent::Rejected { retry_after, .. } if retry_after == Duration::from_secs(1)
/// ));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitEvent {
    /// A call found no permit in time and was turned away.
    Rejected {
        /// How long until the next permit, as of the rejection.
        retry_after: Duration,
        /// When.
        at: Instant,
    },
    /// A call waited for its permit (wait mode), and got it.
    Delayed {
        /// How long it waited.
        waited: Duration,
        /// When it got the permit.
        at: Instant,
    },
}

impl RateLimitEvent {
    /// When it happened, on tokio's clock.
    pub fn at(&self) -> Instant {
        match self {
            RateLimitEvent::Rejected { at, .. } | RateLimitEvent::Delayed { at, .. } => *at,
        }
    }
}
