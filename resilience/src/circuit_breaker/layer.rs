//! The layer: one breaker, shared by every service it wraps.

use std::sync::Arc;

use tower::Layer;

use super::config::CircuitBreakerConfig;
use super::handle::{CircuitBreakerHandle, Shared};
use super::service::CircuitBreaker;
use crate::classify::ErrorsAreFailures;
use crate::config::ConfigError;
use crate::name::Name;

/// Wraps services in a [`CircuitBreaker`]; every service made by one layer value (and its
/// clones) shares one breaker, so the layer is built once per dependency.
///
/// ```
/// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
/// use resilience_layers::Outcome;
///
/// // 404s are the caller's problem, not the dependency's.
/// let layer = CircuitBreakerLayer::new("users", CircuitBreakerConfig::default())?
///     .with_classifier(|r: Result<&u16, &std::io::Error>| match r {
///         Ok(404) => Outcome::Ignored,
///         Ok(s) if *s >= 500 => Outcome::Failure,
///         Ok(_) => Outcome::Success,
///         Err(_) => Outcome::Failure,
///     });
/// let health = layer.handle(); // keep for /health/ready
/// # let _ = health;
/// # Ok::<(), resilience_layers::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer<Classifier = ErrorsAreFailures> {
    shared: Arc<Shared>,
    classifier: Classifier,
}

impl CircuitBreakerLayer {
    /// A breaker named `name` (the `name` label of its metrics and events), with every
    /// `Err` counted as a failure. Fails if the config does not [validate](CircuitBreakerConfig::validate).
    ///
    /// The process keeps one copy of each distinct name for its lifetime (rejection errors
    /// carry it without a reference count), as it keeps the metric series labelled with it.
    pub fn new(
        name: impl Into<Arc<str>>,
        config: CircuitBreakerConfig,
    ) -> Result<Self, ConfigError> {
        Self::named(Name::kept(&name.into()), config)
    }

    /// Like [`new`](Self::new), with a name of either kind (a keyed entry's is freed with it).
    pub(crate) fn named(name: Name, config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Shared::new(name, config)?,
            classifier: ErrorsAreFailures,
        })
    }
}

impl<Classifier> CircuitBreakerLayer<Classifier> {
    /// Decides success, failure or ignored with `classifier` instead.
    ///
    /// Alone, the breaker hands the classifier the inner service's own error type; inside a
    /// [`ResilienceLayer`](crate::stack::ResilienceLayer), or around another layer of this
    /// crate, that type is [`BoxError`](crate::BoxError).
    pub fn with_classifier<NewClassifier>(
        self,
        classifier: NewClassifier,
    ) -> CircuitBreakerLayer<NewClassifier> {
        CircuitBreakerLayer {
            shared: self.shared,
            classifier,
        }
    }

    /// A handle on the breaker, for snapshots, health checks and manual control.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shared.clone())
    }
}

impl<S, Classifier: Clone> Layer<S> for CircuitBreakerLayer<Classifier> {
    type Service = CircuitBreaker<S, Classifier>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_shared(inner, self.shared.clone(), self.classifier.clone())
    }
}

impl<Classifier> std::fmt::Debug for CircuitBreakerLayer<Classifier> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("handle", &self.handle())
            .finish()
    }
}
