//! The caller's deadline, carried downstream in a header.
//!
//! The wire format is one header, [`DEADLINE_HEADER`] (`x-request-deadline-ms`), whose value is
//! the caller's *remaining* time in whole milliseconds, rounded down (`x-request-deadline-ms:
//! 850`). A relative value needs no clock agreement between hosts; rounding down means the
//! callee never believes it has more time than the caller will wait, and the time on the
//! wire only makes the callee give up slightly late, never early. `0` means "already
//! expired": the callee answers `504` without doing the work.
//!
//! The client side ([`ResilienceMiddleware`](super::ResilienceMiddleware)) writes it on every
//! attempt from the current deadline; the server side ([`AcceptDeadlineLayer`]) reads it,
//! installs the deadline for the handler (so the handler's own outgoing calls inherit it)
//! and stops the handler when it passes.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{
    deadline::{TimeoutCounter, current_deadline, future::DeadlineFuture, timeouts_counter},
    error::BoxError,
};

/// The header carrying the caller's remaining deadline, in whole milliseconds.
pub const DEADLINE_HEADER: HeaderName = HeaderName::from_static("x-request-deadline-ms");

/// Longest deadline accepted from a header (one day): a larger value is not a deadline anyone
/// meant, and the callee's own limits apply.
const MAX_HEADER_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// Writes `remaining` into `headers` as [`DEADLINE_HEADER`], replacing any value already there;
/// returns the budget written (rounded down to whole milliseconds), the budget the callee sees.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use resilience_layers::http::{DEADLINE_HEADER, set_deadline_header};
///
/// let mut headers = HeaderMap::new();
/// let sent = set_deadline_header(&mut headers, Duration::from_micros(850_900));
/// assert_eq!(headers[DEADLINE_HEADER], "850");
/// assert_eq!(sent, Duration::from_millis(850));
/// ```
pub fn set_deadline_header(headers: &mut HeaderMap, remaining: Duration) -> Duration {
    let ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    headers.insert(DEADLINE_HEADER, HeaderValue::from(ms));
    Duration::from_millis(ms)
}

/// Reads [`DEADLINE_HEADER`]: the caller's remaining time, or `None` when the header is
/// absent or not a whole number of milliseconds (garbage is ignored, not trusted). Values
/// above one day are clamped to one day. [`parse_deadline_header`] tells the two `None`s apart.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use resilience_layers::http::{DEADLINE_HEADER, deadline_from_headers};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(DEADLINE_HEADER, "250".parse().unwrap());
/// assert_eq!(deadline_from_headers(&headers), Some(Duration::from_millis(250)));
/// headers.insert(DEADLINE_HEADER, "soon".parse().unwrap());
/// assert_eq!(deadline_from_headers(&headers), None);
/// ```
pub fn deadline_from_headers(headers: &HeaderMap) -> Option<Duration> {
    parse_deadline_header(headers).ok().flatten()
}

/// Reads [`DEADLINE_HEADER`]: `Ok(None)` when it is absent, the caller's remaining time
/// (clamped to one day) when it is a whole number of milliseconds (spaces around it allowed),
/// [`MalformedDeadline`] for anything else.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use resilience_layers::http::{DEADLINE_HEADER, parse_deadline_header};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(parse_deadline_header(&headers), Ok(None));
/// headers.insert(DEADLINE_HEADER, " 250 ".parse().unwrap());
/// assert_eq!(parse_deadline_header(&headers), Ok(Some(Duration::from_millis(250))));
/// for bad in ["soon", "-5", "1.5", "12ms", ""] {
///     headers.insert(DEADLINE_HEADER, bad.parse().unwrap());
///     assert!(parse_deadline_header(&headers).is_err(), "{bad:?}");
/// }
/// ```
pub fn parse_deadline_header(headers: &HeaderMap) -> Result<Option<Duration>, MalformedDeadline> {
    let Some(value) = headers.get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| MalformedDeadline(()))?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MalformedDeadline(()));
    }
    let ms: u64 = text.parse().unwrap_or(u64::MAX);
    Ok(Some(Duration::from_millis(ms).min(MAX_HEADER_DEADLINE)))
}

/// A [`DEADLINE_HEADER`] that is not a whole number of milliseconds; what an
/// [`AcceptDeadlineLayer::refuse_malformed`] fails the call with (`400` behind a
/// [`ProblemLayer`](super::ProblemLayer)).
///
/// ```
/// use resilience_layers::http::MalformedDeadline;
///
/// fn is_malformed_deadline(err: &resilience_layers::BoxError) -> bool {
///     err.is::<MalformedDeadline>()
/// }
/// # let _ = is_malformed_deadline;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedDeadline(());

impl std::fmt::Display for MalformedDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{DEADLINE_HEADER} is not a whole number of milliseconds")
    }
}

impl std::error::Error for MalformedDeadline {}

/// Server side of deadline propagation: reads [`DEADLINE_HEADER`] from each request, makes
/// that deadline the handler's [`current_deadline`] (so the handler's own outgoing calls
/// through [`ResilienceMiddleware`](super::ResilienceMiddleware) or a deadline layer inherit
/// it and pass it on), and stops the handler when it passes.
///
/// When the deadline passes the handler's future is dropped (its work is cancelled at its next
/// `.await`) and the call fails with [`DeadlineExceeded`](crate::error::DeadlineExceeded); put a
/// [`ProblemLayer`](super::ProblemLayer) outside to answer `504`. A request that arrives
/// with `0` ms left, or with less than [`with_min_budget`](Self::with_min_budget), is refused
/// the same way without calling the handler. Requests without the header run unbounded, or
/// bounded by [`with_max`](Self::with_max) when set, which also caps what a caller may ask
/// for. Counts `resilience_timeouts_total{name, kind="deadline"}`.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use http::{Request, Response};
/// use resilience_layers::{http::{AcceptDeadlineLayer, DEADLINE_HEADER}, deadline::current_deadline};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(AcceptDeadlineLayer::new())
///     .service(service_fn(|_req: Request<()>| async {
///         // The caller's deadline is visible to the handler.
///         let left = current_deadline().unwrap().remaining();
///         Ok::<_, Infallible>(Response::new(left))
///     }));
/// let req = Request::builder().header(DEADLINE_HEADER, "800").body(()).unwrap();
/// let left = svc.oneshot(req).await.unwrap().into_body();
/// assert_eq!(left, Duration::from_millis(800));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AcceptDeadlineLayer {
    max: Option<Duration>,
    min_budget: Duration,
    refuse_malformed: bool,
    counter: TimeoutCounter,
}

impl Default for AcceptDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptDeadlineLayer {
    /// Honours the caller's deadline; no limit for requests without one.
    pub fn new() -> Self {
        Self::named("inbound")
    }

    /// Caps every request at `max`: applies to requests without the header and to callers
    /// asking for more.
    #[must_use]
    pub fn with_max(self, max: Duration) -> Self {
        Self {
            max: Some(max),
            ..self
        }
    }

    /// Refuses at once (`504` behind a [`ProblemLayer`](super::ProblemLayer), the handler not
    /// called) a request whose caller leaves it less than `min` (default zero: only an
    /// expired deadline is refused). So little time cannot pay for the work, and the calls the
    /// handler would make downstream with the rest would only fail there; refusing up front
    /// keeps a caller who sends tiny deadlines from costing anything but the refusal.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilience_layers::http::AcceptDeadlineLayer;
    ///
    /// let layer = AcceptDeadlineLayer::new().with_min_budget(Duration::from_millis(10));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn with_min_budget(self, min: Duration) -> Self {
        Self {
            min_budget: min,
            ..self
        }
    }

    /// Fails a request whose [`DEADLINE_HEADER`] is not a whole number of milliseconds with
    /// [`MalformedDeadline`] (`400` behind a [`ProblemLayer`](super::ProblemLayer)), the
    /// handler not called. By default such a value is ignored and the request runs as if it
    /// had none: lenient with callers, but a caller's typo then runs unbounded unnoticed.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use resilience_layers::http::{AcceptDeadlineLayer, DEADLINE_HEADER, MalformedDeadline};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let svc = ServiceBuilder::new()
    ///     .layer(AcceptDeadlineLayer::new().refuse_malformed())
    ///     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
    /// let req = Request::builder().header(DEADLINE_HEADER, "soon").body(()).unwrap();
    /// let err = svc.oneshot(req).await.unwrap_err();
    /// assert!(err.is::<MalformedDeadline>());
    /// # }
    /// ```
    #[must_use]
    pub fn refuse_malformed(self) -> Self {
        Self {
            refuse_malformed: true,
            ..self
        }
    }

    /// Names the `resilience_timeouts_total` series (default `inbound`).
    #[must_use]
    pub fn with_name(self, name: impl Into<Arc<str>>) -> Self {
        Self {
            max: self.max,
            min_budget: self.min_budget,
            refuse_malformed: self.refuse_malformed,
            ..Self::named(&name.into())
        }
    }

    fn named(name: &str) -> Self {
        let counter = TimeoutCounter::new(timeouts_counter(name, "deadline"));
        Self {
            max: None,
            min_budget: Duration::ZERO,
            refuse_malformed: false,
            counter,
        }
    }
}

impl<S> Layer<S> for AcceptDeadlineLayer {
    type Service = AcceptDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AcceptDeadline {
            inner,
            max: self.max,
            min_budget: self.min_budget,
            refuse_malformed: self.refuse_malformed,
            counter: self.counter.clone(),
        }
    }
}

/// The service [`AcceptDeadlineLayer`] builds; see there.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use resilience_layers::http::AcceptDeadlineLayer;
/// use tower::{Layer, service_fn};
///
/// let svc = AcceptDeadlineLayer::new()
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
/// let _inner = svc.into_inner();
/// ```
#[derive(Debug, Clone)]
pub struct AcceptDeadline<S> {
    inner: S,
    max: Option<Duration>,
    min_budget: Duration,
    refuse_malformed: bool,
    counter: TimeoutCounter,
}

impl<S> AcceptDeadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for AcceptDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AcceptDeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let from_caller = match parse_deadline_header(req.headers()) {
            Ok(from_caller) => from_caller,
            Err(malformed) if self.refuse_malformed => {
                return AcceptDeadlineFuture {
                    kind: Kind::Refused {
                        error: Some(malformed),
                    },
                };
            }
            Err(_) => None,
        };
        // The caller has given up already, or left too little to do the work: refused
        // without calling the handler.
        if let Some(asked) = from_caller.filter(|asked| asked.is_zero() || *asked < self.min_budget)
        {
            return AcceptDeadlineFuture {
                kind: Kind::Bounded {
                    inner: DeadlineFuture::expired(asked, self.counter.clone()),
                },
            };
        }
        let asked = match (from_caller, self.max) {
            (Some(asked), Some(max)) => Some(asked.min(max)),
            (asked, max) => asked.or(max),
        };
        let kind = match asked {
            None => Kind::Unbounded {
                inner: self.inner.call(req),
            },
            // A zero cap: nothing can run.
            Some(budget) if budget.is_zero() => Kind::Bounded {
                inner: DeadlineFuture::expired(budget, self.counter.clone()),
            },
            Some(budget) => Kind::Bounded {
                inner: DeadlineFuture::start(&mut self.inner, req, budget, &self.counter),
            },
        };
        AcceptDeadlineFuture { kind }
    }
}

pin_project! {
    /// Future for [`AcceptDeadline`]: the handler's future, bounded by the caller's deadline
    /// (the [`DeadlineService`](crate::deadline::DeadlineService)'s future) when there is one.
    #[derive(Debug)]
    pub struct AcceptDeadlineFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        // No deadline asked for and no maximum: the handler runs unbounded.
        Unbounded { #[pin] inner: F },
        Bounded { #[pin] inner: DeadlineFuture<F> },
        // A malformed header, refused: the handler was not called.
        Refused { error: Option<MalformedDeadline> },
    }
}

impl<F, T, E> Future for AcceptDeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Unbounded { inner } => inner.poll(cx).map_err(Into::into),
            KindProj::Bounded { inner } => inner.poll(cx),
            KindProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("AcceptDeadlineFuture polled after completion")
                .into())),
        }
    }
}

/// Client side of deadline propagation for tower HTTP clients: writes the
/// [`current_deadline`]'s remaining time into [`DEADLINE_HEADER`] on every request (every
/// attempt, when placed inside retry), and leaves requests alone when no deadline is in force.
///
/// [`ResilienceMiddleware`](super::ResilienceMiddleware) does this by itself; this layer is for
/// a stack built with [`ResilienceLayer::for_http`](crate::stack::ResilienceLayer::for_http)
/// around a tower client (hyper's, say), where it goes innermost.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use http::{Request, Response};
/// use resilience_layers::{http::{DEADLINE_HEADER, PropagateDeadlineLayer}, deadline::DeadlineLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let client = ServiceBuilder::new()
///     .layer(DeadlineLayer::new("users", Duration::from_secs(2)).unwrap())
///     .layer(PropagateDeadlineLayer::new())
///     .service(service_fn(|req: Request<()>| async move {
///         Ok::<_, Infallible>(Response::new(req.headers()[DEADLINE_HEADER].clone()))
///     }));
/// let sent = client.oneshot(Request::new(())).await.unwrap().into_body();
/// assert_eq!(sent, "2000");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateDeadlineLayer {
    _priv: (),
}

impl PropagateDeadlineLayer {
    /// A new layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline { inner }
    }
}

/// The service [`PropagateDeadlineLayer`] builds; see there.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use resilience_layers::http::PropagateDeadlineLayer;
/// use tower::{Layer, service_fn};
///
/// let svc = PropagateDeadlineLayer::new()
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
/// let _inner = svc.into_inner();
/// ```
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
}

impl<S> PropagateDeadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(deadline) = current_deadline() {
            set_deadline_header(req.headers_mut(), deadline.remaining());
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_rounds_down_and_rejects_junk() {
        let mut h = HeaderMap::new();
        set_deadline_header(&mut h, Duration::from_micros(999));
        assert_eq!(h[DEADLINE_HEADER], "0");
        assert_eq!(deadline_from_headers(&h), Some(Duration::ZERO));
        set_deadline_header(&mut h, Duration::from_secs(3));
        assert_eq!(deadline_from_headers(&h), Some(Duration::from_secs(3)));
        for junk in ["", "-5", "1.5", "1e3", "ten"] {
            h.insert(DEADLINE_HEADER, HeaderValue::from_static(junk));
            assert_eq!(deadline_from_headers(&h), None, "{junk:?}");
        }
        h.insert(
            DEADLINE_HEADER,
            HeaderValue::from_static("99999999999999999999"),
        );
        assert_eq!(deadline_from_headers(&h), Some(MAX_HEADER_DEADLINE));
    }

    mod server {
        use super::super::*;
        use crate::error::DeadlineExceeded;
        use std::sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        };
        use tower::{ServiceExt, service_fn};

        fn req(ms: Option<&'static str>) -> Request<()> {
            let mut b = Request::builder();
            if let Some(ms) = ms {
                b = b.header(DEADLINE_HEADER, ms);
            }
            b.body(()).unwrap()
        }

        #[tokio::test(start_paused = true)]
        async fn stops_the_handler_when_the_callers_deadline_passes() {
            let finished = Arc::new(AtomicUsize::new(0));
            let f = finished.clone();
            let svc = AcceptDeadlineLayer::new().layer(service_fn(move |_: Request<()>| {
                let f = f.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(())
                }
            }));
            let start = tokio::time::Instant::now();
            let err = svc.clone().oneshot(req(Some("300"))).await.unwrap_err();
            assert!(err.is::<DeadlineExceeded>());
            assert_eq!(start.elapsed(), Duration::from_millis(300));
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(finished.load(Ordering::SeqCst), 0, "handler was cancelled");

            // No header, no max: runs to completion.
            svc.oneshot(req(None)).await.unwrap();
            assert_eq!(finished.load(Ordering::SeqCst), 1);
        }

        #[tokio::test(start_paused = true)]
        async fn zero_left_is_refused_without_calling_and_max_caps() {
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            let layer = AcceptDeadlineLayer::new().with_max(Duration::from_millis(100));
            let svc = layer.layer(service_fn(move |_: Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok::<_, std::convert::Infallible>(current_deadline().map(|d| d.remaining()))
                }
            }));
            let err = svc.clone().oneshot(req(Some("0"))).await.unwrap_err();
            assert!(err.is::<DeadlineExceeded>());
            assert_eq!(calls.load(Ordering::SeqCst), 0);
            let seen = svc.clone().oneshot(req(Some("5000"))).await.unwrap();
            assert_eq!(seen, Some(Duration::from_millis(100)));
            let seen = svc.oneshot(req(None)).await.unwrap();
            assert_eq!(seen, Some(Duration::from_millis(100)));
        }

        #[tokio::test(start_paused = true)]
        async fn a_budget_below_the_minimum_is_refused_without_calling() {
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            let layer = AcceptDeadlineLayer::new().with_min_budget(Duration::from_millis(10));
            let svc = layer.layer(service_fn(move |_: Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, std::convert::Infallible>(()) }
            }));
            for short in ["0", "1", "9"] {
                let err = svc.clone().oneshot(req(Some(short))).await.unwrap_err();
                let err = err.downcast::<DeadlineExceeded>().unwrap();
                assert_eq!(err.budget(), Duration::from_millis(short.parse().unwrap()));
            }
            assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
            // At the minimum, and without a deadline at all, the handler runs.
            svc.clone().oneshot(req(Some("10"))).await.unwrap();
            svc.oneshot(req(None)).await.unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
    }
}
