//! Response futures of the timeout layers.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use metrics::Counter;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::deadline::Lazy;
use crate::error::{BoxError, DeadlineExceeded, Elapsed};

pin_project! {
    /// The [`AttemptTimeout`](super::AttemptTimeout)'s future.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Armed (and boxed) the first time `inner` is not ready, so fast calls never touch
        // the timer nor carry its 100-odd bytes through every layer's future.
        sleep: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
        counter: Counter,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn new(inner: F, timeout: Duration, counter: Counter) -> Self {
        Self {
            inner,
            sleep: None,
            timeout,
            counter,
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
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(output.map_err(Into::into));
        }
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(*this.timeout)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.counter.increment(1);
        tracing::debug!(target: "resilience", timeout = ?this.timeout, "attempt timed out");
        Poll::Ready(Err(Elapsed::new(*this.timeout).into()))
    }
}

pin_project! {
    /// The [`DeadlineService`](super::DeadlineService)'s future: polls the inner future with
    /// the deadline visible to it, and fails when the deadline passes.
    #[derive(Debug)]
    pub struct DeadlineFuture<F> {
        // `None` when the deadline had already passed at `call`.
        #[pin]
        inner: Option<F>,
        // Boxed when first needed, as in `ResponseFuture`.
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Lazy,
        given: Duration,
        counter: Counter,
    }
}

impl<F> DeadlineFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, deadline: Lazy, given: Duration, counter: Counter) -> Self {
        Self {
            inner: Some(inner),
            sleep: None,
            deadline,
            given,
            counter,
        }
    }

    pub(crate) fn expired(given: Duration, counter: Counter) -> Self {
        Self {
            inner: None,
            sleep: None,
            deadline: Lazy::Unanchored { budget: given },
            given,
            counter,
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            let (output, deadline) = this.deadline.enter(|| inner.poll(cx));
            *this.deadline = deadline;
            if let Poll::Ready(output) = output {
                return Poll::Ready(output.map_err(Into::into));
            }
            let deadline = &mut *this.deadline;
            // Not ready: now the clock must run (if nothing inside started it already).
            let sleep = this.sleep.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(deadline.resolve().instant()))
            });
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Cancel the work now rather than when the caller drops us.
            this.inner.set(None);
        }
        this.counter.increment(1);
        tracing::debug!(target: "resilience", budget = ?this.given, "deadline exceeded");
        Poll::Ready(Err(DeadlineExceeded::new(*this.given).into()))
    }
}
