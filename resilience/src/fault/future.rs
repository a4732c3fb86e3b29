//! The fault injector's response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::InjectedFault;
use crate::error::BoxError;

pin_project! {
    /// The [`Fault`](super::Fault)'s future: waits out the injected latency, then answers with
    /// the inner response or the injected error.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        // Boxed: only calls given injected latency pay for the timer's 100-odd bytes (they
        // sleep anyway); every other call's future stays small as it moves through layers.
        sleep: Option<Pin<Box<Sleep>>>,
        // `None` when an error is injected.
        #[pin]
        inner: Option<F>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: Option<F>, latency: Duration) -> Self {
        Self {
            sleep: (!latency.is_zero()).then(|| Box::pin(tokio::time::sleep(latency))),
            inner,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(sleep) = this.sleep {
            ready!(sleep.as_mut().poll(cx));
            *this.sleep = None;
        }
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx).map_err(Into::into),
            None => Poll::Ready(Err(InjectedFault(()).into())),
        }
    }
}
