//! HTTP response classification: which responses and errors say the upstream is unwell.

use std::{any::Any, error::Error as StdError, fmt, time::Duration};

use http::{Response, StatusCode};
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, SharedClassifier,
};

use super::DEADLINE_EXCEEDED_TYPE;
use crate::{
    classify::{Classify, Outcome},
    error::{self, BoxError, DeadlineExceeded, Elapsed},
};

/// Classifies HTTP results for the circuit breaker and retry alike.
///
/// - `5xx`, `408 Request Timeout` and `429 Too Many Requests` are failures: the upstream is
///   overloaded or broken, so they count against the breaker and may be retried, except
///   `501 Not Implemented` and `505 HTTP Version Not Supported`, which count against the
///   breaker but are never retried ([`Classify::is_retryable`]): the same request would get
///   the same answer.
/// - Every other status, other `4xx` included, is a success: a `404` or a `422` is the caller's
///   problem, says nothing about the upstream's health, and would fail again if retried.
/// - Errors are failures (timeouts, refused or reset connections), except this crate's own
///   rejections (an open circuit, a full bulkhead), which never reached the upstream, and the
///   caller's deadline running out ([`DeadlineExceeded`]), which says how patient the caller
///   was, not how healthy the upstream is. Both are [`Outcome::Ignored`]: neither recorded nor
///   retried, and a half-open probe slot they held is given back. (An attempt timeout is the
///   upstream being slow, and stays a failure.)
///
/// It is a tower-http [`ClassifyResponse`] with a typed [`HttpFailureClass`], so it also plugs
/// into tower-http's `TraceLayer`, and a [`Classify`] for both [`http::Response`] and
/// [`reqwest::Response`], so one value drives the breaker and retry on either client.
///
/// ```
/// use http::{Response, StatusCode};
/// use resilience_layers::{Classify, Outcome, http::HttpClassifier};
///
/// let res = |s: u16| Response::builder().status(s).body(()).unwrap();
/// let c = HttpClassifier::new();
/// let outcome = |s| Classify::<_, std::io::Error>::classify(&c, Ok(&res(s)));
/// assert_eq!(outcome(503), Outcome::Failure);
/// assert_eq!(outcome(429), Outcome::Failure);
/// assert_eq!(outcome(404), Outcome::Success);
/// assert_eq!(outcome(200), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpClassifier {
    _priv: (),
}

impl HttpClassifier {
    /// The classifier described above.
    pub const fn new() -> Self {
        Self { _priv: () }
    }

    /// This classifier as a tower-http [`MakeClassifier`](tower_http::classify::MakeClassifier)
    /// (for `TraceLayer::new`).
    pub fn into_make_classifier(self) -> SharedClassifier<Self> {
        SharedClassifier::new(self)
    }

    /// Classifies a status code: `Err` for `5xx`, `408` and `429`.
    pub fn classify_status(status: StatusCode) -> Result<(), HttpFailureClass> {
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(HttpFailureClass::Status(status))
        } else {
            Ok(())
        }
    }

    /// Classifies an error of any type, looking through the error types this crate knows:
    /// [`BoxError`], [`crate::Error`], [`reqwest::Error`] and [`reqwest_middleware::Error`].
    pub fn classify_any_error<E: fmt::Display + 'static>(error: &E) -> HttpFailureClass {
        let any: &dyn Any = error;
        if let Some(e) = any.downcast_ref::<BoxError>() {
            classify_std_error(&**e)
        } else if let Some(e) = any.downcast_ref::<crate::Error>() {
            classify_std_error(e)
        } else if let Some(class) = classify_reqwest_any(any) {
            class
        } else if let Some(e) = any.downcast_ref::<std::io::Error>() {
            classify_std_error(e)
        } else {
            HttpFailureClass::Error(error.to_string())
        }
    }
}

/// Why an HTTP call failed, as [`HttpClassifier`] sees it.
///
/// ```
/// use http::StatusCode;
/// use resilience_layers::http::{HttpClassifier, HttpFailureClass};
///
/// let class = HttpClassifier::classify_status(StatusCode::SERVICE_UNAVAILABLE).unwrap_err();
/// assert_eq!(class, HttpFailureClass::Status(StatusCode::SERVICE_UNAVAILABLE));
/// assert!(class.is_retryable());
/// assert!(!HttpFailureClass::Rejected.is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpFailureClass {
    /// A response with a `5xx`, `408` or `429` status.
    Status(StatusCode),
    /// No response in time: an attempt timeout, or the client's own timeout.
    Timeout,
    /// The connection could not be made or broke before a response arrived.
    Connection,
    /// Rejected by this crate before reaching the upstream (open circuit, full bulkhead):
    /// says nothing about the upstream and is never retried.
    Rejected,
    /// The caller's deadline ran out: this call's own, or the upstream answered that the
    /// budget it was sent is used up. Says nothing about the upstream, and another attempt
    /// has no time left to run in.
    DeadlineExceeded,
    /// Any other error, by its message.
    Error(String),
}

impl HttpFailureClass {
    /// True when another attempt might succeed: everything but [`HttpFailureClass::Rejected`],
    /// [`HttpFailureClass::DeadlineExceeded`] and `501 Not Implemented` / `505 HTTP Version
    /// Not Supported`, which will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpFailureClass::Status(s) => {
                *s != StatusCode::NOT_IMPLEMENTED && *s != StatusCode::HTTP_VERSION_NOT_SUPPORTED
            }
            HttpFailureClass::Rejected | HttpFailureClass::DeadlineExceeded => false,
            _ => true,
        }
    }

    /// The breaker's view: rejections and the caller's deadline are ignored, everything else
    /// is a failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            HttpFailureClass::Rejected | HttpFailureClass::DeadlineExceeded => Outcome::Ignored,
            _ => Outcome::Failure,
        }
    }
}

impl fmt::Display for HttpFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpFailureClass::Status(s) => write!(f, "status {s}"),
            HttpFailureClass::Timeout => f.write_str("timed out"),
            HttpFailureClass::Connection => f.write_str("connection failed"),
            HttpFailureClass::Rejected => f.write_str("rejected before reaching the upstream"),
            HttpFailureClass::DeadlineExceeded => f.write_str("the caller's deadline ran out"),
            HttpFailureClass::Error(e) => write!(f, "error: {e}"),
        }
    }
}

impl ClassifyResponse for HttpClassifier {
    type FailureClass = HttpFailureClass;
    type ClassifyEos = NeverClassifyEos<HttpFailureClass>;

    fn classify_response<B>(
        self,
        res: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        ClassifiedResponse::Ready(Self::classify_status(res.status()))
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: fmt::Display + 'static,
    {
        Self::classify_any_error(error)
    }
}

/// The breaker's view of a classified result.
pub(crate) fn outcome_of(class: &Result<(), HttpFailureClass>) -> Outcome {
    match class {
        Ok(()) => Outcome::Success,
        Err(class) => class.outcome(),
    }
}

/// Retry's view of a classified result: failures other than the permanent ones.
fn retryable(class: &Result<(), HttpFailureClass>) -> bool {
    class.as_ref().is_err_and(HttpFailureClass::is_retryable)
}

impl HttpClassifier {
    fn classify_result<R, E>(
        result: Result<&R, &E>,
        status: impl Fn(&R) -> StatusCode,
    ) -> Result<(), HttpFailureClass>
    where
        E: fmt::Display + 'static,
    {
        match result {
            Ok(res) => Self::classify_status(status(res)),
            Err(e) => Err(Self::classify_any_error(e)),
        }
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier
where
    E: fmt::Display + 'static,
{
    #[inline]
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        outcome_of(&Self::classify_result(result, Response::status))
    }

    #[inline]
    fn is_retryable(&self, result: Result<&Response<B>, &E>) -> bool {
        retryable(&Self::classify_result(result, Response::status))
    }
}

#[cfg(feature = "reqwest")]
impl<E> Classify<reqwest::Response, E> for HttpClassifier
where
    E: fmt::Display + 'static,
{
    #[inline]
    fn classify(&self, result: Result<&reqwest::Response, &E>) -> Outcome {
        outcome_of(&Self::classify_result(result, reqwest::Response::status))
    }

    #[inline]
    fn is_retryable(&self, result: Result<&reqwest::Response, &E>) -> bool {
        retryable(&Self::classify_result(result, reqwest::Response::status))
    }
}

/// Whether an upstream's answer to an attempt sent with `sent` of the caller's budget (in
/// [`DEADLINE_HEADER`](super::DEADLINE_HEADER)) is about that budget rather than about the
/// upstream's health: a `504` after the whole budget was used (`elapsed >= sent`: the upstream
/// ran out of the caller's time), or a `504` whose problem `type` says the caller's deadline
/// was exceeded (refused at once, as below the upstream's minimum budget).
///
/// A `504` for any other reason while budget was left (the upstream's own dependency timed out,
/// the upstream was slow) is the upstream's failure. The caveat: an upstream that answers
/// `deadline-exceeded` when a cap of its *own* passes (`AcceptDeadlineLayer::with_max`) is
/// taken at its word; the attempt timeout still counts a slow upstream as failing.
// The client middleware applies it; the server side has no budget of its own to answer.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) fn answers_our_budget(
    status: StatusCode,
    sent: Duration,
    elapsed: Duration,
    problem_type: Option<&str>,
) -> bool {
    status == StatusCode::GATEWAY_TIMEOUT
        && (elapsed >= sent || problem_type == Some(DEADLINE_EXCEEDED_TYPE))
}

/// The reqwest error types, when `any` is one of them.
#[cfg(feature = "reqwest")]
fn classify_reqwest_any(any: &dyn Any) -> Option<HttpFailureClass> {
    if let Some(e) = any.downcast_ref::<reqwest_middleware::Error>() {
        Some(classify_middleware_error(e))
    } else {
        any.downcast_ref::<reqwest::Error>()
            .map(classify_reqwest_error)
    }
}

#[cfg(not(feature = "reqwest"))]
fn classify_reqwest_any(_: &dyn Any) -> Option<HttpFailureClass> {
    None
}

#[cfg(feature = "reqwest")]
pub(crate) fn classify_middleware_error(e: &reqwest_middleware::Error) -> HttpFailureClass {
    match e {
        reqwest_middleware::Error::Reqwest(e) => classify_reqwest_error(e),
        reqwest_middleware::Error::Middleware(e) => classify_std_error(e.as_ref()),
    }
}

#[cfg(feature = "reqwest")]
fn classify_reqwest_error(e: &reqwest::Error) -> HttpFailureClass {
    if e.is_timeout() {
        HttpFailureClass::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        HttpFailureClass::Connection
    } else {
        HttpFailureClass::Error(e.to_string())
    }
}

/// Walks an error's `source` chain for the kinds this crate knows.
pub(crate) fn classify_std_error(err: &(dyn StdError + 'static)) -> HttpFailureClass {
    error::chain(err)
        .find_map(classify_link)
        .unwrap_or_else(|| HttpFailureClass::Error(err.to_string()))
}

/// What one link of an error chain says, when it is a kind this crate knows.
fn classify_link(e: &(dyn StdError + 'static)) -> Option<HttpFailureClass> {
    if let Some(e) = e.downcast_ref::<crate::Error>() {
        return Some(match e {
            crate::Error::Inner(inner) => classify_std_error(&**inner),
            crate::Error::InjectedFault(e) => classify_std_error(e),
            crate::Error::Timeout(_) => HttpFailureClass::Timeout,
            crate::Error::DeadlineExceeded(_) => HttpFailureClass::DeadlineExceeded,
            _ => HttpFailureClass::Rejected,
        });
    }
    if error::is_rejection(e) {
        return Some(HttpFailureClass::Rejected);
    }
    if e.is::<Elapsed>() {
        return Some(HttpFailureClass::Timeout);
    }
    if e.is::<DeadlineExceeded>() {
        return Some(HttpFailureClass::DeadlineExceeded);
    }
    #[cfg(feature = "reqwest")]
    if let Some(e) = e.downcast_ref::<reqwest::Error>() {
        return Some(classify_reqwest_error(e));
    }
    // Its variants are `#[error(transparent)]`: the chain skips the error they wrap, so look
    // inside here rather than further down.
    #[cfg(feature = "reqwest")]
    if let Some(e) = e.downcast_ref::<reqwest_middleware::Error>() {
        return Some(classify_middleware_error(e));
    }
    let e = e.downcast_ref::<std::io::Error>()?;
    use std::io::ErrorKind::*;
    match e.kind() {
        TimedOut => Some(HttpFailureClass::Timeout),
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
        | UnexpectedEof => Some(HttpFailureClass::Connection),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(status: u16) -> Response<()> {
        Response::builder().status(status).body(()).unwrap()
    }

    #[test]
    fn statuses_follow_the_table() {
        let c = HttpClassifier::new();
        for (status, want) in [
            (200, Outcome::Success),
            (201, Outcome::Success),
            (304, Outcome::Success),
            (400, Outcome::Success),
            (404, Outcome::Success),
            (409, Outcome::Success),
            (422, Outcome::Success),
            (408, Outcome::Failure),
            (429, Outcome::Failure),
            (500, Outcome::Failure),
            (502, Outcome::Failure),
            (503, Outcome::Failure),
            (504, Outcome::Failure),
        ] {
            let got = Classify::<_, BoxError>::classify(&c, Ok(&res(status)));
            assert_eq!(got, want, "status {status}");
        }
    }

    #[test]
    fn tower_http_view_has_typed_class() {
        let c = HttpClassifier::new();
        match c.classify_response(&res(429)) {
            ClassifiedResponse::Ready(Err(HttpFailureClass::Status(s))) => {
                assert_eq!(s, StatusCode::TOO_MANY_REQUESTS)
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            c.classify_response(&res(404)),
            ClassifiedResponse::Ready(Ok(()))
        ));
        let err: BoxError = Box::new(Elapsed::new(Duration::from_millis(5)));
        assert_eq!(c.classify_error(&err), HttpFailureClass::Timeout);
    }

    #[test]
    fn errors_are_failures_but_rejections_are_ignored() {
        let c = HttpClassifier::new();
        let open: BoxError = Box::new(crate::error::CircuitOpen::new("u", Duration::from_secs(1)));
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&c, Err(&open)),
            Outcome::Ignored
        );
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            HttpClassifier::classify_any_error(&refused),
            HttpFailureClass::Connection
        );
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&c, Err(&refused)),
            Outcome::Failure
        );
        let other: BoxError = "boom".into();
        assert_eq!(
            HttpClassifier::classify_any_error(&other),
            HttpFailureClass::Error("boom".into())
        );
        #[cfg(feature = "reqwest")]
        {
            let mw = reqwest_middleware::Error::middleware(crate::error::BulkheadFull::new("b", 2));
            assert_eq!(
                HttpClassifier::classify_any_error(&mw),
                HttpFailureClass::Rejected
            );
        }
    }

    #[test]
    fn the_callers_deadline_is_ignored_and_never_retried() {
        let c = HttpClassifier::new();
        let err: BoxError = Box::new(DeadlineExceeded::new(Duration::from_millis(5)));
        assert_eq!(
            HttpClassifier::classify_any_error(&err),
            HttpFailureClass::DeadlineExceeded
        );
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&c, Err(&err)),
            Outcome::Ignored
        );
        assert!(!HttpFailureClass::DeadlineExceeded.is_retryable());
        let wrapped = crate::Error::Inner(err);
        assert_eq!(
            classify_std_error(&wrapped),
            HttpFailureClass::DeadlineExceeded
        );
        // An attempt timeout is the upstream being slow: still a failure.
        let slow: BoxError = Box::new(Elapsed::new(Duration::from_millis(5)));
        assert_eq!(
            Classify::<Response<()>, BoxError>::classify(&c, Err(&slow)),
            Outcome::Failure
        );
    }

    #[test]
    fn a_504_answers_our_budget_when_it_used_it_up_or_says_so() {
        let ms = Duration::from_millis;
        let deadline = Some(DEADLINE_EXCEEDED_TYPE);
        let gateway = StatusCode::GATEWAY_TIMEOUT;
        // The budget we sent was used up: the callee ran out of our time.
        assert!(answers_our_budget(gateway, ms(0), ms(0), None));
        assert!(answers_our_budget(gateway, ms(20), ms(21), None));
        // Refused at once because the budget was too short for the callee (its floor).
        assert!(answers_our_budget(gateway, ms(5), ms(1), deadline));
        // A 504 for its own reasons with our budget left: the callee (or its dependency) was
        // slow, which is the callee's health.
        assert!(!answers_our_budget(gateway, ms(2_000), ms(300), None));
        assert!(!answers_our_budget(
            gateway,
            ms(2_000),
            ms(300),
            Some("urn:resilience:timeout")
        ));
        // Other statuses are never about our deadline.
        assert!(!answers_our_budget(
            StatusCode::SERVICE_UNAVAILABLE,
            ms(0),
            ms(5),
            deadline
        ));
    }

    #[test]
    fn permanent_failures_count_but_are_not_retried() {
        let c = HttpClassifier::new();
        for (status, failure, retry) in [
            (200, false, false),
            (404, false, false),
            (408, true, true),
            (429, true, true),
            (500, true, true),
            (501, true, false),
            (502, true, true),
            (503, true, true),
            (504, true, true),
            (505, true, false),
        ] {
            let r = res(status);
            let outcome = Classify::<_, BoxError>::classify(&c, Ok(&r));
            assert_eq!(outcome.is_failure(), failure, "status {status}");
            let retryable = Classify::<_, BoxError>::is_retryable(&c, Ok(&r));
            assert_eq!(retryable, retry, "status {status}");
        }
        let refused: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(Classify::<Response<()>, BoxError>::is_retryable(
            &c,
            Err(&refused)
        ));
        let open: BoxError = Box::new(crate::error::CircuitOpen::new("u", Duration::from_secs(1)));
        assert!(!Classify::<Response<()>, BoxError>::is_retryable(
            &c,
            Err(&open)
        ));
        // A reqwest-middleware error boxed by the stack is looked inside.
        #[cfg(feature = "reqwest")]
        {
            let boxed: BoxError = Box::new(reqwest_middleware::Error::middleware(
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            ));
            assert_eq!(
                HttpClassifier::classify_any_error(&boxed),
                HttpFailureClass::Connection
            );
        }
    }

    #[test]
    fn retryable_classes() {
        assert!(HttpFailureClass::Timeout.is_retryable());
        assert!(HttpFailureClass::Connection.is_retryable());
        assert!(HttpFailureClass::Status(StatusCode::BAD_GATEWAY).is_retryable());
        assert!(!HttpFailureClass::Status(StatusCode::NOT_IMPLEMENTED).is_retryable());
        assert!(!HttpFailureClass::Rejected.is_retryable());
    }
}
