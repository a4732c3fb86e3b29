//! The fallback's response future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::{Fallback, FallbackOutcome, Fault, service::Parts};
use crate::{
    classify::Classify,
    error::{
        self, BoxError, BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed, HalfOpenFull,
        RateLimited,
    },
};

pin_project! {
    /// The [`WithFallback`](super::WithFallback)'s future: the inner call, then, only when it
    /// ends in a listed outcome, the fallback's answer (built in place: nothing is boxed).
    ///
    /// ```
    /// use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault, future::ResponseFuture};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # tokio_test::block_on(async {
    /// let layer = FallbackLayer::new("f", FallbackConfig::on([FallbackOutcome::Failure]), |_: Fault<u8>| 0).unwrap();
    /// let mut svc = layer.layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let future: ResponseFuture<_, _, _, u8> = svc.ready().await.unwrap().call(3);
    /// assert_eq!(future.await.unwrap(), 3);
    /// # });
    /// ```
    pub struct ResponseFuture<Fut, Answer, Classifier, Res>
    where
        Answer: Fallback<Res>,
    {
        #[pin]
        state: State<Fut, Answer::Future>,
        parts: Arc<Parts<Answer, Classifier>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, Answer> {
        Called {
            #[pin]
            future: Fut,
        },
        Answering {
            #[pin]
            future: Answer,
        },
    }
}

impl<Fut, Answer: Fallback<Res>, Classifier, Res> ResponseFuture<Fut, Answer, Classifier, Res> {
    #[inline]
    pub(super) fn new(future: Fut, parts: Arc<Parts<Answer, Classifier>>) -> Self {
        Self {
            state: State::Called { future },
            parts,
        }
    }
}

impl<Fut, Answer: Fallback<Res>, Classifier, Res> std::fmt::Debug
    for ResponseFuture<Fut, Answer, Classifier, Res>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Answering { .. } => "answering",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// The outcome an error is, by its kind: the rejections and timeouts of this crate, wherever
/// they sit in the `source` chain.
fn kind_of(err: &BoxError) -> Option<FallbackOutcome> {
    error::chain(&**err).find_map(|e| {
        Some(if e.is::<CircuitOpen>() {
            FallbackOutcome::CircuitOpen
        } else if e.is::<HalfOpenFull>() {
            FallbackOutcome::HalfOpenFull
        } else if e.is::<BulkheadFull>() {
            FallbackOutcome::BulkheadFull
        } else if e.is::<RateLimited>() {
            FallbackOutcome::RateLimited
        } else if e.is::<Elapsed>() {
            FallbackOutcome::Timeout
        } else if e.is::<DeadlineExceeded>() {
            FallbackOutcome::DeadlineExceeded
        } else {
            return None;
        })
    })
}

impl<Fut, T, E, Answer, Classifier> Future for ResponseFuture<Fut, Answer, Classifier, T>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    Answer: Fallback<T>,
    Classifier: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let parts = &**this.parts;
                    let on = parts.handle.on;
                    let outcome = match &result {
                        Ok(res) => (on.contains(FallbackOutcome::Failure)
                            && parts.classifier.classify(Ok(res)).is_failure())
                        .then_some(FallbackOutcome::Failure),
                        Err(err) => match kind_of(err) {
                            Some(kind) => Some(kind),
                            None => parts
                                .classifier
                                .classify(Err(err))
                                .is_failure()
                                .then_some(FallbackOutcome::Failure),
                        },
                    };
                    let Some(outcome) = outcome.filter(|o| on.contains(*o)) else {
                        return Poll::Ready(result);
                    };
                    parts.handle.served(outcome, result.as_ref().err());
                    let future = parts.fallback.fallback(Fault::new(outcome, result));
                    this.state.set(State::Answering { future });
                }
                StateProj::Answering { future } => return future.poll(cx),
            }
        }
    }
}
