use std::{
    task::{Context, Poll},
    time::Duration,
};

use tower::Service;

use super::{TimeoutCounter, future::DeadlineFuture, layer::timeouts_counter};
use crate::error::BoxError;

/// Gives a whole call (retries and backoff included) a total time; past it the call fails
/// with [`DeadlineExceeded`](crate::error::DeadlineExceeded) and the inner future is dropped.
///
/// The deadline is visible to everything inside through
/// [`current_deadline`](super::current_deadline), both while the inner service's `call` runs
/// and while its future is polled; an outer deadline that ends earlier wins. A call whose
/// inherited deadline has already passed never reaches the inner service.
///
/// The clock starts when something first needs it: an inner layer reading
/// [`current_deadline`](super::current_deadline), or the first poll of the inner future that
/// is not ready. Both come in the same synchronous stretch as the `call` (which no timer could
/// interrupt anyway), and a call that completes at once never reads the clock.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{Error, deadline::DeadlineService};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let slow = service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, std::io::Error>(())
/// });
/// let mut svc = DeadlineService::new(slow, Duration::from_secs(1));
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(matches!(Error::from_boxed(err), Error::DeadlineExceeded(_)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    budget: Duration,
    counter: TimeoutCounter,
}

impl<S> DeadlineService<S> {
    /// Wraps `inner` so each call is given `budget` in total.
    pub fn new(inner: S, budget: Duration) -> Self {
        Self::with_counter(
            inner,
            budget,
            TimeoutCounter::new(timeouts_counter("default", "deadline")),
        )
    }

    pub(super) fn with_counter(inner: S, budget: Duration, counter: TimeoutCounter) -> Self {
        Self {
            inner,
            budget,
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

impl<S, Req> Service<Req> for DeadlineService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        DeadlineFuture::start(&mut self.inner, req, self.budget, &self.counter)
    }
}
