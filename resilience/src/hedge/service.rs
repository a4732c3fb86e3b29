use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::Service;

use super::{HedgeHandle, future::ResponseFuture};
use crate::{classify::Classify, retry::CloneRequest};

/// Sends the request again after the hedge delay while the first attempt is still in
/// flight; the first good answer wins and the other attempts are dropped. See the
/// [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::hedge::{Hedge, HedgeConfig, HedgeHandle};
/// use resilience_layers::{ErrorsAreFailures, retry::Cloned};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = HedgeConfig { delay: Some(Duration::from_millis(10)), ..Default::default() };
/// let handle = HedgeHandle::new("users", config).unwrap();
/// let inner = service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
/// let mut svc = Hedge::new(inner, handle, ErrorsAreFailures, Cloned);
/// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Hedge<S, Classifier, CloneRequestHook> {
    inner: S,
    handle: HedgeHandle,
    classifier: Classifier,
    clone_request: CloneRequestHook,
}

impl<S, Classifier, CloneRequestHook> Hedge<S, Classifier, CloneRequestHook> {
    /// Wraps `inner`.
    pub fn new(
        inner: S,
        handle: HedgeHandle,
        classifier: Classifier,
        clone_request: CloneRequestHook,
    ) -> Self {
        Self {
            inner,
            handle,
            classifier,
            clone_request,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The shared counters.
    pub fn handle(&self) -> &HedgeHandle {
        &self.handle
    }
}

impl<S, Req, Classifier, CloneRequestHook> Service<Req> for Hedge<S, Classifier, CloneRequestHook>
where
    S: Service<Req> + Clone,
    Classifier: Classify<S::Response, S::Error> + Clone,
    CloneRequestHook: CloneRequest<Req> + Clone,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, Classifier, CloneRequestHook>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.handle.record_request();
        // A hedge needs a delay (a percentile needs its samples), a copy of the request (the
        // idempotency hook refuses unsafe ones) and a service of its own to send it on.
        let plan = self.handle.delay().and_then(|delay| {
            let copy = self.clone_request.clone_request(&req)?;
            Some((delay, copy, self.inner.clone(), self.clone_request.clone()))
        });
        let primary = self.inner.call(req);
        ResponseFuture::new(
            primary,
            Instant::now(),
            plan,
            self.handle.clone(),
            self.classifier.clone(),
        )
    }
}
