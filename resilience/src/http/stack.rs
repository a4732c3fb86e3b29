//! The stack with the HTTP hooks in place: for a tower client, and for an axum route.

use std::{fmt::Display, hash::Hash, time::Duration};

#[cfg(all(doc, feature = "reqwest"))]
use super::ResilienceMiddleware;
use super::{HttpClassifier, HttpRetryAfter, IdempotentRequests};
#[cfg(doc)]
use super::{PropagateDeadlineLayer, is_retry_safe};
use crate::{
    keyed::KeyedLayer,
    stack::{ResilienceLayer, SendOnce},
};

/// `Retry-After` for a client stack: waited for up to the backoff's `max` (the default cap
/// without retry, where it is never asked).
fn retry_after_up_to(backoff_max: Option<Duration>) -> HttpRetryAfter {
    backoff_max.map_or(HttpRetryAfter::new(), |max| {
        HttpRetryAfter::new().with_max(max)
    })
}

impl ResilienceLayer {
    /// The stack for an HTTP client service (a `tower` client over `http::Request`):
    /// [`HttpClassifier`] for the breaker and retry (`501` and `505` count against the breaker
    /// and are not retried), `Retry-After` honoured up to the backoff's `max` (a longer one
    /// gives up at once), and only [retry-safe](is_retry_safe) requests sent again. Add a
    /// [`PropagateDeadlineLayer`] inside it to send the deadline downstream.
    ///
    /// [`ResilienceMiddleware`] runs this same stack, with the upstream host's breaker in the
    /// breaker's place.
    ///
    /// ```
    /// use resilience_layers::stack::StackConfig;
    ///
    /// let layer = StackConfig::default().into_layer("users").unwrap().for_http();
    /// # let _ = layer;
    /// ```
    pub fn for_http(self) -> ResilienceLayer<HttpClassifier, HttpRetryAfter, IdempotentRequests> {
        let retry_after = retry_after_up_to(self.retry().map(|r| r.config().backoff.max));
        self.with_classifier(HttpClassifier::new())
            .with_retry_after(retry_after)
            .with_clone_request(IdempotentRequests)
    }

    /// The stack for a server route: [`HttpClassifier`] for the breaker, and no request is
    /// ever sent twice (bodies are streams). Put a [`ProblemLayer`](super::ProblemLayer)
    /// outside it.
    ///
    /// # What a breaker on the server means
    ///
    /// On a client, a breaker guards one upstream. On a server it guards the route itself: it
    /// counts the route's own answers (a `5xx` or an attempt timeout is a failure; a `4xx` is
    /// the caller's problem and counts as a success) and, once the route keeps failing (its
    /// database is down, a dependency it calls is out), it opens: the route answers `503`
    /// with `Retry-After` at once, without running the handler. That takes the load off
    /// whatever the route is failing on, so it can recover, and gives callers a fast answer
    /// their own retry and breakers understand, instead of a pile of slow `500`s. After the
    /// wait in open, a few requests run the handler again as probes, and their success closes
    /// the circuit. The bulkhead, deadline and attempt timeout of the same stack bound the
    /// route's concurrency and time.
    ///
    /// Apply it per route (`MethodRouter::route_layer`, one stack built per route, each under
    /// its own name), not to a whole `Router` with `layer`: a breaker around the router would
    /// let one failing route `503` every route, and the fallback's `404`s too.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
    /// use resilience_layers::{http::ProblemLayer, stack::StackConfig};
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: StackConfig = toml::from_str(r#"
    ///     [circuit_breaker]
    ///     consecutive_failures = 2
    ///     wait_in_open = "30s"
    /// "#)?;
    /// let stack = config.into_layer("get-report")?.for_server();
    /// let breaker = stack.circuit_breaker().expect("configured"); // for /health/ready
    ///
    /// // A route whose database is down.
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// let counted = runs.clone();
    /// let report = get(move || async move {
    ///     counted.fetch_add(1, Ordering::SeqCst);
    ///     (StatusCode::INTERNAL_SERVER_ERROR, "database down")
    /// });
    /// let app = Router::new()
    ///     .route("/reports/{id}", report.route_layer(
    ///         ServiceBuilder::new().layer(ProblemLayer::new()).layer(stack),
    ///     ))
    ///     .route("/health/live", get(|| async { "ok" }));
    /// let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    ///
    /// for _ in 0..2 {
    ///     assert_eq!(app.clone().oneshot(get("/reports/7")).await?.status(), 500);
    /// }
    /// // Open: the handler no longer runs, and callers are told when to come back.
    /// let res = app.clone().oneshot(get("/reports/7")).await?;
    /// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// assert!(res.headers().contains_key("retry-after"));
    /// assert_eq!(runs.load(Ordering::SeqCst), 2);
    /// assert_eq!(breaker.state(), resilience_layers::circuit_breaker::CircuitState::Open);
    /// // The other routes, and paths no route matches, are untouched.
    /// assert_eq!(app.clone().oneshot(get("/health/live")).await?.status(), 200);
    /// assert_eq!(app.oneshot(get("/nowhere")).await?.status(), 404);
    /// # Ok(()) }
    /// ```
    pub fn for_server(self) -> ResilienceLayer<HttpClassifier, (), SendOnce> {
        self.with_classifier(HttpClassifier::new())
            .with_clone_request(SendOnce)
    }
}

impl<Key, KeyFn> KeyedLayer<Key, KeyFn>
where
    Key: Hash + Eq + Clone + Display,
{
    /// Every key's stack as [`ResilienceLayer::for_http`] makes it: for a tower HTTP client
    /// keyed by host (or tenant, or route).
    ///
    /// ```
    /// use resilience_layers::{keyed::{KeyedConfig, KeyedLayer}, stack::StackConfig};
    ///
    /// let config: StackConfig = toml::from_str("[circuit_breaker]").unwrap();
    /// let by_host = |req: &http::Request<String>| req.uri().host().unwrap_or("").to_owned();
    /// let layer = KeyedLayer::new("webhooks", config, KeyedConfig::default(), by_host)
    ///     .unwrap()
    ///     .for_http();
    /// # let _ = layer;
    /// ```
    pub fn for_http(
        self,
    ) -> KeyedLayer<Key, KeyFn, HttpClassifier, HttpRetryAfter, IdempotentRequests> {
        let retry_after = retry_after_up_to(self.config().retry.as_ref().map(|r| r.backoff.max));
        self.with_classifier(HttpClassifier::new())
            .with_retry_after(retry_after)
            .with_clone_request(IdempotentRequests)
    }

    /// Every key's stack as [`ResilienceLayer::for_server`] makes it: for a route keyed by
    /// tenant, say, so one tenant's failures open only that tenant's circuit.
    pub fn for_server(self) -> KeyedLayer<Key, KeyFn, HttpClassifier, (), SendOnce> {
        self.with_classifier(HttpClassifier::new())
            .with_clone_request(SendOnce)
    }
}
