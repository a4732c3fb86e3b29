use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::time::Sleep;
use tokio_util::sync::PollSemaphore;
use tower::Service;

use super::{
    BulkheadHandle, BulkheadPermit, ResponseFuture,
    handle::{View, Waiting},
};
use crate::{cache_lines::ThreadView, error::BoxError};

/// Limits how many calls run at once; a caller that waits longer than `max_wait` for a permit
/// gets [`BulkheadFull`](crate::error::BulkheadFull) instead of queueing forever.
///
/// Rejection follows tower's `LoadShed`: `poll_ready` turns ready, and the next `call` returns
/// an error at once without touching the inner service. The permit is taken in `poll_ready`
/// and held by the [`ResponseFuture`] until it completes or is dropped.
///
/// ```
/// use resilience_layers::bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handle = BulkheadLayer::new("users", BulkheadConfig::default()).unwrap().handle();
/// let mut svc = Bulkhead::new(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }), handle);
/// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
/// # }
/// ```
#[derive(Debug)]
pub struct Bulkhead<S> {
    inner: S,
    /// This thread's view of the bulkhead (remade in `poll_ready` after a move to another).
    shared: Arc<View>,
    semaphore: PollSemaphore,
    /// Held from `poll_ready` to `call`: one pointer, so moving it into the future is cheap.
    permit: Option<BulkheadPermit>,
    wait: Option<Wait>,
    /// Set when `poll_ready` gave up waiting: the next `call` is rejected.
    reject_next: bool,
}

/// A caller parked for a permit: the timer that ends its wait, and its place in the count.
#[derive(Debug)]
struct Wait {
    sleep: Pin<Box<Sleep>>,
    _waiting: Waiting,
}

impl<S> Bulkhead<S> {
    /// Wraps `inner`, sharing the permits behind `handle`.
    pub fn new(inner: S, handle: BulkheadHandle) -> Self {
        let shared = handle.shared;
        Self {
            inner,
            semaphore: PollSemaphore::new(shared.semaphore.clone()),
            shared,
            permit: None,
            wait: None,
            reject_next: false,
        }
    }

    /// A handle on the shared permits.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle {
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

    /// Consumes `self`, returning the inner service (and freeing any permit held).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Waits for a permit for at most `max_wait`; `Ready(true)` means one is held.
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.wait.is_none() {
            // A free permit, taken without an `Arc` of the semaphore (`PollSemaphore` clones
            // one first thing). tokio hands released permits to queued waiters before they
            // count as free, so this never jumps a queue; and while we wait we are in it.
            self.permit = BulkheadPermit::try_acquire(&self.shared);
            if self.permit.is_some() {
                return Poll::Ready(true);
            }
        }
        if !self.shared.may_wait() {
            // No queue at all: the call is rejected.
            return Poll::Ready(false);
        }
        if let Poll::Ready(permit) = self.semaphore.poll_acquire(cx) {
            let permit = permit.expect("the bulkhead's semaphore is never closed");
            self.wait = None;
            self.permit = Some(BulkheadPermit::from_owned(permit, &self.shared));
            return Poll::Ready(true);
        }
        let shared = &self.shared;
        let wait = self.wait.get_or_insert_with(|| Wait {
            sleep: Box::pin(tokio::time::sleep(shared.max_wait())),
            _waiting: Waiting::new(shared),
        });
        if wait.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.wait = None;
        // Leave the semaphore's queue, so a permit freed later goes to a caller still waiting
        // instead of being parked in our abandoned acquire.
        self.semaphore = PollSemaphore::new(self.shared.semaphore.clone());
        Poll::Ready(false)
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        // Not derived: a clone must start without the original's permit, wait or pending
        // rejection, or two callers would share one permit (or one rejection).
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            semaphore: PollSemaphore::new(self.shared.semaphore.clone()),
            permit: None,
            wait: None,
            reject_next: false,
        }
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ThreadView::for_this_thread(&mut self.shared);
        if self.reject_next {
            // Readiness is re-checked on every poll (as in `LoadShed`): a permit freed since
            // the last poll cancels the pending rejection.
            match BulkheadPermit::try_acquire(&self.shared) {
                Some(permit) => {
                    self.reject_next = false;
                    self.permit = Some(permit);
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        if self.permit.is_none() {
            match self.poll_permit(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(true) => {}
                Poll::Ready(false) => {
                    // Say ready so the caller's `call` gets the rejection at once.
                    self.reject_next = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.reject_next {
            self.reject_next = false;
            return ResponseFuture::rejected(self.shared.reject());
        }
        let permit = self
            .permit
            .take()
            .expect("poll_ready must return Ready before call");
        ResponseFuture::called(self.inner.call(req), permit)
    }
}
