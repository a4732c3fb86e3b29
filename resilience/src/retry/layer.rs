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
pub struct RetryLayer<
    Classifier = ErrorsAreFailures,
    RetryAfterHook = (),
    BackoffSource = BackoffConfig,
    CloneRequestHook = Cloned,
> where
    BackoffSource: MakeBackoff,
{
    policy: RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>,
}

impl RetryLayer {
    /// Validates `config` and builds the shared counters and budget.
    pub fn new(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            policy: RetryPolicy::new(RetryHandle::new(name, config)?),
        })
    }
}

impl<Classifier, RetryAfterHook, BackoffSource: MakeBackoff, CloneRequestHook>
    RetryLayer<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
{
    /// Decides what counts as a failure with `classifier` (use the breaker's).
    ///
    /// The classifier sees the wrapped service's error type: [`BoxError`](crate::BoxError)
    /// when that is a layer of this crate (as inside a
    /// [`ResilienceLayer`](crate::stack::ResilienceLayer)).
    pub fn with_classifier<NewClassifier>(
        self,
        classifier: NewClassifier,
    ) -> RetryLayer<NewClassifier, RetryAfterHook, BackoffSource, CloneRequestHook> {
        RetryLayer {
            policy: self.policy.with_classifier(classifier),
        }
    }

    /// Reads a minimum next delay from each result; see [`RetryAfter`](super::RetryAfter).
    pub fn with_retry_after<NewRetryAfterHook>(
        self,
        retry_after: NewRetryAfterHook,
    ) -> RetryLayer<Classifier, NewRetryAfterHook, BackoffSource, CloneRequestHook> {
        RetryLayer {
            policy: self.policy.with_retry_after(retry_after),
        }
    }

    /// Takes the delays from any cloneable iterable of durations.
    pub fn with_backoff<I>(
        self,
        delays: I,
    ) -> RetryLayer<Classifier, RetryAfterHook, FromIter<I>, CloneRequestHook>
    where
        I: IntoIterator<Item = Duration> + Clone,
    {
        RetryLayer {
            policy: self.policy.with_backoff(delays),
        }
    }

    /// Decides which requests may be sent again; see [`CloneRequest`](super::CloneRequest).
    pub fn with_clone_request<NewCloneRequestHook>(
        self,
        clone_request: NewCloneRequestHook,
    ) -> RetryLayer<Classifier, RetryAfterHook, BackoffSource, NewCloneRequestHook> {
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
    pub fn policy(
        &self,
    ) -> &RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook> {
        &self.policy
    }
}

impl<Classifier, RetryAfterHook, BackoffSource: MakeBackoff, CloneRequestHook> std::fmt::Debug
    for RetryLayer<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, Classifier, RetryAfterHook, BackoffSource, CloneRequestHook> Layer<S>
    for RetryLayer<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
where
    Classifier: Clone,
    RetryAfterHook: Clone,
    BackoffSource: MakeBackoff + Clone,
    CloneRequestHook: Clone,
{
    type Service =
        Retry<RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(self.policy.clone(), inner)
    }
}
