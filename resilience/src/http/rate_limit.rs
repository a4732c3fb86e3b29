//! The IETF `RateLimit` and `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers),
//! for a rate-limited request's `429`.
//!
//! Both are structured-field lists of one member named after the limiter:
//! `RateLimit-Policy: "search";q=10;w=1` (the quota: `q` requests per window of `w` seconds)
//! and `RateLimit: "search";r=0;t=1` (what is left: `r` requests now, the quota coming back in
//! `t` seconds). `t` is counted as `Retry-After` is ([`ProblemDetails::retry_after_secs`]), so the two
//! always agree.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::ProblemDetails;
use crate::error::RateLimited;

/// `RateLimit`: the limit's current state (`r` left, `t` seconds until it resets).
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `RateLimit-Policy`: the quota (`q` per window of `w` seconds).
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The two fields for a rejection: `(RateLimit-Policy, RateLimit)`.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{Error, http::rate_limit_fields, rate_limit::{RateLimitConfig, RateLimitLayer}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = RateLimitConfig { permits: 10, period: Duration::from_secs(1), burst: Some(1), ..Default::default() };
/// let handle = RateLimitLayer::new("search", config).unwrap().handle();
/// handle.acquire().await.unwrap();
/// let Error::RateLimited(limited) = Error::from_boxed(handle.acquire().await.unwrap_err()) else { panic!() };
/// let (policy, state) = rate_limit_fields(&limited);
/// assert_eq!(policy, r#""search";q=10;w=1"#);
/// assert_eq!(state, r#""search";r=0;t=1"#);
/// # }
/// ```
pub fn rate_limit_fields(limited: &RateLimited) -> (HeaderValue, HeaderValue) {
    let name = sf_string(limited.name());
    let (quota, window) = quota_per_window(limited.permits(), limited.period());
    let reset = ProblemDetails::retry_after_secs(limited.retry_after());
    let policy = format!("{name};q={quota};w={window}");
    let state = format!("{name};r=0;t={reset}");
    (
        HeaderValue::try_from(policy).expect("an sf-string and integers are a valid value"),
        HeaderValue::try_from(state).expect("an sf-string and integers are a valid value"),
    )
}

/// The quota as whole requests per whole seconds, which the fields require: the window is
/// the period rounded up to a second, and the quota what the limiter lets through in that
/// window at its sustained rate, rounded down (so a client keeping to it is never refused).
fn quota_per_window(permits: u32, period: Duration) -> (u64, u64) {
    let window = (period.as_secs() + u64::from(period.subsec_nanos() > 0)).max(1);
    let quota = u128::from(permits) * u128::from(window) * 1_000_000_000 / period.as_nanos().max(1);
    (u64::try_from(quota).unwrap_or(u64::MAX), window)
}

/// `name` as a structured-field string: quoted, `"` and `\` escaped, anything outside
/// printable ASCII (which an sf-string cannot hold) replaced by `?`.
fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_whole_requests_per_whole_seconds() {
        assert_eq!(quota_per_window(10, Duration::from_secs(1)), (10, 1));
        assert_eq!(quota_per_window(100, Duration::from_secs(60)), (100, 60));
        // 10 per 100 ms is 100 a second.
        assert_eq!(quota_per_window(10, Duration::from_millis(100)), (100, 1));
        // 5 per 1.5 s: a 2 s window holds 6 (6.67 rounded down).
        assert_eq!(quota_per_window(5, Duration::from_millis(1_500)), (6, 2));
    }

    #[test]
    fn names_are_escaped_as_sf_strings() {
        assert_eq!(sf_string("api"), r#""api""#);
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf_string("café"), r#""caf?""#);
    }
}
