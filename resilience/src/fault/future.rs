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
        #[pin]
        sleep: Option<Sleep>,
        // `None` when an error is injected.
        #[pin]
        inner: Option<F>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: Option<F>, latency: Duration) -> Self {
        Self {
            sleep: (!latency.is_zero()).then(|| tokio::time::sleep(latency)),
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
        let mut this = self.project();
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.sleep.set(None);
        }
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx).map_err(Into::into),
            None => Poll::Ready(Err(InjectedFault(()).into())),
        }
    }
}
