//! The response future: records the call's outcome when it completes.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::handle::CallPermit;
use crate::classify::{Classify, ErrorsAreFailures};
use crate::error::BoxError;

pin_project! {
    /// The future returned by [`CircuitBreaker`](super::CircuitBreaker): either the inner
    /// call, whose outcome is recorded when it completes, or a rejection that is ready at once.
    ///
    /// Dropping it before it completes records nothing and, for a half-open probe, gives the
    /// probe slot back.
    ///
    /// ```
    /// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # tokio_test::block_on(async {
    /// let layer = CircuitBreakerLayer::new("echo", CircuitBreakerConfig::default()).unwrap();
    /// let mut svc = layer.layer(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// let fut = svc.ready().await.unwrap().call(7); // a ResponseFuture
    /// assert_eq!(fut.await.unwrap(), 7);
    /// # });
    /// ```
    pub struct ResponseFuture<F, Classifier = ErrorsAreFailures> {
        #[pin]
        kind: Kind<F, Classifier>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, Classifier> {
        Called {
            #[pin]
            future: F,
            permit: Option<CallPermit>,
            classifier: Classifier,
        },
        Rejected {
            error: Option<BoxError>,
        },
    }
}

impl<F, Classifier> ResponseFuture<F, Classifier> {
    #[inline]
    pub(crate) fn called(future: F, permit: CallPermit, classifier: Classifier) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, Classifier, T, E> Future for ResponseFuture<F, Classifier>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    Classifier: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(classifier.classify(result.as_ref()));
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F, Classifier> std::fmt::Debug for ResponseFuture<F, Classifier> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
