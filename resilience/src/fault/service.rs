use std::{
    task::{Context, Poll},
    time::Duration,
};

use tower::Service;

use super::{FaultHandle, RequestLatency, ResponseFuture};
use crate::error::BoxError;

/// Injects latency and errors into calls, as its [`FaultHandle`] says; for demos and chaos
/// tests.
///
/// Latency (the handle's plus any the request asks for) is waited before the response is
/// returned; an injected error is returned instead of calling the inner service.
///
/// ```
/// use resilience_layers::fault::{Fault, FaultHandle, InjectedFault};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let faults = FaultHandle::new("users");
/// let mut svc = Fault::new(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }), faults.clone());
/// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
/// faults.set_error_rate(1.0).unwrap();
/// let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
/// assert!(err.is::<InjectedFault>());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Fault<S, LatencyHook = ()> {
    inner: S,
    handle: FaultHandle,
    latency: LatencyHook,
}

impl<S> Fault<S> {
    /// Wraps `inner`, obeying `handle`.
    pub fn new(inner: S, handle: FaultHandle) -> Self {
        Self {
            inner,
            handle,
            latency: (),
        }
    }
}

impl<S, LatencyHook> Fault<S, LatencyHook> {
    /// Also lets each request ask for latency.
    pub fn with_request_latency<NewLatencyHook>(
        self,
        latency: NewLatencyHook,
    ) -> Fault<S, NewLatencyHook> {
        Fault {
            inner: self.inner,
            handle: self.handle,
            latency,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, LatencyHook, Req> Service<Req> for Fault<S, LatencyHook>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    LatencyHook: RequestLatency<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let latency = self.handle.latency();
        let latency = match self.latency.request_latency(&req) {
            Some(extra) => latency.saturating_add(extra),
            None => latency,
        };
        if latency > Duration::ZERO {
            self.handle.count_delay();
        }
        let inner = if self.handle.draw_error() {
            None
        } else {
            Some(self.inner.call(req))
        };
        ResponseFuture::new(inner, latency)
    }
}
