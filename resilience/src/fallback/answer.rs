//! What a fallback is given, and what gives the answer.

use std::{
    future::{Future, Ready, ready},
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tower::{Service, ServiceExt, util::Oneshot};

use super::FallbackOutcome;
use crate::error::BoxError;

/// What went wrong, handed to the fallback: the outcome, and the error (or the response the
/// classifier called a failure).
///
/// ```
/// use resilience_layers::fallback::{Fault, FallbackOutcome};
///
/// let fault: Fault<u32> = Fault::new(FallbackOutcome::Failure, Err("boom".into()));
/// assert_eq!(fault.outcome(), FallbackOutcome::Failure);
/// assert_eq!(fault.error().unwrap().to_string(), "boom");
/// assert!(fault.into_result().is_err());
/// ```
#[derive(Debug)]
pub struct Fault<Res> {
    outcome: FallbackOutcome,
    cause: Result<Res, BoxError>,
}

impl<Res> Fault<Res> {
    /// A fault of `outcome`, caused by `cause` (for tests and for fallbacks composed by hand).
    pub fn new(outcome: FallbackOutcome, cause: Result<Res, BoxError>) -> Self {
        Self { outcome, cause }
    }

    /// Which outcome triggered the fallback.
    pub fn outcome(&self) -> FallbackOutcome {
        self.outcome
    }

    /// The error, unless a response was classified as a failure.
    pub fn error(&self) -> Option<&BoxError> {
        self.cause.as_ref().err()
    }

    /// The response the classifier called a failure, if that is what happened.
    pub fn response(&self) -> Option<&Res> {
        self.cause.as_ref().ok()
    }

    /// The original result, as the inner service gave it (errors boxed).
    pub fn into_result(self) -> Result<Res, BoxError> {
        self.cause
    }
}

/// Said of an answer that came from a fallback (and from which outcome).
///
/// HTTP fallbacks ([`http::StaticResponse`](crate::http::StaticResponse),
/// [`http::MarkedFallback`](crate::http::MarkedFallback)) put it in the response's
/// extensions, and add the `x-resilience-fallback` header. For other response types a
/// fallback says so in its own response (the closure gets the [`Fault`] with its outcome):
///
/// ```
/// use resilience_layers::fallback::{FromFallback, Fault};
///
/// #[derive(Debug, PartialEq)]
/// enum Price { Live(u32), Cached(u32, FromFallback) }
/// let fallback = |fault: Fault<Price>| Price::Cached(10, FromFallback { outcome: fault.outcome() });
/// # let _ = fallback;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FromFallback {
    /// The outcome that triggered the fallback.
    pub outcome: FallbackOutcome,
}

/// Gives the answer when a call ended in a listed outcome.
///
/// Implemented for closures `Fn(Fault<Res>) -> Res` (an answer at once), for
/// [`FallbackService`] (another service answers, given the [`Fault`]), and for
/// [`NoFallback`] (the original error passes through). The future only exists on the error
/// path.
///
/// ```
/// use resilience_layers::fallback::{Fallback, Fault, FallbackOutcome};
///
/// # tokio_test::block_on(async {
/// let f = |fault: Fault<&'static str>| if fault.error().is_some() { "stale" } else { "?" };
/// let answer = f.fallback(Fault::new(FallbackOutcome::Timeout, Err("slow".into()))).await;
/// assert_eq!(answer.unwrap(), "stale");
/// # });
/// ```
pub trait Fallback<Res> {
    /// The answer's future.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// Answers `fault`.
    fn fallback(&self, fault: Fault<Res>) -> Self::Future;
}

impl<F, Res> Fallback<Res> for F
where
    F: Fn(Fault<Res>) -> Res,
{
    type Future = Ready<Result<Res, BoxError>>;

    fn fallback(&self, fault: Fault<Res>) -> Self::Future {
        ready(Ok(self(fault)))
    }
}

/// No fallback: the original result passes through. What a stack holds for its `[fallback]`
/// section until [`ResilienceLayer::fallback_layer`](crate::stack::ResilienceLayer::fallback_layer)
/// is given the answer.
///
/// ```
/// use resilience_layers::fallback::{Fallback, Fault, FallbackOutcome, NoFallback};
///
/// # tokio_test::block_on(async {
/// let out = Fallback::<u8>::fallback(&NoFallback, Fault::new(FallbackOutcome::Timeout, Err("x".into())));
/// assert_eq!(out.await.unwrap_err().to_string(), "x");
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

impl<Res> Fallback<Res> for NoFallback {
    type Future = Ready<Result<Res, BoxError>>;

    fn fallback(&self, fault: Fault<Res>) -> Self::Future {
        ready(fault.into_result())
    }
}

/// Another service as the fallback: it is called (a clone of it, once) with the [`Fault`].
///
/// ```
/// use resilience_layers::fallback::{Fallback, FallbackOutcome, FallbackService, Fault};
/// use tower::service_fn;
///
/// # tokio_test::block_on(async {
/// let replica = FallbackService::new(service_fn(|fault: Fault<String>| async move {
///     Ok::<_, std::io::Error>(format!("replica after {}", fault.outcome()))
/// }));
/// let answer = replica.fallback(Fault::new(FallbackOutcome::CircuitOpen, Err("open".into())));
/// assert_eq!(answer.await.unwrap(), "replica after circuit_open");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FallbackService<S> {
    inner: S,
}

impl<S> FallbackService<S> {
    /// Uses `inner` as the fallback.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The fallback service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The fallback service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the fallback service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Res> Fallback<Res> for FallbackService<S>
where
    S: Service<Fault<Res>, Response = Res> + Clone,
    S::Error: Into<BoxError>,
{
    type Future = ServiceAnswer<S, Res>;

    fn fallback(&self, fault: Fault<Res>) -> Self::Future {
        ServiceAnswer {
            inner: self.inner.clone().oneshot(fault),
        }
    }
}

pin_project! {
    /// The future of a [`FallbackService`]'s answer.
    pub struct ServiceAnswer<S: Service<Fault<Res>>, Res> {
        #[pin]
        inner: Oneshot<S, Fault<Res>>,
    }
}

impl<S, Res> Future for ServiceAnswer<S, Res>
where
    S: Service<Fault<Res>, Response = Res>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

impl<S: Service<Fault<Res>>, Res> std::fmt::Debug for ServiceAnswer<S, Res> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAnswer").finish_non_exhaustive()
    }
}
