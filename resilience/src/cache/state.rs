//! What one stored answer is, and when it may be served: plain values, no tokio task in them.

use std::time::Duration;

use tokio::time::Instant;

/// How an answer from the cache came about; the [`CachePolicy::mark`] hook receives it (with
/// the `http` feature, as the `Age` and `Cache-Status` headers and a response extension).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::cache::{CacheStatus, Served};
///
/// let status = CacheStatus { served: Served::Stale, age: Duration::from_secs(90), lifetime: Duration::from_secs(60) };
/// assert_eq!(status.ttl_secs(), -30); // RFC 9211's `ttl`: negative once stale
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    /// Which kind of answer this is.
    pub served: Served,
    /// How long ago the answer was received from the inner service.
    pub age: Duration,
    /// How long the answer was fresh for when stored.
    pub lifetime: Duration,
}

impl CacheStatus {
    /// Seconds of freshness left, negative once stale (RFC 9211 `ttl`).
    pub fn ttl_secs(&self) -> i64 {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        secs(self.lifetime) - secs(self.age)
    }
}

/// The kinds of answers that did not come from a call of this request's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Served {
    /// A fresh stored answer: no call made.
    Hit,
    /// A stored answer past its freshness, served because the call failed (stale-if-error).
    Stale,
    /// The answer of a concurrent call for the same key, which this request waited for.
    Coalesced,
}

impl Served {
    /// The `result` label of `resilience_cache_requests_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Hit => "hit",
            Served::Stale => "stale",
            Served::Coalesced => "coalesced",
        }
    }
}

/// Whether, and for how long, an answer may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Store it for the configured `ttl`.
    Default,
    /// Store it fresh for at most this long (an upstream's `max-age`); cut to the configured
    /// `ttl`, and zero means stored only for stale-if-error.
    For(Duration),
    /// Do not store it (`no-store`).
    NoStore,
}

/// What the cache needs to know about a response type: its weight in bytes, whether it may be
/// stored, and how to mark an answer that came from the cache.
///
/// Every method has a default: the weight is `size_of::<Response>()`, every answer is
/// stored for the configured `ttl`, and answers are not marked. [`DefaultPolicy`] uses them
/// all; [`HttpCachePolicy`](crate::http::HttpCachePolicy) (feature `http`) reads
/// `Cache-Control` and writes `Age` and `Cache-Status`.
///
/// ```
/// use resilience_layers::cache::CachePolicy;
///
/// #[derive(Clone)]
/// struct ByLength;
/// impl CachePolicy<String> for ByLength {
///     fn weigh(&self, response: &String) -> u64 { response.len() as u64 }
/// }
/// assert_eq!(ByLength.weigh(&"four".to_string()), 4);
/// ```
pub trait CachePolicy<Response> {
    /// The bytes `response` counts for against `max_bytes`.
    fn weigh(&self, response: &Response) -> u64 {
        let _ = response;
        std::mem::size_of::<Response>() as u64
    }

    /// Whether `response` (a success, as the classifier says) may be stored, and how long.
    fn freshness(&self, response: &Response) -> Freshness {
        let _ = response;
        Freshness::Default
    }

    /// Marks an answer served from the cache (a copy of the stored one).
    fn mark(&self, response: &mut Response, status: &CacheStatus) {
        let _ = (response, status);
    }
}

/// The [`CachePolicy`] with every default: weight `size_of`, stored for `ttl`, unmarked.
///
/// ```
/// use resilience_layers::cache::{CachePolicy, DefaultPolicy, Freshness};
///
/// assert_eq!(DefaultPolicy.weigh(&0u64), 8);
/// assert_eq!(DefaultPolicy.freshness(&0u64), Freshness::Default);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl<Response> CachePolicy<Response> for DefaultPolicy {}

/// One stored answer, with the times that decide what it may be used for.
#[derive(Debug)]
pub(crate) struct Entry<Response> {
    pub(crate) response: Response,
    pub(crate) stored: Instant,
    /// Fresh until `stored + lifetime`.
    pub(crate) lifetime: Duration,
    /// Servable on error until `stored + lifetime + stale_if_error`.
    pub(crate) stale_if_error: Duration,
    /// What the weigher said, before the floor that bounds the entry count.
    pub(crate) bytes: u64,
    /// What the entry counts for against the capacity.
    pub(crate) weight: u32,
}

impl<Response> Entry<Response> {
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored) < self.lifetime
    }

    pub(crate) fn is_servable_stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored)
            < self.lifetime.saturating_add(self.stale_if_error)
    }

    pub(crate) fn status(&self, served: Served, now: Instant) -> CacheStatus {
        CacheStatus {
            served,
            age: now.saturating_duration_since(self.stored),
            lifetime: self.lifetime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_then_gone() {
        let entry = Entry {
            response: (),
            stored: Instant::now(),
            lifetime: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(5),
            bytes: 0,
            weight: 1,
        };
        let at = |s| entry.stored + Duration::from_secs(s);
        assert!(entry.is_fresh(at(9)));
        assert!(!entry.is_fresh(at(10)));
        assert!(entry.is_servable_stale(at(14)));
        assert!(!entry.is_servable_stale(at(15)));
        assert_eq!(entry.status(Served::Stale, at(12)).ttl_secs(), -2);
    }
}
