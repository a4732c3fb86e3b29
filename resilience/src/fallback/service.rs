use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tower::Service;

use super::{Fallback, FallbackHandle, ResponseFuture, handle::Shared};
use crate::{classify::Classify, error::BoxError};

/// What every call of one [`WithFallback`] shares: the fallback, the classifier, the counts.
#[derive(Debug)]
pub(crate) struct Parts<Answer, Classifier> {
    pub(super) fallback: Answer,
    pub(super) classifier: Classifier,
    pub(super) handle: Arc<Shared>,
}

/// Calls the inner service; when the call ends in one of the listed outcomes, answers from
/// the fallback instead.
///
/// Readiness is the inner service's: a fallback answers calls, not a service that cannot take
/// one (a rejection from `call`, the way this crate's layers reject, is caught). The happy
/// path costs one reference-count increment and, only when `failure` is listed, one
/// classification of the response.
///
/// ```
/// use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault, WithFallback};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let layer = FallbackLayer::new("f", FallbackConfig::on([FallbackOutcome::Failure]), |_: Fault<u8>| 0).unwrap();
/// let failing = service_fn(|_: u8| async { Err::<u8, _>(std::io::Error::other("down")) });
/// let mut svc: WithFallback<_, _> = tower::Layer::layer(&layer, failing);
/// assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 0);
/// # });
/// ```
#[derive(Debug)]
pub struct WithFallback<S, Answer, Classifier = crate::classify::ErrorsAreFailures> {
    inner: S,
    parts: Arc<Parts<Answer, Classifier>>,
}

impl<S: Clone, Answer, Classifier> Clone for WithFallback<S, Answer, Classifier> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            parts: self.parts.clone(),
        }
    }
}

impl<S, Answer, Classifier> WithFallback<S, Answer, Classifier> {
    pub(super) fn new(inner: S, parts: Arc<Parts<Answer, Classifier>>) -> Self {
        Self { inner, parts }
    }

    /// A handle on the shared counts.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle {
            shared: self.parts.handle.clone(),
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

impl<S, Answer, Classifier, Req> Service<Req> for WithFallback<S, Answer, Classifier>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Answer: Fallback<S::Response>,
    Classifier: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Answer, Classifier, S::Response>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.parts.clone())
    }
}
