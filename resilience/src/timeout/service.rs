use std::{
    task::{Context, Poll},
    time::Duration,
};

use tower::Service;

use super::future::ResponseFuture;
use crate::{
    deadline::{TimeoutCounter, timeouts_counter},
    error::BoxError,
};

/// Fails one attempt with [`Elapsed`](crate::error::Elapsed) when it takes longer than its
/// timeout, dropping (cancelling) the inner future.
///
/// The clock starts the first time the inner future is polled and not ready, so a call that
/// completes on its first poll never registers a timer (tower's `Timeout` pays for one on every
/// call).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{Error, timeout::AttemptTimeout};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let slow = service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, std::io::Error>(())
/// });
/// let mut svc = AttemptTimeout::new(slow, Duration::from_millis(100));
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(matches!(Error::from_boxed(err), Error::Timeout(_)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    timeout: Duration,
    counter: TimeoutCounter,
}

impl<S> AttemptTimeout<S> {
    /// Wraps `inner` so each call is given `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self::with_counter(
            inner,
            timeout,
            TimeoutCounter::new(timeouts_counter("default", "attempt")),
        )
    }

    pub(super) fn with_counter(inner: S, timeout: Duration, counter: TimeoutCounter) -> Self {
        Self {
            inner,
            timeout,
            counter,
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

impl<S, Req> Service<Req> for AttemptTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let counter = self.counter.clone();
        ResponseFuture::new(self.inner.call(req), self.timeout, counter)
    }
}
