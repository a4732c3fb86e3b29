//! Errors the layers add, and one way to tell them apart.
//!
//! Following tower's convention, a layer that can *add* a failure (an open circuit, a full
//! bulkhead, an elapsed timeout) returns [`BoxError`] wrapping one of the small public types
//! below; layers that only pass results through keep the inner error as it is. Because every
//! layer boxes with `Into<BoxError>`, a rejection raised deep in a stack reaches the caller as
//! the same concrete type, and [`Error::from_boxed`] turns it into an enum callers can `match`.
//!
//! Only this crate builds these types (their fields are private), so matching on them is stable.
//!
//! ```
//! use resilience_layers::error::{BoxError, Error};
//!
//! fn status_for(err: BoxError) -> u16 {
//!     match Error::from_boxed(err) {
//!         Error::CircuitOpen(_) | Error::HalfOpenFull(_) | Error::BulkheadFull(_) => 503,
//!         Error::Timeout(_) | Error::DeadlineExceeded(_) => 504,
//!         Error::Inner(_) => 502,
//!         _ => 500,
//!     }
//! }
//! # let _ = status_for;
//! ```

use std::{fmt, time::Duration};

use crate::name::Name;

/// The boxed error every failure-adding layer returns, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The call was rejected because the circuit is open (or forced open).
///
/// Carries how long until the breaker lets a probe through, so a server can answer
/// `503` with `Retry-After` and a client can back off for the right time.
#[derive(Debug, Clone)]
pub struct CircuitOpen {
    name: Name,
    retry_after: Duration,
}

impl CircuitOpen {
    pub(crate) fn new(name: impl Into<Name>, retry_after: Duration) -> Self {
        Self {
            name: name.into(),
            retry_after,
        }
    }

    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the breaker admits a probe (zero when it is forced open with no end).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit `{}` is open; next probe in {:?}",
            self.name, self.retry_after
        )
    }
}

impl std::error::Error for CircuitOpen {}

/// The circuit is half-open and every probe slot is taken.
#[derive(Debug, Clone)]
pub struct HalfOpenFull {
    name: Name,
}

impl HalfOpenFull {
    pub(crate) fn new(name: impl Into<Name>) -> Self {
        Self { name: name.into() }
    }

    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for HalfOpenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit `{}` is half-open and all probe slots are taken",
            self.name
        )
    }
}

impl std::error::Error for HalfOpenFull {}

/// The bulkhead had no free permit within its maximum wait.
#[derive(Debug, Clone)]
pub struct BulkheadFull {
    name: Name,
    max_concurrent: usize,
}

impl BulkheadFull {
    pub(crate) fn new(name: impl Into<Name>, max_concurrent: usize) -> Self {
        Self {
            name: name.into(),
            max_concurrent,
        }
    }

    /// The name of the bulkhead that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bulkhead's limit on concurrent calls.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead `{}` is full ({} concurrent calls)",
            self.name, self.max_concurrent
        )
    }
}

impl std::error::Error for BulkheadFull {}

/// The rate limiter had no permit for the call: at once (reject mode), or within the
/// longest wait allowed (wait mode: its `max_wait`, or less when the request's deadline is
/// nearer).
///
/// Carries the time until the limiter's next permit, and its quota, so a server can answer
/// `429` with `Retry-After` and the `RateLimit` fields, and a client can wait the right time.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{Error, rate_limit::{RateLimitConfig, RateLimitLayer}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = RateLimitConfig { permits: 10, period: Duration::from_secs(1), burst: Some(1), ..Default::default() };
/// let handle = RateLimitLayer::new("search", config).unwrap().handle();
/// handle.acquire().await.unwrap();
/// match Error::from_boxed(handle.acquire().await.unwrap_err()) {
///     Error::RateLimited(e) => {
///         assert_eq!(e.retry_after(), Duration::from_millis(100));
///         assert_eq!((e.permits(), e.period()), (10, Duration::from_secs(1)));
///     }
///     other => panic!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimited {
    name: Name,
    retry_after: Duration,
    permits: u32,
    period: Duration,
}

impl RateLimited {
    pub(crate) fn new(
        name: impl Into<Name>,
        retry_after: Duration,
        permits: u32,
        period: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            retry_after,
            permits,
            period,
        }
    }

    /// The name of the rate limiter that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the limiter has a permit again (as of the rejection).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The limiter's quota: this many permits per [`period`](Self::period).
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The period of the quota.
    pub fn period(&self) -> Duration {
        self.period
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit `{}` ({} per {:?}) reached; next permit in {:?}",
            self.name, self.permits, self.period, self.retry_after
        )
    }
}

impl std::error::Error for RateLimited {}

/// One attempt took longer than its timeout and was cancelled.
#[derive(Debug, Clone)]
pub struct Elapsed {
    timeout: Duration,
}

impl Elapsed {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The timeout that elapsed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.timeout)
    }
}

impl std::error::Error for Elapsed {}

/// The request's total deadline passed before it completed.
#[derive(Debug, Clone)]
pub struct DeadlineExceeded {
    budget: Duration,
}

impl DeadlineExceeded {
    pub(crate) fn new(budget: Duration) -> Self {
        Self { budget }
    }

    /// The total time the request was given.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline of {:?} exceeded", self.budget)
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The error a [`Fault`](crate::fault::Fault) injects in place of the inner service's answer.
///
/// ```
/// use resilience_layers::fault::{FaultHandle, Fault, InjectedFault};
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let faults = FaultHandle::new("users");
/// faults.set_error_rate(1.0).unwrap();
/// let svc = Fault::new(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }), faults);
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert_eq!(err.to_string(), "injected fault");
/// assert!(err.downcast_ref::<InjectedFault>().is_some());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct InjectedFault(pub(crate) ());

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected fault")
    }
}

impl std::error::Error for InjectedFault {}

/// What went wrong with a call through the layers: one of the rejections this crate adds, or
/// the inner service's own error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The circuit breaker is open.
    CircuitOpen(CircuitOpen),
    /// The circuit breaker is half-open and its probe slots are taken.
    HalfOpenFull(HalfOpenFull),
    /// The bulkhead is full.
    BulkheadFull(BulkheadFull),
    /// The rate limiter had no permit in time.
    RateLimited(RateLimited),
    /// An attempt timed out.
    Timeout(Elapsed),
    /// The total deadline passed.
    DeadlineExceeded(DeadlineExceeded),
    /// A [`Fault`](crate::fault::Fault) layer failed the call on purpose.
    InjectedFault(InjectedFault),
    /// The inner service's own error, untouched.
    Inner(BoxError),
}

impl Error {
    /// Sorts a boxed error from any layer (or stack of layers) of this crate into a variant.
    pub fn from_boxed(err: BoxError) -> Self {
        // Each arm moves the box on when the type does not match; no allocation happens.
        let err = match err.downcast::<CircuitOpen>() {
            Ok(e) => return Error::CircuitOpen(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<HalfOpenFull>() {
            Ok(e) => return Error::HalfOpenFull(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<BulkheadFull>() {
            Ok(e) => return Error::BulkheadFull(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<RateLimited>() {
            Ok(e) => return Error::RateLimited(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<Elapsed>() {
            Ok(e) => return Error::Timeout(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<DeadlineExceeded>() {
            Ok(e) => return Error::DeadlineExceeded(*e),
            Err(e) => e,
        };
        match err.downcast::<InjectedFault>() {
            Ok(e) => Error::InjectedFault(*e),
            Err(e) => Error::Inner(e),
        }
    }

    /// True for the rejections that happen *before* the call reached the inner service
    /// (open circuit, half-open full, bulkhead full, rate limited): retrying these only adds
    /// load.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::CircuitOpen(_)
                | Error::HalfOpenFull(_)
                | Error::BulkheadFull(_)
                | Error::RateLimited(_)
        )
    }

    /// How long the caller should wait before trying again, when the error knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen(e) => Some(e.retry_after()),
            Error::RateLimited(e) => Some(e.retry_after()),
            _ => None,
        }
    }
}

impl From<BoxError> for Error {
    fn from(err: BoxError) -> Self {
        Error::from_boxed(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CircuitOpen(e) => e.fmt(f),
            Error::HalfOpenFull(e) => e.fmt(f),
            Error::BulkheadFull(e) => e.fmt(f),
            Error::RateLimited(e) => e.fmt(f),
            Error::Timeout(e) => e.fmt(f),
            Error::DeadlineExceeded(e) => e.fmt(f),
            Error::InjectedFault(e) => e.fmt(f),
            Error::Inner(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Inner(e) => Some(&**e),
            _ => None,
        }
    }
}

/// `err`, then its `source`, and so on down to the root cause.
///
/// ```
/// use resilience_layers::error::{Error, chain};
///
/// let outer = Error::Inner(Box::new(std::io::Error::other("connection refused")));
/// assert_eq!(chain(&outer).count(), 2);
/// assert_eq!(chain(&outer).last().unwrap().to_string(), "connection refused");
/// ```
pub fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// True when `err` itself (not its sources) is one of the rejections made before the call
/// reached the inner service.
pub(crate) fn is_rejection_kind(err: &(dyn std::error::Error + 'static)) -> bool {
    err.is::<CircuitOpen>()
        || err.is::<HalfOpenFull>()
        || err.is::<BulkheadFull>()
        || err.is::<RateLimited>()
}

/// True when `err` (anywhere in its `source` chain) is a rejection made before the call
/// reached the inner service: an open circuit, a full half-open, a full bulkhead, or a rate
/// limit.
///
/// Retry uses this to fail fast instead of retrying a rejection.
pub fn is_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    chain(err).any(is_rejection_kind)
}

/// True when `err` (anywhere in its `source` chain) is an attempt timeout.
pub fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    chain(err).any(|e| e.is::<Elapsed>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_boxed_sorts_each_kind() {
        let name = "users";
        let cases: Vec<(BoxError, &str)> = vec![
            (
                Box::new(CircuitOpen::new(name, Duration::from_secs(3))),
                "open",
            ),
            (Box::new(HalfOpenFull::new(name)), "half"),
            (Box::new(BulkheadFull::new(name, 4)), "bulkhead"),
            (
                Box::new(RateLimited::new(
                    name,
                    Duration::from_millis(250),
                    10,
                    Duration::from_secs(1),
                )),
                "rate",
            ),
            (Box::new(Elapsed::new(Duration::from_millis(5))), "timeout"),
            (
                Box::new(DeadlineExceeded::new(Duration::from_secs(1))),
                "deadline",
            ),
            (Box::new(InjectedFault(())), "injected"),
            ("plain".into(), "inner"),
        ];
        for (err, want) in cases {
            let got = match Error::from_boxed(err) {
                Error::CircuitOpen(e) => {
                    assert_eq!(e.retry_after(), Duration::from_secs(3));
                    assert_eq!(e.name(), "users");
                    "open"
                }
                Error::HalfOpenFull(_) => "half",
                Error::BulkheadFull(e) => {
                    assert_eq!(e.max_concurrent(), 4);
                    "bulkhead"
                }
                Error::RateLimited(e) => {
                    assert_eq!(e.retry_after(), Duration::from_millis(250));
                    assert_eq!((e.permits(), e.period()), (10, Duration::from_secs(1)));
                    "rate"
                }
                Error::Timeout(_) => "timeout",
                Error::DeadlineExceeded(_) => "deadline",
                Error::InjectedFault(_) => "injected",
                Error::Inner(e) => {
                    assert_eq!(e.to_string(), "plain");
                    "inner"
                }
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn rejection_and_timeout_predicates_walk_sources() {
        let open = CircuitOpen::new("a", Duration::ZERO);
        assert!(is_rejection(&open));
        assert!(!is_timeout(&open));
        let timeout = Elapsed::new(Duration::ZERO);
        assert!(is_timeout(&timeout));
        assert!(!is_rejection(&timeout));
        assert!(Error::from_boxed(Box::new(open)).is_rejection());
        let limited = RateLimited::new("r", Duration::from_secs(1), 1, Duration::from_secs(1));
        assert!(is_rejection(&limited));
        let limited = Error::from_boxed(Box::new(limited));
        assert!(limited.is_rejection());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
    }
}
