//! The deadline service's response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::TimeoutCounter;
use super::{
    Deadline, current_deadline,
    scope::{Lazy, Scope},
};
use crate::error::{BoxError, DeadlineExceeded};

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
        counter: TimeoutCounter,
    }
}

impl<F> DeadlineFuture<F> {
    /// Calls `inner` with a deadline `budget` from now (or an earlier one already in force)
    /// visible to it, and bounds its future by that deadline; when the earlier deadline has
    /// already passed, `inner` is not called at all. [`DeadlineService`](super::DeadlineService)
    /// and the HTTP server's `AcceptDeadline` both start their calls here.
    #[inline]
    pub(crate) fn start<S, Req>(
        inner: &mut S,
        req: Req,
        budget: Duration,
        counter: &TimeoutCounter,
    ) -> Self
    where
        S: Service<Req, Future = F>,
    {
        let (lazy, given) = match current_deadline() {
            // The common case: no outer deadline, and no clock read until one is needed.
            None => (Lazy::Unanchored { budget }, budget),
            Some(outer) => {
                let now = Instant::now();
                let deadline = Deadline::after_from(now, budget).min_with(Some(outer));
                // What this call is given: less than `budget` under an earlier outer deadline.
                let given = deadline.instant().saturating_duration_since(now);
                if given.is_zero() {
                    return Self::expired(given, counter.clone());
                }
                (Lazy::Fixed(deadline), given)
            }
        };
        let counter = counter.clone();
        // Not `Lazy::enter`, nor a closure for the call: handing the inner future back in a
        // tuple costs one more copy of it (hundreds of bytes under retry: 46 against 68 ns for
        // `stack/deadline` in `benches/stack.rs`), and a closure's return about 7 ns more.
        let scope = Scope::enter(lazy);
        let future = inner.call(req);
        Self {
            inner: Some(future),
            sleep: None,
            deadline: scope.exit(lazy),
            given,
            counter,
        }
    }

    /// A future that fails at once: the deadline passed before the call was made.
    pub(crate) fn expired(given: Duration, counter: TimeoutCounter) -> Self {
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
        Poll::Ready(Err(deadline_exceeded(*this.given, this.counter)))
    }
}

/// Counts a call whose deadline passed, logs it, and builds the error its caller sees, as
/// the attempt timeout does for an attempt.
#[cold]
pub(crate) fn deadline_exceeded(budget: Duration, counter: &TimeoutCounter) -> BoxError {
    counter.increment(1);
    tracing::debug!(target: "resilience", budget = ?budget, "deadline exceeded");
    DeadlineExceeded::new(budget).into()
}
