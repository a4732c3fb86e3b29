//! What a retry tells its subscribers.

use std::time::Duration;

use tokio::time::Instant;

/// One thing a retry did, as its [`subscribe`](super::RetryHandle::subscribe) subscriptions
/// see it.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{RetryConfig, RetryEvent, RetryHandle};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let retry = RetryHandle::new("users", RetryConfig::default()).unwrap();
/// let mut events = retry.subscribe();
/// retry.record_retry(2, Duration::from_millis(40));
/// assert!(matches!(
///     events.recv().await.unwrap(),
///     RetryEvent::Retrying { attempt: 2, .. }
/// ));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// A failed request will be tried again.
    Retrying {
        /// The number of the attempt about to be made (2 for the first retry).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// When the retry was decided (the attempt starts `delay` later).
        at: Instant,
    },
    /// A retry was refused because the retry budget is spent.
    BudgetExhausted {
        /// When.
        at: Instant,
    },
}

impl RetryEvent {
    /// When it happened, on tokio's clock.
    pub fn at(&self) -> Instant {
        match self {
            RetryEvent::Retrying { at, .. } | RetryEvent::BudgetExhausted { at } => *at,
        }
    }
}
