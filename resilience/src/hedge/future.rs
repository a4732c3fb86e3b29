//! The future of a hedged call: the first attempt, and the hedges sent while it runs.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::HedgeHandle;
use crate::{classify::Classify, retry::CloneRequest};

pin_project! {
    /// The future [`Hedge`](super::Hedge) returns. The first attempt lives in it unboxed; a
    /// request that may be hedged boxes its plan (request copy, service), the plan's timer is
    /// made the first time the first attempt is not ready (an answer ready at once needs
    /// none), and each hedge sent is boxed: the allocations are paid by calls that can hedge.
    ///
    /// When it completes, or is dropped, every attempt still in flight is dropped with it.
    pub struct ResponseFuture<S, Req, Classifier, CloneRequestHook>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: S::Future,
        primary_started: Instant,
        primary_done: bool,
        plan: Option<Box<Plan<S, Req, CloneRequestHook>>>,
        handle: HedgeHandle,
        classifier: Classifier,
        // The failure returned if no attempt answers well; a rejection is kept only while
        // no real failure came.
        failure: Option<(Result<S::Response, S::Error>, bool)>,
    }
}

struct Plan<S: Service<Req>, Req, CloneRequestHook> {
    delay: Duration,
    /// Fires when the next hedge is due; made by the first poll that has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The template each hedge copies.
    request: Req,
    clone_request: CloneRequestHook,
    svc: S,
    /// Hedges sent so far.
    sent: u32,
    /// False once no more hedges will be sent.
    more: bool,
    /// The budget was taken for the next hedge, which waits for the service to be ready.
    permitted: bool,
    attempts: Vec<Attempt<S::Future>>,
}

struct Attempt<F> {
    future: Pin<Box<F>>,
    started: Instant,
    number: u32,
}

impl<S, Req, Classifier, CloneRequestHook> ResponseFuture<S, Req, Classifier, CloneRequestHook>
where
    S: Service<Req>,
{
    pub(super) fn new(
        primary: S::Future,
        primary_started: Instant,
        plan: Option<(Duration, Req, S, CloneRequestHook)>,
        handle: HedgeHandle,
        classifier: Classifier,
    ) -> Self {
        let max = handle.max_hedges();
        Self {
            primary,
            primary_started,
            primary_done: false,
            plan: plan.map(|(delay, request, svc, clone_request)| {
                Box::new(Plan {
                    delay,
                    sleep: None,
                    request,
                    clone_request,
                    svc,
                    sent: 0,
                    more: max > 0,
                    permitted: false,
                    attempts: Vec::new(),
                })
            }),
            handle,
            classifier,
            failure: None,
        }
    }
}

/// What to do with one attempt's result.
fn settle<T, E: 'static, Classifier: Classify<T, E>>(
    result: Result<T, E>,
    number: u32,
    started: Instant,
    handle: &HedgeHandle,
    classifier: &Classifier,
    failure: &mut Option<(Result<T, E>, bool)>,
) -> Option<Result<T, E>> {
    let rejected = result
        .as_ref()
        .is_err_and(|e| crate::retry::is_rejection(e));
    if rejected {
        // Never reached the dependency: neither a latency sample nor a winner.
        if failure.is_none() {
            *failure = Some((result, true));
        }
        return None;
    }
    handle.record_latency(started);
    if classifier.classify(result.as_ref()).is_failure() {
        if failure.as_ref().is_none_or(|(_, rejection)| *rejection) || number == 1 {
            *failure = Some((result, false));
        }
        return None;
    }
    if number > 1 {
        handle.record_won(number);
    }
    Some(result)
}

impl<S, Req, Classifier, CloneRequestHook> Future
    for ResponseFuture<S, Req, Classifier, CloneRequestHook>
where
    S: Service<Req>,
    Classifier: Classify<S::Response, S::Error>,
    CloneRequestHook: CloneRequest<Req>,
    S::Error: 'static,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if !*this.primary_done {
                if let Poll::Ready(result) = this.primary.as_mut().poll(cx) {
                    *this.primary_done = true;
                    if let Some(won) = settle(
                        result,
                        1,
                        *this.primary_started,
                        this.handle,
                        this.classifier,
                        this.failure,
                    ) {
                        // Dropping the plan drops every hedge in flight.
                        *this.plan = None;
                        return Poll::Ready(won);
                    }
                }
            }
            let Some(plan) = this.plan.as_mut() else {
                if !*this.primary_done {
                    return Poll::Pending;
                }
                let (result, _) = this
                    .failure
                    .take()
                    .expect("a finished attempt left its result");
                return Poll::Ready(result);
            };
            let mut i = 0;
            while i < plan.attempts.len() {
                let attempt = &mut plan.attempts[i];
                if let Poll::Ready(result) = attempt.future.as_mut().poll(cx) {
                    let (number, started) = (attempt.number, attempt.started);
                    plan.attempts.swap_remove(i);
                    if let Some(won) = settle(
                        result,
                        number,
                        started,
                        this.handle,
                        this.classifier,
                        this.failure,
                    ) {
                        *this.plan = None;
                        return Poll::Ready(won);
                    }
                } else {
                    i += 1;
                }
            }
            if *this.primary_done && plan.attempts.is_empty() {
                // Everything sent has answered badly: no hedge is sent after a failure (the
                // retry above decides about that).
                *this.plan = None;
                let (result, _) = this
                    .failure
                    .take()
                    .expect("a finished attempt left its result");
                return Poll::Ready(result);
            }
            if plan.more && send_hedge(plan, *this.primary_started, this.handle, cx) {
                continue; // poll the new attempt once, so it registers its waker
            }
            return Poll::Pending;
        }
    }
}

/// Sends the next hedge if its time has come (the first `delay` after `primary_started`); true
/// when one was sent.
fn send_hedge<S, Req, CloneRequestHook>(
    plan: &mut Plan<S, Req, CloneRequestHook>,
    primary_started: Instant,
    handle: &HedgeHandle,
    cx: &mut Context<'_>,
) -> bool
where
    S: Service<Req>,
    CloneRequestHook: CloneRequest<Req>,
{
    let delay = plan.delay;
    let sleep = plan
        .sleep
        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(primary_started + delay)));
    if sleep.as_mut().poll(cx).is_pending() {
        return false;
    }
    if !plan.permitted {
        if !handle.permit_hedge() {
            plan.more = false;
            return false;
        }
        plan.permitted = true;
    }
    match plan.svc.poll_ready(cx) {
        Poll::Pending => return false,
        Poll::Ready(Err(_)) => {
            // The service cannot take another call; the attempts in flight carry on.
            plan.more = false;
            return false;
        }
        Poll::Ready(Ok(())) => {}
    }
    let Some(request) = plan.clone_request.clone_request(&plan.request) else {
        plan.more = false;
        return false;
    };
    plan.permitted = false;
    plan.sent += 1;
    let number = plan.sent + 1;
    handle.record_sent(number);
    plan.attempts.push(Attempt {
        future: Box::pin(plan.svc.call(request)),
        started: Instant::now(),
        number,
    });
    if plan.sent >= handle.max_hedges() {
        plan.more = false;
    } else if let Some(sleep) = plan.sleep.as_mut() {
        sleep.as_mut().reset(Instant::now() + plan.delay);
    }
    true
}

impl<S, Req, Classifier, CloneRequestHook> std::fmt::Debug
    for ResponseFuture<S, Req, Classifier, CloneRequestHook>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary_done", &self.primary_done)
            .field(
                "hedges_in_flight",
                &self.plan.as_ref().map_or(0, |p| p.attempts.len()),
            )
            .finish_non_exhaustive()
    }
}
