//! Rejections as RFC 9457 `application/problem+json` responses, and the layer that sends them.

use std::{
    borrow::Cow,
    convert::Infallible,
    error::Error as StdError,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;
use serde::Serialize;
use tower::{Layer, Service};

use crate::error::{
    BoxError, BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed, HalfOpenFull, RateLimited,
};

/// The problem `type` of a request whose deadline passed (or was too short to start): the
/// one [`ProblemDetails`] gives [`DeadlineExceeded`], and the one
/// [`ResilienceMiddleware`](super::ResilienceMiddleware) recognises in an upstream's `504` as
/// an answer to the deadline it sent.
pub const DEADLINE_EXCEEDED_TYPE: &str = "urn:resilience:deadline-exceeded";

/// The problem `type` of a request refused because a concurrency limit of this service (a
/// bulkhead) is reached: the one [`ProblemDetails`] gives [`BulkheadFull`].
pub const BULKHEAD_FULL_TYPE: &str = "urn:resilience:bulkhead-full";

/// The problem `type` of a request refused because this service's rate limit is reached:
/// the one [`ProblemDetails`] gives [`RateLimited`].
pub const RATE_LIMITED_TYPE: &str = "urn:resilience:rate-limited";

/// The media type of a problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body, built from an error of this crate, as a server answers
/// its caller: every text speaks of *this service* (its circuit, its concurrency limit, its
/// time limit), which is what the caller sees, whatever layer inside it refused.
///
/// Each rejection gets its own `type` URI (a `urn:resilience:` name) so clients can tell them
/// apart without parsing text, the status that fits it, and a `Retry-After` when waiting helps:
///
/// | error | status | `Retry-After` |
/// |---|---|---|
/// | open circuit | `503` | seconds until the next probe (at least 1) |
/// | half-open, probes taken | `503` | `1` |
/// | bulkhead full (names its limit) | `503` | `1` |
/// | rate limited (names its quota; with the `RateLimit` and `RateLimit-Policy` fields) | `429` | seconds until the next permit (at least 1) |
/// | injected fault (chaos) | `503` | `1` |
/// | attempt timeout | `504` | |
/// | deadline exceeded | `504` | |
/// | anything else | `500` | |
///
/// Anything else gets a generic body: internals are logged (target `resilience`), never sent.
///
/// ```
/// use http::StatusCode;
/// use resilience_layers::http::ProblemDetails;
///
/// let err: resilience_layers::BoxError = "database password rejected".into();
/// let problem = ProblemDetails::from_error(&*err);
/// assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// assert!(!problem.detail().contains("password"));
///
/// let res: http::Response<String> = problem.into_response();
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    #[serde(serialize_with = "serialize_status")]
    status: StatusCode,
    detail: Cow<'static, str>,
    #[serde(skip)]
    retry_after: Option<Duration>,
    /// `RateLimit-Policy` and `RateLimit`, for a rate-limited request.
    #[serde(skip)]
    rate_limit: Option<(HeaderValue, HeaderValue)>,
}

fn serialize_status<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl ProblemDetails {
    /// The problem for `err`, looking through its `source` chain for this crate's error types.
    pub fn from_error(err: &(dyn StdError + 'static)) -> Self {
        crate::error::chain(err)
            .find_map(Self::known)
            .unwrap_or_else(Self::internal)
    }

    fn known(e: &(dyn StdError + 'static)) -> Option<Self> {
        if let Some(e) = e.downcast_ref::<crate::Error>() {
            return match e {
                crate::Error::CircuitOpen(e) => Some(Self::circuit_open(e)),
                crate::Error::HalfOpenFull(e) => Self::known(e),
                crate::Error::BulkheadFull(e) => Self::known(e),
                crate::Error::RateLimited(e) => Self::known(e),
                crate::Error::Timeout(e) => Self::known(e),
                crate::Error::DeadlineExceeded(e) => Self::known(e),
                crate::Error::InjectedFault(e) => Some(Self::from_error(e)),
                crate::Error::Inner(e) => Some(Self::from_error(&**e)),
            };
        }
        if let Some(e) = e.downcast_ref::<CircuitOpen>() {
            Some(Self::circuit_open(e))
        } else if e.is::<HalfOpenFull>() {
            Some(Self::unavailable(
                "urn:resilience:circuit-half-open",
                "Service recovering",
                "This service is testing with a few requests whether it has recovered from \
                 repeated failures; try again shortly."
                    .into(),
            ))
        } else if let Some(e) = e.downcast_ref::<BulkheadFull>() {
            Some(Self::unavailable(
                BULKHEAD_FULL_TYPE,
                "Too many concurrent requests",
                format!(
                    "This service is at its limit of {} concurrent requests; try again shortly.",
                    e.max_concurrent()
                )
                .into(),
            ))
        } else if let Some(e) = e.downcast_ref::<RateLimited>() {
            Some(Self::rate_limited(e))
        } else if e.is::<Elapsed>() {
            Some(Self::new(
                "urn:resilience:timeout",
                "Timed out",
                StatusCode::GATEWAY_TIMEOUT,
                "This service did not complete the request within its time limit.".into(),
            ))
        } else if e.is::<DeadlineExceeded>() {
            Some(Self::new(
                DEADLINE_EXCEEDED_TYPE,
                "Deadline exceeded",
                StatusCode::GATEWAY_TIMEOUT,
                "The request's deadline passed, or left too little time, before this service \
                 could complete it."
                    .into(),
            ))
        } else if e.is::<super::MalformedDeadline>() {
            Some(Self::new(
                "urn:resilience:malformed-deadline",
                "Invalid deadline",
                StatusCode::BAD_REQUEST,
                "x-request-deadline-ms must be the time left in whole milliseconds, such as 850."
                    .into(),
            ))
        } else if e.is::<crate::fault::InjectedFault>() {
            Some(Self::unavailable(
                "urn:resilience:injected-fault",
                "Injected fault",
                "A fault was injected into this service for testing; try again shortly.".into(),
            ))
        } else {
            None
        }
    }

    fn new(
        kind: &'static str,
        title: &'static str,
        status: StatusCode,
        detail: Cow<'static, str>,
    ) -> Self {
        Self {
            kind,
            title,
            status,
            detail,
            retry_after: None,
            rate_limit: None,
        }
    }

    fn unavailable(kind: &'static str, title: &'static str, detail: Cow<'static, str>) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(kind, title, StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    fn circuit_open(e: &CircuitOpen) -> Self {
        let secs = Self::retry_after_secs(e.retry_after());
        Self {
            retry_after: Some(Duration::from_secs(secs)),
            ..Self::new(
                "urn:resilience:circuit-open",
                "Service unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "This service is refusing these requests for now after repeated failures; \
                     retry in {secs} s."
                )
                .into(),
            )
        }
    }

    fn rate_limited(e: &RateLimited) -> Self {
        let secs = Self::retry_after_secs(e.retry_after());
        Self {
            retry_after: Some(Duration::from_secs(secs)),
            rate_limit: Some(super::rate_limit_fields(e)),
            ..Self::new(
                RATE_LIMITED_TYPE,
                "Too many requests",
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "This service is at its limit of {} requests per {}; retry in {secs} s.",
                    e.permits(),
                    humantime::format_duration(e.period())
                )
                .into(),
            )
        }
    }

    fn internal() -> Self {
        Self::new(
            "about:blank",
            "Internal Server Error",
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not complete the request.".into(),
        )
    }

    /// The HTTP status for this problem.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem `type` URI.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// A short, fixed summary of the problem type.
    pub fn title(&self) -> &'static str {
        self.title
    }

    /// A human-readable explanation, never containing internals.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// What the `Retry-After` header will say, when there is one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The response: status, `Content-Type: application/problem+json`, `Retry-After` when set,
    /// and the JSON body. `B` is any body built from a `String` (`axum::body::Body`,
    /// `String`, `Full<Bytes>` ...).
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let mut res = Self::render(self.status, self.retry_after.map(|d| d.as_secs()), &self);
        if let Some((policy, state)) = self.rate_limit {
            res.headers_mut().insert(super::RATE_LIMIT_POLICY, policy);
            res.headers_mut().insert(super::RATE_LIMIT, state);
        }
        res
    }

    /// The response for any problem details `body`, built the way
    /// [`into_response`](Self::into_response) builds this type's: `status`,
    /// `Content-Type: application/problem+json`, `Retry-After` when `retry_after_secs` is
    /// given, and `body` as JSON.
    ///
    /// For an application's own problem type, one with members this type leaves out
    /// (`instance`, extension members such as a request id or the invalid fields), so that
    /// every problem a server sends goes out the same way.
    ///
    /// ```
    /// use http::StatusCode;
    /// use resilience_layers::http::ProblemDetails;
    ///
    /// #[derive(serde::Serialize)]
    /// struct OutOfStock {
    ///     #[serde(rename = "type")]
    ///     kind: &'static str,
    ///     title: &'static str,
    ///     status: u16,
    ///     sku: String,
    /// }
    ///
    /// let body = OutOfStock {
    ///     kind: "urn:shop:out-of-stock",
    ///     title: "Out of stock",
    ///     status: 409,
    ///     sku: "A-17".into(),
    /// };
    /// let res: http::Response<String> = ProblemDetails::render(StatusCode::CONFLICT, Some(30), &body);
    /// assert_eq!(res.status(), StatusCode::CONFLICT);
    /// assert_eq!(res.headers()["content-type"], "application/problem+json");
    /// assert_eq!(res.headers()["retry-after"], "30");
    /// assert!(res.body().contains(r#""sku":"A-17""#));
    /// ```
    pub fn render<B, T>(status: StatusCode, retry_after_secs: Option<u64>, body: &T) -> Response<B>
    where
        B: From<String>,
        T: Serialize + ?Sized,
    {
        let body = serde_json::to_string(body).unwrap_or_default();
        let mut res = Response::new(B::from(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }

    /// Whole seconds for `Retry-After`, rounded up and at least 1: a client told "0" would
    /// come straight back while the circuit is still open. Every `Retry-After` this type sends
    /// is counted this way; pass the result to [`render`](Self::render) to count the same.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilience_layers::http::ProblemDetails;
    ///
    /// assert_eq!(ProblemDetails::retry_after_secs(Duration::from_millis(1_500)), 2);
    /// assert_eq!(ProblemDetails::retry_after_secs(Duration::ZERO), 1);
    /// ```
    pub fn retry_after_secs(after: Duration) -> u64 {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Turns errors from the services inside it into problem+json responses, so the service
/// outside is `Infallible` (what axum's `Router::layer` wants).
///
/// Put it outermost, around the resilience layers on the server side. The status codes and
/// bodies are the ones in [`ProblemDetails`]; errors that are not this crate's become a generic `500`
/// and are logged at `error` level with their message.
///
/// ```
/// use std::convert::Infallible;
/// use axum::{Router, body::Body, routing::get};
/// use resilience_layers::{bulkhead::BulkheadConfig, http::ProblemLayer, stack::StackConfig};
/// use tower::ServiceBuilder;
///
/// let stack = StackConfig {
///     bulkhead: Some(BulkheadConfig::default()),
///     ..StackConfig::default()
/// };
/// let app: Router = Router::new().route(
///     "/",
///     get(|| async { "hi" }).route_layer(
///         ServiceBuilder::new()
///             .layer(ProblemLayer::new())
///             .layer(stack.into_layer("index").unwrap().for_server()),
///     ),
/// );
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemLayer {
    _priv: (),
}

impl ProblemLayer {
    /// A new layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for ProblemLayer {
    type Service = ProblemService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemService::new(inner)
    }
}

/// The service [`ProblemLayer`] builds; see there.
///
/// ```
/// use resilience_layers::http::ProblemService;
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let inner = service_fn(|_: ()| async { Err::<http::Response<String>, _>("boom") });
/// let res = ProblemService::new(inner).oneshot(()).await.unwrap();
/// assert_eq!(res.status(), 500);
/// # });
/// ```
#[derive(Debug)]
pub struct ProblemService<S> {
    inner: S,
    /// An error `inner.poll_ready` returned: answered as a problem by the next `call`, since
    /// `poll_ready` itself cannot return a response.
    not_ready: Option<BoxError>,
}

// Hand-written: a clone must not inherit another handle's pending readiness error.
impl<S: Clone> Clone for ProblemService<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S> ProblemService<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            not_ready: None,
        }
    }

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

impl<S, Req, B> Service<Req> for ProblemService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: From<String>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.not_ready.take() {
            Some(err) => ResponseFuture {
                state: State::Failed { err: Some(err) },
            },
            None => ResponseFuture {
                state: State::Called {
                    inner: self.inner.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// Future for [`ProblemService`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] inner: F },
        Failed { err: Option<BoxError> },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: From<String>,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let err = match self.project().state.project() {
            StateProj::Called { inner } => match inner.poll(cx) {
                Poll::Ready(Ok(res)) => return Poll::Ready(Ok(res)),
                Poll::Ready(Err(e)) => e.into(),
                Poll::Pending => return Poll::Pending,
            },
            StateProj::Failed { err } => err.take().expect("polled after completion"),
        };
        Poll::Ready(Ok(to_response(&*err)))
    }
}

fn to_response<B: From<String>>(err: &(dyn StdError + Send + Sync + 'static)) -> Response<B> {
    let problem = ProblemDetails::from_error(err);
    if problem.status() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(target: "resilience", error = %err, "request failed");
    } else {
        tracing::debug!(target: "resilience", error = %err, status = problem.status().as_u16(), "request rejected");
    }
    problem.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(problem: ProblemDetails) -> (StatusCode, Option<String>, serde_json::Value) {
        let res: Response<String> = problem.into_response();
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        (
            res.status(),
            retry,
            serde_json::from_str(res.body()).unwrap(),
        )
    }

    #[test]
    fn each_kind_maps_to_its_status() {
        let name = "users";
        let open = CircuitOpen::new(name, Duration::from_millis(2_100));
        let (status, retry, json) = body(ProblemDetails::from_error(&open));
        assert_eq!(status, 503);
        assert_eq!(retry.as_deref(), Some("3"));
        assert_eq!(json["type"], "urn:resilience:circuit-open");
        assert_eq!(json["status"], 503);
        assert!(json["title"].is_string() && json["detail"].is_string());

        // Zero (forced open) still tells the client to wait at least a second.
        let forced = CircuitOpen::new(name, Duration::ZERO);
        assert_eq!(
            body(ProblemDetails::from_error(&forced)).1.as_deref(),
            Some("1")
        );

        let full = BulkheadFull::new(name, 4);
        let (status, retry, _) = body(ProblemDetails::from_error(&full));
        assert_eq!((status.as_u16(), retry.as_deref()), (503, Some("1")));

        let half = HalfOpenFull::new(name);
        assert_eq!(ProblemDetails::from_error(&half).status(), 503);

        let (status, retry, json) = body(ProblemDetails::from_error(&Elapsed::new(
            Duration::from_secs(1),
        )));
        assert_eq!((status.as_u16(), retry), (504, None));
        assert_eq!(json["type"], "urn:resilience:timeout");

        let (status, _, json) = body(ProblemDetails::from_error(&DeadlineExceeded::new(
            Duration::from_secs(1),
        )));
        assert_eq!(status, 504);
        assert_eq!(json["type"], "urn:resilience:deadline-exceeded");

        let limited = RateLimited::new(
            name,
            Duration::from_millis(1_200),
            10,
            Duration::from_secs(1),
        );
        let res: Response<String> = ProblemDetails::from_error(&limited).into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        assert_eq!(res.headers()["ratelimit"], r#""users";r=0;t=2"#);
        assert_eq!(res.headers()["ratelimit-policy"], r#""users";q=10;w=1"#);
        let (status, _, json) = body(ProblemDetails::from_error(&limited));
        assert_eq!(status, 429);
        assert_eq!(json["type"], RATE_LIMITED_TYPE);

        let other: BoxError = "secret internals".into();
        let (status, retry, json) = body(ProblemDetails::from_error(&*other));
        assert_eq!((status.as_u16(), retry), (500, None));
        assert!(!json.to_string().contains("secret"));
    }

    #[test]
    fn texts_speak_of_this_service_and_name_the_limit() {
        let problems = [
            ProblemDetails::from_error(&CircuitOpen::new("api", Duration::from_secs(2))),
            ProblemDetails::from_error(&HalfOpenFull::new("api")),
            ProblemDetails::from_error(&BulkheadFull::new("api", 64)),
            ProblemDetails::from_error(&RateLimited::new(
                "api",
                Duration::from_secs(1),
                5,
                Duration::from_secs(60),
            )),
            ProblemDetails::from_error(&Elapsed::new(Duration::from_secs(1))),
            ProblemDetails::from_error(&DeadlineExceeded::new(Duration::from_secs(1))),
        ];
        for p in &problems {
            let text = format!("{} {}", p.title(), p.detail()).to_lowercase();
            assert!(text.contains("this service"), "{text}");
            assert!(
                !text.contains("dependency") && !text.contains("upstream"),
                "{text}"
            );
        }
        assert!(
            problems[2].detail().contains("64"),
            "{}",
            problems[2].detail()
        );
        assert!(
            problems[3].detail().contains("5 requests per 1m"),
            "{}",
            problems[3].detail()
        );
    }

    #[test]
    fn looks_through_the_error_enum_and_sources() {
        let boxed: BoxError = Box::new(Elapsed::new(Duration::from_secs(1)));
        let err = crate::Error::from_boxed(boxed);
        assert_eq!(ProblemDetails::from_error(&err).status(), 504);
        let inner = crate::Error::Inner(Box::new(BulkheadFull::new("b", 1)));
        assert_eq!(ProblemDetails::from_error(&inner).status(), 503);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ProblemDetails::retry_after_secs(Duration::ZERO), 1);
        assert_eq!(
            ProblemDetails::retry_after_secs(Duration::from_millis(1)),
            1
        );
        assert_eq!(
            ProblemDetails::retry_after_secs(Duration::from_millis(1_000)),
            1
        );
        assert_eq!(
            ProblemDetails::retry_after_secs(Duration::from_millis(1_001)),
            2
        );
    }
}
