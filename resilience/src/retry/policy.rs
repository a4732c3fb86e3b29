//! The retry decision, as a [`tower::retry::Policy`].

use std::{any::Any, time::Duration};

use tokio::time::Instant;
use tower::retry::Policy;

use super::{BackoffConfig, Delay, FromIter, MakeBackoff, RetryHandle};
use crate::{
    classify::{Classify, ErrorsAreFailures},
    deadline::current_deadline,
    error::{self, BoxError},
};

/// Decides whether one result is retried, and after how long; plugs into `tower::retry`.
///
/// A result is retried when all of these hold:
/// - the classifier calls it [`Outcome::Failure`](crate::Outcome::Failure) (the same classifier the breaker uses) and
///   [retryable](Classify::is_retryable) (by default every failure is; HTTP's `501` and `505`
///   are failures that would only repeat);
/// - it is not a rejection made before the call reached the dependency (open circuit,
///   half-open full, bulkhead full: see [`error::is_rejection`]), which retrying would only
///   repeat; recognised when the error type is [`BoxError`], [`crate::Error`] or one of the
///   rejection types;
/// - fewer than `max_attempts` attempts were made, and the backoff has another delay (when
///   it ends, retrying ends: the configured exponential backoff never does, an iterator given
///   to [`with_backoff`](Self::with_backoff) may);
/// - the next attempt would start before the [`current_deadline`], if one is set (otherwise
///   give up now, returning the last result);
/// - the [`RetryBudget`](super::RetryBudget), if any, allows it;
/// - the request could be cloned (tower never retries a request it could not clone).
///
/// The delay is the backoff's next value, raised to the [`RetryAfter`] hint when there is one
/// (a [`GIVE_UP`] hint ends the retries).
///
/// tower clones the policy for each request, so per-request state (the attempt count, the
/// backoff sequence) starts fresh in each clone while the counters and budget are shared.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{RetryConfig, RetryHandle, RetryPolicy};
/// use tower::{ServiceBuilder, retry::RetryLayer, service_fn};
///
/// let handle = RetryHandle::new("users", RetryConfig::default()).unwrap();
/// let policy = RetryPolicy::new(handle)
///     .with_backoff(vec![Duration::from_millis(10), Duration::from_millis(30)]);
/// let svc = ServiceBuilder::new()
///     .layer(RetryLayer::new(policy))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// # let _ = svc;
/// ```
pub struct RetryPolicy<
    Classifier = ErrorsAreFailures,
    RetryAfterHook = (),
    BackoffSource = BackoffConfig,
    CloneRequestHook = Cloned,
> where
    BackoffSource: MakeBackoff,
{
    handle: RetryHandle,
    classifier: Classifier,
    retry_after: RetryAfterHook,
    make_backoff: BackoffSource,
    clone_request: CloneRequestHook,
    /// True when the delays come from the handle's configured backoff (so they follow a
    /// reconfiguration), false once the policy was given its own.
    follows_handle: bool,
    /// Attempts made for the current request (per-request state).
    attempts: u32,
    /// This request's delays, made (and boxed) on its first retry (per-request state). Boxed
    /// because tower keeps the policy inside every call's future: a request that needs
    /// retrying can afford an allocation, every first attempt should not carry the bytes.
    backoff: Option<Box<BackoffSource::Backoff>>,
}

impl RetryPolicy {
    /// The configured backoff, the default classifier, no `Retry-After` hint, and `Clone`
    /// requests.
    pub fn new(handle: RetryHandle) -> Self {
        let make_backoff = handle.config().backoff;
        Self {
            handle,
            classifier: ErrorsAreFailures,
            retry_after: (),
            make_backoff,
            clone_request: Cloned,
            follows_handle: true,
            attempts: 1,
            backoff: None,
        }
    }
}

impl<Classifier, RetryAfterHook, BackoffSource: MakeBackoff, CloneRequestHook>
    RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
{
    /// Decides what counts as a failure (and so may be retried) with `classifier`.
    pub fn with_classifier<NewClassifier>(
        self,
        classifier: NewClassifier,
    ) -> RetryPolicy<NewClassifier, RetryAfterHook, BackoffSource, CloneRequestHook> {
        RetryPolicy {
            handle: self.handle,
            classifier,
            retry_after: self.retry_after,
            make_backoff: self.make_backoff,
            clone_request: self.clone_request,
            follows_handle: self.follows_handle,
            attempts: self.attempts,
            backoff: self.backoff,
        }
    }

    /// Reads a minimum next delay from each result (HTTP `Retry-After`).
    pub fn with_retry_after<NewRetryAfterHook>(
        self,
        retry_after: NewRetryAfterHook,
    ) -> RetryPolicy<Classifier, NewRetryAfterHook, BackoffSource, CloneRequestHook> {
        RetryPolicy {
            handle: self.handle,
            classifier: self.classifier,
            retry_after,
            make_backoff: self.make_backoff,
            clone_request: self.clone_request,
            follows_handle: self.follows_handle,
            attempts: self.attempts,
            backoff: self.backoff,
        }
    }

    /// Takes the delays from any cloneable iterable of durations (a `backon` backoff, a
    /// `Vec`) instead of the configured backoff; when it ends, retrying stops.
    pub fn with_backoff<I>(
        self,
        delays: I,
    ) -> RetryPolicy<Classifier, RetryAfterHook, FromIter<I>, CloneRequestHook>
    where
        I: IntoIterator<Item = Duration> + Clone,
    {
        self.with_make_backoff(FromIter::new(delays))
    }

    /// Takes the delays from any [`MakeBackoff`].
    pub fn with_make_backoff<NewBackoffSource: MakeBackoff>(
        self,
        make_backoff: NewBackoffSource,
    ) -> RetryPolicy<Classifier, RetryAfterHook, NewBackoffSource, CloneRequestHook> {
        RetryPolicy {
            handle: self.handle,
            classifier: self.classifier,
            retry_after: self.retry_after,
            make_backoff,
            clone_request: self.clone_request,
            follows_handle: false,
            attempts: 1,
            backoff: None,
        }
    }

    /// Decides which requests may be sent again (idempotency): `None` from the hook means
    /// "send once".
    pub fn with_clone_request<NewCloneRequestHook>(
        self,
        clone_request: NewCloneRequestHook,
    ) -> RetryPolicy<Classifier, RetryAfterHook, BackoffSource, NewCloneRequestHook> {
        RetryPolicy {
            handle: self.handle,
            classifier: self.classifier,
            retry_after: self.retry_after,
            make_backoff: self.make_backoff,
            clone_request,
            follows_handle: self.follows_handle,
            attempts: self.attempts,
            backoff: self.backoff,
        }
    }

    /// The shared counters and budget.
    pub fn handle(&self) -> &RetryHandle {
        &self.handle
    }

    /// Decides about one result; `Some(delay)` means retry after `delay`.
    fn decide<Res, E>(&mut self, result: Result<&Res, &E>) -> Option<Duration>
    where
        Classifier: Classify<Res, E>,
        RetryAfterHook: RetryAfter<Res, E>,
        E: 'static,
    {
        let attempts = self.attempts;
        if attempts == 1 {
            self.handle.record_request();
        }
        if !self.classifier.is_retryable(result) {
            return None;
        }
        if result.is_err_and(|err| is_rejection(err)) {
            return None;
        }
        if attempts >= self.handle.max_attempts() {
            self.handle.gave_up(attempts, "max attempts reached");
            return None;
        }
        let backoff = self.backoff.get_or_insert_with(|| {
            Box::new(if self.follows_handle {
                self.make_backoff
                    .make_configured_backoff(&self.handle.configured_backoff())
            } else {
                self.make_backoff.make_backoff()
            })
        });
        let Some(mut delay) = backoff.next() else {
            self.handle.gave_up(attempts, "backoff ended");
            return None;
        };
        if let Some(hint) = self.retry_after.retry_after(result) {
            if hint == GIVE_UP {
                self.handle.gave_up(attempts, "retry-after past its cap");
                return None;
            }
            delay = delay.max(hint);
        }
        if let Some(deadline) = current_deadline() {
            let start = Instant::now().checked_add(delay);
            if start.is_none_or(|start| start >= deadline.instant()) {
                self.handle.gave_up(attempts, "deadline would pass");
                return None;
            }
        }
        if !self.handle.withdraw() {
            return None;
        }
        self.attempts += 1;
        self.handle.record_retry(self.attempts, delay);
        Some(delay)
    }
}

impl<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook> Clone
    for RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
where
    Classifier: Clone,
    RetryAfterHook: Clone,
    BackoffSource: MakeBackoff + Clone,
    CloneRequestHook: Clone,
{
    fn clone(&self) -> Self {
        // Not derived: tower clones the policy once per request, and each request must start
        // with its own attempt count and its own (freshly seeded) delays.
        Self {
            handle: self.handle.clone(),
            classifier: self.classifier.clone(),
            retry_after: self.retry_after.clone(),
            make_backoff: self.make_backoff.clone(),
            clone_request: self.clone_request.clone(),
            follows_handle: self.follows_handle,
            attempts: 1,
            backoff: None,
        }
    }
}

impl<Req, Res, E, Classifier, RetryAfterHook, BackoffSource, CloneRequestHook> Policy<Req, Res, E>
    for RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
where
    Classifier: Classify<Res, E>,
    RetryAfterHook: RetryAfter<Res, E>,
    BackoffSource: MakeBackoff,
    CloneRequestHook: CloneRequest<Req>,
    E: 'static,
{
    type Future = Delay;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Delay> {
        self.decide(result.as_ref()).map(Delay::new)
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        // tower's `Retry::call` calls this on its own policy and then clones the policy into
        // the call's future: make that clone's reference count one of this thread's.
        self.handle.for_this_thread();
        self.clone_request.clone_request(req)
    }
}

impl<Classifier, RetryAfterHook, BackoffSource: MakeBackoff, CloneRequestHook> std::fmt::Debug
    for RetryPolicy<Classifier, RetryAfterHook, BackoffSource, CloneRequestHook>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("name", &self.handle.name())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// True when `err` is one of this crate's rejections (directly, boxed, or as [`crate::Error`]).
pub(crate) fn is_rejection<E: 'static>(err: &E) -> bool {
    let any: &dyn Any = err;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        return error::is_rejection(&**boxed);
    }
    if let Some(err) = any.downcast_ref::<crate::Error>() {
        return err.is_rejection();
    }
    any.is::<error::CircuitOpen>()
        || any.is::<error::HalfOpenFull>()
        || any.is::<error::BulkheadFull>()
        || any.is::<error::RateLimited>()
}

/// The [`RetryAfter`] hint that means "give up now": [`Duration::MAX`], a wait no caller
/// would sit out. Return it for an upstream asking for longer than you are willing to wait
/// (as [`HttpRetryAfter`](crate::http::HttpRetryAfter) does above its cap): waiting less than
/// asked would only be refused again.
pub const GIVE_UP: Duration = Duration::MAX;

/// A hint from a result about how long to wait before the next attempt (HTTP `Retry-After`).
///
/// The hint is a minimum: the delay is the larger of it and the backoff's. A hint that would
/// start the next attempt after the deadline makes retry give up, and so does [`GIVE_UP`]
/// (with or without a deadline). `()` never hints; closures
/// `Fn(Result<&Res, &E>) -> Option<Duration>` are hooks too.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::RetryAfter;
///
/// // An error that carries its own hint.
/// let hook = |r: Result<&(), &(u16, u64)>| match r {
///     Err(&(503, secs)) => Some(Duration::from_secs(secs)),
///     _ => None,
/// };
/// assert_eq!(hook.retry_after(Err(&(503, 2))), Some(Duration::from_secs(2)));
///
/// // One that gives up when asked to wait more than a minute.
/// use resilience_layers::retry::GIVE_UP;
/// let capped = |r: Result<&(), &u64>| match r {
///     Err(&secs) if secs > 60 => Some(GIVE_UP),
///     Err(&secs) => Some(Duration::from_secs(secs)),
///     Ok(()) => None,
/// };
/// assert_eq!(capped.retry_after(Err(&3600)), Some(GIVE_UP));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot read a retry hint from a `Result<&{Res}, &{E}>`",
    label = "not a `RetryAfter<{Res}, {E}>`",
    note = "in a `ResilienceLayer`, errors arrive boxed: a hook takes `Result<&Response, &resilience_layers::BoxError>`, not the inner service's own error type",
    note = "a closure hook is `|result: Result<&Response, &BoxError>| -> Option<Duration>`"
)]
pub trait RetryAfter<Res, E> {
    /// The minimum wait before retrying after `result`, if it says.
    fn retry_after(&self, result: Result<&Res, &E>) -> Option<Duration>;
}

impl<Res, E> RetryAfter<Res, E> for () {
    #[inline]
    fn retry_after(&self, _: Result<&Res, &E>) -> Option<Duration> {
        None
    }
}

impl<F, Res, E> RetryAfter<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Option<Duration>,
{
    fn retry_after(&self, result: Result<&Res, &E>) -> Option<Duration> {
        self(result)
    }
}

/// Copies a request for another attempt, or says it must be sent only once (`None`), for
/// requests that are not idempotent.
///
/// [`Cloned`] (the default) uses `Clone`; closures `Fn(&Req) -> Option<Req>` are hooks too.
///
/// ```
/// use resilience_layers::retry::CloneRequest;
///
/// // Only GETs may be repeated.
/// let only_gets = |req: &(&'static str, u32)| (req.0 == "GET").then(|| *req);
/// assert!(only_gets.clone_request(&("GET", 1)).is_some());
/// assert!(only_gets.clone_request(&("POST", 1)).is_none());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot copy a `{Req}` to send it again",
    label = "not a `CloneRequest<{Req}>`",
    note = "retry sends a request again only through its clone hook; the default hook, `Cloned`, needs `{Req}: Clone`",
    note = "make the request type `Clone`, or choose the hook with `with_clone_request`: a closure `|req: &{Req}| -> Option<{Req}>`, or `SendOnce` (never sent again: for servers and streamed bodies)"
)]
pub trait CloneRequest<Req> {
    /// A copy of `req` to send again, or `None` to send it only once.
    fn clone_request(&self, req: &Req) -> Option<Req>;
}

/// Retries any request that implements `Clone`.
///
/// ```
/// use resilience_layers::retry::{CloneRequest, Cloned};
///
/// assert_eq!(Cloned.clone_request(&"GET /users/1".to_string()).as_deref(), Some("GET /users/1"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Cloned;

impl<Req: Clone> CloneRequest<Req> for Cloned {
    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<F, Req> CloneRequest<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    fn clone_request(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::is_rejection;
    use crate::error::{BulkheadFull, CircuitOpen, RateLimited};

    #[test]
    fn every_rejection_is_one_unboxed_too() {
        let limited = RateLimited::new("r", Duration::from_secs(1), 1, Duration::from_secs(1));
        assert!(
            is_rejection(&limited),
            "a rate limit met unboxed is not retried"
        );
        assert!(is_rejection(&CircuitOpen::new("c", Duration::from_secs(1))));
        assert!(is_rejection(&BulkheadFull::new("b", 1)));
        assert!(!is_rejection(&std::io::Error::other("down")));
    }
}
