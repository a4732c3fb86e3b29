//! The attempt timeout's response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The [`DeadlineService`](crate::deadline::DeadlineService)'s future, at its old path.
pub use crate::deadline::future::DeadlineFuture;
use crate::{
    deadline::TimeoutCounter,
    error::{BoxError, Elapsed},
};

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
        counter: TimeoutCounter,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn new(inner: F, timeout: Duration, counter: TimeoutCounter) -> Self {
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
        Poll::Ready(Err(attempt_timed_out(*this.timeout, this.counter)))
    }
}

/// Counts an attempt that ran out of time, logs it, and builds the error its caller sees:
/// the one place for what an attempt timeout reports.
#[cold]
pub(crate) fn attempt_timed_out(timeout: Duration, counter: &TimeoutCounter) -> BoxError {
    counter.increment(1);
    tracing::debug!(target: "resilience", timeout = ?timeout, "attempt timed out");
    Elapsed::new(timeout).into()
}
