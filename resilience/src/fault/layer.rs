use tower::Layer;

use super::{Fault, FaultHandle};

/// Applies [`Fault`] injection to services; all of them obey one [`FaultHandle`].
///
/// ```
/// use resilience_layers::fault::{FaultHandle, FaultLayer};
///
/// let faults = FaultHandle::new("users");
/// let layer = FaultLayer::new(faults.clone());
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct FaultLayer<LatencyHook = ()> {
    handle: FaultHandle,
    latency: LatencyHook,
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

impl<LatencyHook> FaultLayer<LatencyHook> {
    /// The handle its services obey.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// Also lets each request ask for latency (see [`RequestLatency`](super::RequestLatency)).
    pub fn with_request_latency<NewLatencyHook>(
        self,
        latency: NewLatencyHook,
    ) -> FaultLayer<NewLatencyHook> {
        FaultLayer {
            handle: self.handle,
            latency,
        }
    }
}

impl<S, LatencyHook: Clone> Layer<S> for FaultLayer<LatencyHook> {
    type Service = Fault<S, LatencyHook>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault::new(inner, self.handle.clone()).with_request_latency(self.latency.clone())
    }
}
