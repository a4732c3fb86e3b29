use std::{sync::Arc, time::Duration};

use tower::{Layer, retry::Retry};

use super::{
    BackoffConfig, Cloned, FromIter, MakeBackoff, RetryBudget, RetryConfig, RetryHandle,
    RetryPolicy, RetrySnapshot,
};
use crate::{classify::ErrorsAreFailures, config::ConfigError};

/// Applies tower's [`Retry`] with a [`RetryPolicy`] built from a [`RetryConfig`].
///
/// ```
/// use resilience_layers::retry::{RetryConfig, RetryLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = RetryLayer::new("users", RetryConfig::default()).unwrap();
/// assert_eq!(layer.snapshot().retries_total, 0);
/// assert!(layer.budget().is_some());
/// # }
/// ```
#[derive(Clone)]
pub struct RetryLayer<C = ErrorsAreFailures, A = (), B = BackoffConfig, R = Cloned>
where
    B: MakeBackoff,
{
    policy: RetryPolicy<C, A, B, R>,
}

impl RetryLayer {
    /// Validates `config` and builds the shared counters and budget.
    pub fn new(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            policy: RetryPolicy::new(RetryHandle::new(name, config)?),
        })
    }
}

impl<C, A, B: MakeBackoff, R> RetryLayer<C, A, B, R> {
    /// Decides what counts as a failure with `classifier` (use the breaker's).
    ///
    /// The classifier sees the wrapped service's error type: [`BoxError`](crate::BoxError)
    /// when that is a layer of this crate (as inside a
    /// [`ResilienceLayer`](crate::stack::ResilienceLayer)).
    pub fn with_classifier<C2>(self, classifier: C2) -> RetryLayer<C2, A, B, R> {
        RetryLayer {
            policy: self.policy.with_classifier(classifier),
        }
    }

    /// Reads a minimum next delay from each result; see [`RetryAfter`](super::RetryAfter).
    pub fn with_retry_after<A2>(self, retry_after: A2) -> RetryLayer<C, A2, B, R> {
        RetryLayer {
            policy: self.policy.with_retry_after(retry_after),
        }
    }

    /// Takes the delays from any cloneable iterable of durations.
    pub fn with_backoff<I>(self, delays: I) -> RetryLayer<C, A, FromIter<I>, R>
    where
        I: IntoIterator<Item = Duration> + Clone,
    {
        RetryLayer {
            policy: self.policy.with_backoff(delays),
        }
    }

    /// Decides which requests may be sent again; see [`CloneRequest`](super::CloneRequest).
    pub fn with_clone_request<R2>(self, clone_request: R2) -> RetryLayer<C, A, B, R2> {
        RetryLayer {
            policy: self.policy.with_clone_request(clone_request),
        }
    }

    /// The shared counters and budget.
    pub fn handle(&self) -> RetryHandle {
        self.policy.handle().clone()
    }

    /// The budget, when one is configured.
    pub fn budget(&self) -> Option<RetryBudget> {
        self.policy.handle().budget().cloned()
    }

    /// Requests, retries and the budget's state right now.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.policy.handle().snapshot()
    }

    /// The policy each service gets a clone of.
    pub fn policy(&self) -> &RetryPolicy<C, A, B, R> {
        &self.policy
    }
}

impl<C, A, B: MakeBackoff, R> std::fmt::Debug for RetryLayer<C, A, B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, C, A, B, R> Layer<S> for RetryLayer<C, A, B, R>
where
    C: Clone,
    A: Clone,
    B: MakeBackoff + Clone,
    R: Clone,
{
    type Service = Retry<RetryPolicy<C, A, B, R>, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(self.policy.clone(), inner)
    }
}
