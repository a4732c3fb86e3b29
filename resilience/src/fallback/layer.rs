use std::sync::Arc;

use tower::Layer;

use super::{FallbackConfig, FallbackHandle, WithFallback, service::Parts};
use crate::{classify::ErrorsAreFailures, config::ConfigError};

/// Applies a fallback to services; every service made by one layer shares its counts.
///
/// ```
/// use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault};
///
/// let layer = FallbackLayer::new("prices", FallbackConfig::on([FallbackOutcome::Timeout]), |_: Fault<u32>| 0).unwrap();
/// assert_eq!(layer.handle().name(), "prices");
/// ```
#[derive(Debug, Clone)]
pub struct FallbackLayer<Answer, Classifier = ErrorsAreFailures> {
    fallback: Answer,
    classifier: Classifier,
    handle: FallbackHandle,
}

impl<Answer> FallbackLayer<Answer> {
    /// Validates `config` (which outcomes) and answers them with `fallback`.
    pub fn new(
        name: impl Into<Arc<str>>,
        config: FallbackConfig,
        fallback: Answer,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            fallback,
            classifier: ErrorsAreFailures,
            handle: FallbackHandle::new(name, config)?,
        })
    }
}

impl<Answer, Classifier> FallbackLayer<Answer, Classifier> {
    /// Decides what counts as a `failure` (the same classifier as the breaker's and retry's,
    /// in a stack). It sees errors boxed, as [`Classify<Res, BoxError>`](crate::Classify).
    pub fn with_classifier<NewClassifier>(
        self,
        classifier: NewClassifier,
    ) -> FallbackLayer<Answer, NewClassifier> {
        FallbackLayer {
            fallback: self.fallback,
            classifier,
            handle: self.handle,
        }
    }

    /// Answers with `fallback` instead, keeping the counts.
    pub fn with_fallback<F2>(self, fallback: F2) -> FallbackLayer<F2, Classifier> {
        FallbackLayer {
            fallback,
            classifier: self.classifier,
            handle: self.handle,
        }
    }

    /// A handle on the shared counts.
    pub fn handle(&self) -> FallbackHandle {
        self.handle.clone()
    }
}

impl<S, Answer: Clone, Classifier: Clone> Layer<S> for FallbackLayer<Answer, Classifier> {
    type Service = WithFallback<S, Answer, Classifier>;

    fn layer(&self, inner: S) -> Self::Service {
        WithFallback::new(
            inner,
            Arc::new(Parts {
                fallback: self.fallback.clone(),
                classifier: self.classifier.clone(),
                handle: self.handle.shared.clone(),
            }),
        )
    }
}
