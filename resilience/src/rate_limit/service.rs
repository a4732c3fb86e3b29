use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, Sleep};
use tower::Service;

use super::{
    Decision, RateLimitHandle, ResponseFuture,
    handle::{Shared, Waiting},
};
use crate::error::BoxError;

/// Lets calls through at the limiter's rate; a call with no permit in time gets
/// [`RateLimited`](crate::error::RateLimited) instead.
///
/// The permit is taken in `poll_ready`, so a caller in wait mode waits there (as for a
/// bulkhead), and the next `call` spends it. Rejection follows tower's `LoadShed`:
/// `poll_ready` turns ready, and the next `call` returns an error at once without touching
/// the inner service. The wait is bounded by `max_wait` and by the
/// [deadline](crate::deadline::current_deadline) in force where `poll_ready` runs (the
/// caller's: a `Deadline::scope` around its work, or the deadline an HTTP server took from
/// the request).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::rate_limit::{RateLimit, RateLimitConfig, RateLimitLayer};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = RateLimitConfig { permits: 1, period: Duration::from_millis(100), max_wait: Duration::from_secs(1), ..Default::default() };
/// let handle = RateLimitLayer::new("upstream", config).unwrap().handle();
/// let mut svc = RateLimit::new(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }), handle);
/// let start = tokio::time::Instant::now();
/// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
/// assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2); // waited for its permit
/// assert_eq!(start.elapsed(), Duration::from_millis(100));
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    /// A permit taken by `poll_ready`, for the next `call`.
    permit: bool,
    wait: Option<Wait>,
    /// Set when `poll_ready` gave up: the next `call` is rejected, with this time until the
    /// next permit.
    reject_next: Option<Duration>,
}

/// A caller parked for a permit: the timer of its next try, the latest instant it may wait
/// until, and its place in the count.
#[derive(Debug)]
struct Wait {
    sleep: Pin<Box<Sleep>>,
    until: Instant,
    waiting: Waiting,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`, sharing the limiter behind `handle`.
    pub fn new(inner: S, handle: RateLimitHandle) -> Self {
        Self {
            inner,
            shared: handle.shared,
            permit: false,
            wait: None,
            reject_next: None,
        }
    }

    /// A handle on the shared limiter.
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle {
            shared: self.shared.clone(),
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

    /// Takes a permit, waiting for one as far as allowed: `Ready(Ok)` means one is held,
    /// `Ready(Err(retry_after))` that none comes in time.
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Duration>> {
        loop {
            let retry_after = match self.shared.check() {
                Decision::Allowed { .. } => {
                    if let Some(wait) = self.wait.take() {
                        wait.waiting.granted();
                    }
                    self.permit = true;
                    return Poll::Ready(Ok(()));
                }
                Decision::Denied { retry_after } => retry_after,
            };
            let now = Instant::now();
            let until = match &self.wait {
                Some(wait) => Some(wait.until),
                None => self.shared.wait_until(now),
            };
            let next = now + retry_after;
            let Some(until) = until.filter(|until| next <= *until) else {
                // Reject mode, or the next permit lies beyond the wait allowed: waiting would
                // only end in the same rejection, later.
                self.wait = None;
                return Poll::Ready(Err(retry_after));
            };
            let wait = match &mut self.wait {
                Some(wait) => {
                    wait.sleep.as_mut().reset(next);
                    wait
                }
                None => self.wait.insert(Wait {
                    sleep: Box::pin(tokio::time::sleep_until(next)),
                    until,
                    waiting: Waiting::new(&self.shared, now),
                }),
            };
            if wait.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        // Not derived: a clone must start without the original's permit, wait or pending
        // rejection, or two callers would spend one permit (or share one rejection).
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            permit: false,
            wait: None,
            reject_next: None,
        }
    }
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.reject_next.is_some() {
            // Readiness is re-checked on every poll (as in `LoadShed`): a permit come back
            // since the last poll cancels the pending rejection.
            match self.shared.check() {
                Decision::Allowed { .. } => {
                    self.reject_next = None;
                    self.permit = true;
                }
                Decision::Denied { retry_after } => {
                    self.reject_next = Some(retry_after);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        if !self.permit {
            match self.poll_permit(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(retry_after)) => {
                    // Say ready so the caller's `call` gets the rejection at once.
                    self.reject_next = Some(retry_after);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(retry_after) = self.reject_next.take() {
            return ResponseFuture::rejected(self.shared.reject(retry_after));
        }
        assert!(
            std::mem::take(&mut self.permit),
            "poll_ready must return Ready before call"
        );
        ResponseFuture::called(self.inner.call(req))
    }
}
