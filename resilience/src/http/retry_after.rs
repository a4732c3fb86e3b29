//! `Retry-After`: the upstream's own word on when to come back.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER};

use crate::retry::{GIVE_UP, RetryAfter};

/// Reads `Retry-After` from a `429` or `503` response, in either form RFC 9110 allows:
/// delta-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`, measured from
/// `now`; a date in the past means zero).
///
/// Returns `None` for other statuses, a missing header, or a value that parses as neither:
/// garbage is ignored and the usual backoff applies.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::{HeaderMap, StatusCode};
/// use resilience_layers::http::retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "3".parse().unwrap());
/// let now = SystemTime::now();
/// assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers, now), Some(Duration::from_secs(3)));
/// assert_eq!(retry_after(StatusCode::INTERNAL_SERVER_ERROR, &headers, now), None);
/// ```
pub fn retry_after(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    parse_retry_after(headers.get(RETRY_AFTER)?, now)
}

/// Parses one `Retry-After` value (delta-seconds or HTTP-date, relative to `now`).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderValue;
/// use resilience_layers::http::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000); // Sun, 09 Sep 2001 01:46:40 GMT
/// let date = HeaderValue::from_static("Sun, 09 Sep 2001 01:46:45 GMT");
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(5)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values instead of rejecting them: "wait forever" is still an answer.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The retry's [`RetryAfter`] hook for HTTP: reads `Retry-After` from `429` and `503`
/// responses ([`http::Response`] and [`reqwest::Response`]), both forms, garbage ignored.
///
/// Retry ([`RetryPolicy`](crate::retry::RetryPolicy)) then waits at least that long (the
/// larger of it and the backoff), and gives up at once when that would pass the deadline or
/// when the value is above the cap ([`with_max`](Self::with_max), default 30 s;
/// [`ResilienceLayer::for_http`](crate::stack::ResilienceLayer::for_http), and so
/// [`ResilienceMiddleware`](super::ResilienceMiddleware), use the backoff's `max`): the hook
/// answers [`GIVE_UP`](crate::retry::GIVE_UP) then. Waiting less than the upstream asked would
/// only be refused again.
///
/// ```
/// use std::time::Duration;
/// use http::Response;
/// use resilience_layers::{http::HttpRetryAfter, retry::RetryAfter};
///
/// let res = Response::builder().status(429).header("retry-after", "2").body(()).unwrap();
/// let hint = RetryAfter::<_, std::io::Error>::retry_after(&HttpRetryAfter::new(), Ok(&res));
/// assert_eq!(hint, Some(Duration::from_secs(2)));
///
/// // Above the cap: give up rather than wait less than asked.
/// let res = Response::builder().status(503).header("retry-after", "3600").body(()).unwrap();
/// let hint = RetryAfter::<_, std::io::Error>::retry_after(&HttpRetryAfter::new(), Ok(&res));
/// assert_eq!(hint, Some(resilience_layers::retry::GIVE_UP));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRetryAfter {
    max: Duration,
}

impl Default for HttpRetryAfter {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpRetryAfter {
    /// Reads `Retry-After`, giving up on values above 30 s.
    pub const fn new() -> Self {
        Self {
            max: Duration::from_secs(30),
        }
    }

    /// Gives up on hints above `max` instead.
    #[must_use]
    pub const fn with_max(self, max: Duration) -> Self {
        Self { max }
    }

    fn hint(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        retry_after(status, headers, SystemTime::now())
            .map(|d| if d > self.max { GIVE_UP } else { d })
    }
}

impl<B, E> RetryAfter<http::Response<B>, E> for HttpRetryAfter {
    fn retry_after(&self, result: Result<&http::Response<B>, &E>) -> Option<Duration> {
        let res = result.ok()?;
        self.hint(res.status(), res.headers())
    }
}

#[cfg(feature = "reqwest")]
impl<E> RetryAfter<reqwest::Response, E> for HttpRetryAfter {
    fn retry_after(&self, result: Result<&reqwest::Response, &E>) -> Option<Duration> {
        let res = result.ok()?;
        self.hint(res.status(), res.headers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn headers(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn both_forms_and_garbage() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let s = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(retry_after(s, &headers("0"), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(s, &headers(" 7 "), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(s, &headers("Wed, 21 Oct 2015 07:28:09 GMT"), now),
            Some(Duration::from_secs(9))
        );
        // A date in the past: come back now.
        assert_eq!(
            retry_after(s, &headers("Wed, 21 Oct 2015 07:27:00 GMT"), now),
            Some(Duration::ZERO)
        );
        for junk in ["", "-1", "1.5", "soon", "Wed, 99 Oct 2015"] {
            assert_eq!(retry_after(s, &headers(junk), now), None, "{junk:?}");
        }
        assert_eq!(
            retry_after(s, &headers("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(retry_after(s, &HeaderMap::new(), now), None);
        // Only 429 and 503 carry a meaningful Retry-After for retries.
        assert_eq!(retry_after(StatusCode::OK, &headers("3"), now), None);
        assert_eq!(
            retry_after(StatusCode::BAD_GATEWAY, &headers("3"), now),
            None
        );
    }
}
