//! The service: admits, rejects and records calls.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use tower::Service;

use super::future::ResponseFuture;
use super::handle::{CallPermit, CircuitBreakerHandle, Local, Shared};
use super::state::Rejected;
use crate::classify::{Classify, ErrorsAreFailures};
use crate::error::BoxError;

/// A service guarded by a circuit breaker. Build it with
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer) or [`CircuitBreaker::new`].
///
/// When the circuit rejects, `poll_ready` returns ready *without* polling the inner service
/// and `call` returns a future that fails at once (the `LoadShed` way): a caller is never
/// parked because a dependency is down.
///
/// ```
/// use resilience_layers::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
/// use resilience_layers::Error;
/// use tower::{Service, ServiceExt};
///
/// # tokio_test::block_on(async {
/// let handle = CircuitBreakerLayer::new("inventory", CircuitBreakerConfig::default()).unwrap().handle();
/// let mut svc = CircuitBreaker::new(
///     tower::service_fn(|_: ()| async { Ok::<_, std::io::Error>("ok") }),
///     &handle,
/// );
/// handle.force_open();
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(matches!(Error::from_boxed(err), Error::CircuitOpen(_)));
/// # });
/// ```
pub struct CircuitBreaker<S, Classifier = ErrorsAreFailures> {
    inner: S,
    local: Arc<Local>,
    classifier: Classifier,
    decision: Decision,
}

/// What `poll_ready` decided for the next `call`.
enum Decision {
    Undecided,
    Admit(CallPermit),
    Reject(Rejected),
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in the breaker behind `handle`, counting every `Err` as a failure.
    pub fn new(inner: S, handle: &CircuitBreakerHandle) -> Self {
        Self::from_shared(inner, handle.shared().clone(), ErrorsAreFailures)
    }
}

impl<S, Classifier> CircuitBreaker<S, Classifier> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>, classifier: Classifier) -> Self {
        Self {
            inner,
            local: Local::new(shared),
            classifier,
            decision: Decision::Undecided,
        }
    }

    /// Decides success, failure or ignored with `classifier` instead.
    pub fn with_classifier<NewClassifier>(
        self,
        classifier: NewClassifier,
    ) -> CircuitBreaker<S, NewClassifier> {
        CircuitBreaker {
            inner: self.inner,
            local: self.local,
            classifier,
            decision: self.decision,
        }
    }

    /// A handle on the breaker this service reports to.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.local.shared.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (a permit reserved by `poll_ready` is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Classifier, Req> Service<Req> for CircuitBreaker<S, Classifier>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Classifier: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Classifier>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Ask the breaker first (again, if an earlier poll was rejected: the wait may be
        // over), and only poll the inner service once the call is admitted.
        if !matches!(self.decision, Decision::Admit(_)) {
            Local::for_this_thread(&mut self.local);
            self.decision = match self.local.try_acquire() {
                Ok(raw) => Decision::Admit(CallPermit::new(self.local.clone(), raw)),
                Err(rejected) => {
                    self.decision = Decision::Reject(rejected);
                    return Poll::Ready(Ok(()));
                }
            };
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                // A broken inner service is not a call: give the permit back unrecorded.
                self.decision = Decision::Undecided;
                Poll::Ready(Err(e.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.decision, Decision::Undecided) {
            Decision::Admit(permit) => {
                // The inner call last, so its future is built in place (see `Bulkhead::call`).
                let classifier = self.classifier.clone();
                ResponseFuture::called(self.inner.call(req), permit, classifier)
            }
            Decision::Reject(rejected) => ResponseFuture::rejected(self.local.reject(rejected)),
            Decision::Undecided => panic!("CircuitBreaker::call without a successful poll_ready"),
        }
    }
}

impl<S: Clone, Classifier: Clone> Clone for CircuitBreaker<S, Classifier> {
    /// A clone reports to the same breaker but starts undecided: a permit (a half-open probe
    /// slot, perhaps) reserved by this service's `poll_ready` belongs to its next `call`, and
    /// must neither be duplicated nor leak into a clone that may never call.
    ///
    /// It shares this service's per-thread view, so cloning does not allocate (tower's
    /// `Retry` clones on every call); a clone sent to another thread gets its own view on its
    /// first `poll_ready` there.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            local: self.local.clone(),
            classifier: self.classifier.clone(),
            decision: Decision::Undecided,
        }
    }
}

impl<S: fmt::Debug, Classifier> fmt::Debug for CircuitBreaker<S, Classifier> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("handle", &self.handle())
            .finish()
    }
}
