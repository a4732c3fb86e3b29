//! Which requests are safe to send twice.

use http::{HeaderMap, HeaderName, Method, Request};

use crate::retry::CloneRequest;

/// The `Idempotency-Key` request header (IETF `draft-ietf-httpapi-idempotency-key-header`).
///
/// A `POST` or `PATCH` carrying it promises the server will apply the request at most once
/// per key, so a retry with the same key is safe. The middleware never adds or changes it: the
/// caller picks the key, and every attempt sends it unchanged.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// True when a request may be sent again after a failure.
///
/// `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and `DELETE` are idempotent by definition
/// (RFC 9110 §9.2.2). `POST`, `PATCH` and any other method are retried only when the request
/// carries an [`IDEMPOTENCY_KEY`] header: without one, a failure after the server acted
/// (a lost response) would apply the request twice.
///
/// ```
/// use http::{HeaderMap, Method};
/// use resilience_layers::http::{IDEMPOTENCY_KEY, is_retry_safe};
///
/// let mut headers = HeaderMap::new();
/// assert!(is_retry_safe(&Method::GET, &headers));
/// assert!(!is_retry_safe(&Method::POST, &headers));
/// headers.insert(IDEMPOTENCY_KEY, "order-42".parse().unwrap());
/// assert!(is_retry_safe(&Method::POST, &headers));
/// ```
pub fn is_retry_safe(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// The retry's [`CloneRequest`] hook for HTTP: a request is sent again only when
/// [`is_retry_safe`] says so, as an exact copy (the `Idempotency-Key` included).
///
/// ```
/// use http::{Method, Request};
/// use resilience_layers::{http::IdempotentRequests, retry::CloneRequest};
///
/// let get = Request::get("/users/1").body(String::new()).unwrap();
/// let post = Request::post("/orders").body(String::from("{}")).unwrap();
/// let keyed = Request::post("/orders").header("idempotency-key", "k1").body(String::from("{}")).unwrap();
/// assert!(IdempotentRequests.clone_request(&get).is_some());
/// assert!(IdempotentRequests.clone_request(&post).is_none());
/// assert_eq!(IdempotentRequests.clone_request(&keyed).unwrap().headers()["idempotency-key"], "k1");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct IdempotentRequests;

impl<B: Clone> CloneRequest<Request<B>> for IdempotentRequests {
    fn clone_request(&self, req: &Request<B>) -> Option<Request<B>> {
        is_retry_safe(req.method(), req.headers()).then(|| req.clone())
    }
}

/// For the reqwest middleware, which runs the same stack: a body that is a stream cannot be
/// copied, and such a request is sent once.
#[cfg(feature = "reqwest")]
impl CloneRequest<reqwest::Request> for IdempotentRequests {
    fn clone_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        if is_retry_safe(req.method(), req.headers()) {
            req.try_clone()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_keys() {
        let none = HeaderMap::new();
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, "k".parse().unwrap());
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_retry_safe(&m, &none), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_retry_safe(&m, &none), "{m}");
            assert!(is_retry_safe(&m, &keyed), "{m}");
        }
    }
}
