use std::sync::Arc;

use tower::Layer;

use super::{Hedge, HedgeConfig, HedgeHandle, HedgeSnapshot};
use crate::{classify::ErrorsAreFailures, config::ConfigError, retry::Cloned};

/// Applies [`Hedge`] with a [`HedgeConfig`]; `Classifier` decides which answers are good,
/// `CloneRequestHook` which requests may be sent twice.
///
/// ```
/// use resilience_layers::hedge::{HedgeConfig, HedgeLayer};
///
/// let layer = HedgeLayer::new("users", HedgeConfig::default()).unwrap();
/// assert_eq!(layer.snapshot().sent_total, 0);
/// ```
#[derive(Debug, Clone)]
pub struct HedgeLayer<Classifier = ErrorsAreFailures, CloneRequestHook = Cloned> {
    handle: HedgeHandle,
    classifier: Classifier,
    clone_request: CloneRequestHook,
}

impl HedgeLayer {
    /// Validates `config` and builds the shared counters, latency window and budget.
    pub fn new(name: impl Into<Arc<str>>, config: HedgeConfig) -> Result<Self, ConfigError> {
        Ok(Self::from_handle(HedgeHandle::new(name, config)?))
    }

    /// A layer driven by `handle` (built with [`HedgeHandle::sharing`] to share a budget).
    pub fn from_handle(handle: HedgeHandle) -> Self {
        Self {
            handle,
            classifier: ErrorsAreFailures,
            clone_request: Cloned,
        }
    }
}

impl<Classifier, CloneRequestHook> HedgeLayer<Classifier, CloneRequestHook> {
    /// Decides which answers are good (win) with `classifier` (use the breaker's): a
    /// [`Failure`](crate::Outcome::Failure) never wins while another attempt is in flight.
    pub fn with_classifier<C2>(self, classifier: C2) -> HedgeLayer<C2, CloneRequestHook> {
        HedgeLayer {
            handle: self.handle,
            classifier,
            clone_request: self.clone_request,
        }
    }

    /// Decides which requests may be hedged (for HTTP,
    /// [`IdempotentRequests`](crate::http::IdempotentRequests)); `None` from the hook means
    /// "send once".
    pub fn with_clone_request<R2>(self, clone_request: R2) -> HedgeLayer<Classifier, R2> {
        HedgeLayer {
            handle: self.handle,
            classifier: self.classifier,
            clone_request,
        }
    }

    /// The shared counters and budget.
    pub fn handle(&self) -> HedgeHandle {
        self.handle.clone()
    }

    /// Requests, hedges sent and won right now.
    pub fn snapshot(&self) -> HedgeSnapshot {
        self.handle.snapshot()
    }
}

impl<S, Classifier: Clone, CloneRequestHook: Clone> Layer<S>
    for HedgeLayer<Classifier, CloneRequestHook>
{
    type Service = Hedge<S, Classifier, CloneRequestHook>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(
            inner,
            self.handle.clone(),
            self.classifier.clone(),
            self.clone_request.clone(),
        )
    }
}
