use tower::Layer;

use super::{Fault, FaultHandle};

/// Applies [`Fault`] injection to services; all of them obey one [`FaultHandle`].
///
/// ```
/// use resilience_layers::fault::{FaultHandle, FaultLayer};
///
/// let faults = FaultHandle::new();
/// let layer = FaultLayer::new(faults.clone());
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct FaultLayer<H = ()> {
    handle: FaultHandle,
    latency: H,
}

impl FaultLayer {
    /// Faults as set on `handle`, with no per-request latency.
    pub fn new(handle: FaultHandle) -> Self {
        Self {
            handle,
            latency: (),
        }
    }
}

impl<H> FaultLayer<H> {
    /// Also lets each request ask for latency (see [`RequestLatency`](super::RequestLatency)).
    pub fn with_request_latency<H2>(self, latency: H2) -> FaultLayer<H2> {
        FaultLayer {
            handle: self.handle,
            latency,
        }
    }
}

impl<S, H: Clone> Layer<S> for FaultLayer<H> {
    type Service = Fault<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault::new(inner, self.handle.clone()).with_request_latency(self.latency.clone())
    }
}
