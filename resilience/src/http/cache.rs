//! The cache's HTTP side: `Cache-Control` from the upstream decides what is stored and for
//! how long, and answers from the cache carry `Age` and `Cache-Status` (RFC 9211).

use std::{marker::PhantomData, time::Duration};

use http::{HeaderValue, Method, Request, Response, header};
use http_body::Body;

use crate::{
    cache::{CachePolicy, CacheStatus, Freshness, Served},
    fallback::FromFallback,
};

/// The `Cache-Status` header (RFC 9211).
pub const CACHE_STATUS: &str = "cache-status";

/// The [`CachePolicy`] for HTTP responses.
///
/// - **Stored**: only `2xx` answers (a `404` says nothing good to serve stale later), never
///   one a fallback served (marked [`FromFallback`]), and not when `Cache-Control` says
///   `no-store` or `private`; `max-age=N` (or `s-maxage`)
///   fresh for `N` seconds (cut to the configured `ttl`); `no-cache` kept for stale-if-error
///   only, never served fresh.
/// - **Weight**: the body's exact size when it knows it (its lower bound otherwise), plus
///   the headers' bytes.
/// - **Marked**: every answer from the cache gets `Age` (seconds since it was received) and
///   `Cache-Status`: `resilience; hit; ttl=N` for a fresh hit, `resilience; hit; ttl=-N;
///   detail=stale-if-error` (and `Warning: 110 - "Response is Stale"`) for a stale one,
///   `resilience; fwd=miss; collapsed` for a coalesced one; and the [`CacheStatus`] as a
///   response extension.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{cache::{CachePolicy, CacheStatus, Freshness, Served}, http::HttpCachePolicy};
///
/// let policy = HttpCachePolicy::<String>::default();
/// let response = http::Response::builder().header("cache-control", "max-age=5").body(String::new()).unwrap();
/// assert_eq!(policy.freshness(&response), Freshness::For(Duration::from_secs(5)));
///
/// let mut stale = response.clone();
/// let status = CacheStatus { served: Served::Stale, age: Duration::from_secs(65), lifetime: Duration::from_secs(5) };
/// policy.mark(&mut stale, &status);
/// assert_eq!(stale.headers()["age"], "65");
/// assert_eq!(stale.headers()["cache-status"], "resilience; hit; ttl=-60; detail=stale-if-error");
/// assert_eq!(stale.extensions().get::<CacheStatus>(), Some(&status));
/// ```
pub struct HttpCachePolicy<B> {
    body: PhantomData<fn() -> B>,
}

impl<B> Default for HttpCachePolicy<B> {
    fn default() -> Self {
        Self { body: PhantomData }
    }
}

impl<B> Clone for HttpCachePolicy<B> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<B> std::fmt::Debug for HttpCachePolicy<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpCachePolicy")
    }
}

impl<B: Body> CachePolicy<Response<B>> for HttpCachePolicy<B> {
    fn weigh(&self, response: &Response<B>) -> u64 {
        let hint = response.body().size_hint();
        let body = hint.exact().unwrap_or(hint.lower());
        let headers: usize = response
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        body.saturating_add(headers as u64)
    }

    fn freshness(&self, response: &Response<B>) -> Freshness {
        // A degraded answer is for this caller only: stored, it would be served as the
        // dependency's own answer after the dependency is back.
        if !response.status().is_success() || response.extensions().get::<FromFallback>().is_some()
        {
            return Freshness::NoStore;
        }
        cache_control_freshness(response.headers())
    }

    fn mark(&self, response: &mut Response<B>, status: &CacheStatus) {
        let headers = response.headers_mut();
        headers.insert(header::AGE, HeaderValue::from(status.age.as_secs()));
        let value = match status.served {
            Served::Hit => format!("resilience; hit; ttl={}", status.ttl_secs()),
            Served::Stale => format!(
                "resilience; hit; ttl={}; detail=stale-if-error",
                status.ttl_secs()
            ),
            Served::Coalesced => "resilience; fwd=miss; collapsed".to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(CACHE_STATUS, value);
        }
        if status.served == Served::Stale {
            headers.insert(
                header::WARNING,
                HeaderValue::from_static("110 - \"Response is Stale\""),
            );
        }
        response.extensions_mut().insert(*status);
    }
}

/// Reads `Cache-Control`: `no-store` and `private` are not stored, `no-cache` is kept for
/// stale-if-error only, `s-maxage` then `max-age` bound the freshness.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{cache::Freshness, http::cache_control_freshness};
///
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(cache_control_freshness(&headers), Freshness::Default);
/// headers.insert("cache-control", "public, max-age=30".parse().unwrap());
/// assert_eq!(cache_control_freshness(&headers), Freshness::For(Duration::from_secs(30)));
/// headers.insert("cache-control", "No-Store".parse().unwrap());
/// assert_eq!(cache_control_freshness(&headers), Freshness::NoStore);
/// ```
pub fn cache_control_freshness(headers: &http::HeaderMap) -> Freshness {
    let mut max_age = None;
    let mut s_maxage = None;
    let mut no_cache = false;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (
                    n.trim().to_string(),
                    Some(a.trim().trim_matches('"').to_string()),
                ),
                None => (directive.clone(), None),
            };
            let secs = || arg.as_deref().and_then(|a| a.parse::<u64>().ok());
            match name.as_str() {
                "no-store" | "private" => return Freshness::NoStore,
                "no-cache" => no_cache = true,
                "max-age" => max_age = secs().or(Some(0)),
                "s-maxage" => s_maxage = secs().or(Some(0)),
                _ => {}
            }
        }
    }
    if no_cache {
        return Freshness::For(Duration::ZERO);
    }
    match s_maxage.or(max_age) {
        Some(secs) => Freshness::For(Duration::from_secs(secs)),
        None => Freshness::Default,
    }
}

/// The longest URI [`request_cache_key`] keys on: the key is not counted in the cache's byte
/// bound, so a client sending long URIs could otherwise grow it up to `max_entries` of them.
pub const MAX_CACHE_KEY_URI: usize = 2048;

/// A cache key for HTTP requests: the URI of a `GET` or `HEAD`; `None` (not cached) for any
/// other method, for a URI longer than [`MAX_CACHE_KEY_URI`], and for a request carrying
/// `Authorization` or `Cookie`, whose answer may be that caller's alone (RFC 9111 §3.5: a
/// shared cache must not reuse it for another caller).
///
/// ```
/// use resilience_layers::http::request_cache_key;
///
/// let get = http::Request::get("http://users/users/7").body(()).unwrap();
/// assert_eq!(request_cache_key(&get).as_deref(), Some("GET http://users/users/7"));
/// let post = http::Request::post("http://users/users").body(()).unwrap();
/// assert_eq!(request_cache_key(&post), None);
/// let personal = http::Request::get("http://users/users/7")
///     .header("authorization", "Bearer t")
///     .body(())
///     .unwrap();
/// assert_eq!(request_cache_key(&personal), None);
/// let long = format!("http://users/users/{}", "7".repeat(4096));
/// assert_eq!(request_cache_key(&http::Request::get(long).body(()).unwrap()), None);
/// ```
pub fn request_cache_key<B>(request: &Request<B>) -> Option<String> {
    let cacheable = request.method() == Method::GET || request.method() == Method::HEAD;
    let personal = request.headers().contains_key(header::AUTHORIZATION)
        || request.headers().contains_key(header::COOKIE);
    if !cacheable || personal {
        return None;
    }
    let uri = request.uri().to_string();
    (uri.len() <= MAX_CACHE_KEY_URI).then(|| format!("{} {uri}", request.method()))
}
