//! HTTP integration (feature `http`): what counts as a failure, `Retry-After`, idempotency,
//! deadline propagation, and rejections as `application/problem+json` on an axum server; with
//! the `reqwest` feature, the whole stack on a reqwest client.
//!
//! The pieces, and why each exists:
//!
//! - [`HttpClassifier`] — one answer, shared by the breaker and retry, to "did the upstream
//!   fail?": `5xx`, `408`, `429`, timeouts and connection errors yes; other `4xx` no (they are
//!   the caller's problem and would fail again). It is a tower-http
//!   [`ClassifyResponse`](tower_http::classify::ClassifyResponse) with a typed failure class.
//! - [`retry_after`] / [`HttpRetryAfter`] — the upstream knows best when to come back:
//!   `Retry-After` (seconds or HTTP-date) on `429`/`503` is a minimum delay; past the
//!   deadline, give up at once.
//! - [`is_retry_safe`] / [`IdempotentRequests`] — only requests safe to repeat are repeated:
//!   idempotent methods, or `POST`/`PATCH` with an [`IDEMPOTENCY_KEY`], sent unchanged.
//! - [`DEADLINE_HEADER`] / [`AcceptDeadlineLayer`] / [`PropagateDeadlineLayer`] — the
//!   caller's remaining time travels downstream (`x-request-deadline-ms: <ms>`), so a callee
//!   stops working for a caller that has already given up.
//! - [`ResilienceMiddleware`] (feature `reqwest`) — bulkhead, deadline, retry, a breaker per upstream host and an
//!   attempt timeout around every `reqwest_middleware` call, built from a
//!   [`StackConfig`](crate::stack::StackConfig).
//! - [`ProblemLayer`] — on the server, turns every rejection into the right status
//!   (`503` + `Retry-After`, `504`, `500`) with an RFC 9457 body, and keeps the service
//!   `Infallible` for axum.
//!
//! # A reqwest client (feature `reqwest`)
//!
#![cfg_attr(feature = "reqwest", doc = "```no_run")]
#![cfg_attr(not(feature = "reqwest"), doc = "```ignore")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use resilience_layers::{http::ResilienceMiddleware, stack::StackConfig};
//!
//! let config: StackConfig = toml::from_str(r#"
//!     deadline = "2s"
//!     attempt_timeout = "500ms"
//!     [retry]
//!     max_attempts = 3
//!     [circuit_breaker]
//! "#)?;
//! let resilience = ResilienceMiddleware::from_config("user-service", &config)?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(resilience.clone()) // keep `resilience` for `resilience.snapshot()`
//!     .build();
//! let user = client.get("http://127.0.0.1:5001/users/1").send().await?;
//! # let _ = user; Ok(()) }
//! ```
//!
//! Errors the stack adds come back as `reqwest_middleware::Error::Middleware`; match them
//! with [`rejection`] (or convert with [`into_error`]).
//!
//! # An axum router
//!
//! The caller's deadline goes around the whole router; a stack goes on each route with
//! `route_layer`, each built under its own name, so that each has its own breaker and
//! bulkhead: one failing route then opens only its own circuit, and paths no route matches
//! stay plain `404`s instead of `503`s.
//!
//! ```
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use resilience_layers::{http::{AcceptDeadlineLayer, ProblemLayer}, stack::StackConfig};
//! use tower::ServiceBuilder;
//!
//! let config: StackConfig = toml::from_str(r#"
//!     attempt_timeout = "2s"
//!     [bulkhead]
//!     max_concurrent = 64
//!     [circuit_breaker]
//! "#)?;
//! let guarded = |route: &str| -> Result<_, resilience_layers::config::ConfigError> {
//!     Ok(ServiceBuilder::new()
//!         .layer(ProblemLayer::new()) // rejections -> 503 / 504 problem+json
//!         .layer(config.clone().into_layer(route)?.for_server()))
//! };
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }).route_layer(guarded("get-user")?))
//!     .route("/users", get(|| async { "users" }).route_layer(guarded("list-users")?))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(ProblemLayer::new())
//!             // honour the caller's deadline header; refuse one too short to do any work
//!             .layer(AcceptDeadlineLayer::new().with_min_budget(Duration::from_millis(10))),
//!     );
//! # let _ = app; Ok(()) }
//! # run().unwrap();
//! ```

mod classify;
mod deadline;
mod idempotency;
#[cfg(feature = "reqwest")]
mod middleware;
mod problem;
mod rate_limit;
#[cfg(feature = "reqwest")]
mod registry;
mod retry_after;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use self::middleware::{
    ResilienceMiddleware, ResilienceMiddlewareBuilder, into_error, rejection,
};

pub use self::{
    classify::{HttpClassifier, HttpFailureClass},
    deadline::{
        AcceptDeadline, AcceptDeadlineFuture, AcceptDeadlineLayer, DEADLINE_HEADER,
        PropagateDeadline, PropagateDeadlineLayer, deadline_from_headers, set_deadline_header,
    },
    idempotency::{IDEMPOTENCY_KEY, IdempotentRequests, is_retry_safe},
    problem::{
        BULKHEAD_FULL_TYPE, DEADLINE_EXCEEDED_TYPE, PROBLEM_JSON, Problem, ProblemLayer,
        ProblemService, RATE_LIMITED_TYPE, ResponseFuture,
    },
    rate_limit::{RATE_LIMIT, RATE_LIMIT_POLICY, rate_limit_fields},
    retry_after::{HttpRetryAfter, next_delay, parse_retry_after, retry_after},
};

use crate::stack::{ResilienceLayer, SendOnce};

impl ResilienceLayer {
    /// The stack for an HTTP client service (a `tower` client over `http::Request`):
    /// [`HttpClassifier`] for the breaker and retry, `Retry-After` honoured up to the
    /// backoff's `max` (a longer one gives up, as in [`ResilienceMiddleware`]), and only
    /// [retry-safe](is_retry_safe) requests sent again. Add a [`PropagateDeadlineLayer`]
    /// inside it to send the deadline downstream.
    ///
    /// ```
    /// use resilience_layers::stack::StackConfig;
    ///
    /// let layer = StackConfig::default().into_layer("users").unwrap().for_http();
    /// # let _ = layer;
    /// ```
    pub fn for_http(self) -> ResilienceLayer<HttpClassifier, HttpRetryAfter, IdempotentRequests> {
        let cap = self.retry().map(|r| r.config().backoff.max);
        let retry_after = cap.map_or(HttpRetryAfter::new(), |max| {
            HttpRetryAfter::new().with_max(max)
        });
        self.with_classifier(HttpClassifier::new())
            .with_retry_after(retry_after)
            .with_clone_request(IdempotentRequests)
    }

    /// The stack for a server (an axum router): [`HttpClassifier`] for the breaker, and no
    /// request is ever sent twice (bodies are streams). Put a [`ProblemLayer`] outside it.
    ///
    /// Apply it per route (`MethodRouter::route_layer`, one stack built per route), not to a
    /// whole `Router` with `layer`: a breaker around the router would let one failing route
    /// `503` every route, and the fallback's `404`s too (see the [module docs](self)).
    ///
    /// ```
    /// use resilience_layers::stack::StackConfig;
    ///
    /// let layer = StackConfig::default().into_layer("api").unwrap().for_server();
    /// # let _ = layer;
    /// ```
    pub fn for_server(self) -> ResilienceLayer<HttpClassifier, (), SendOnce> {
        self.with_classifier(HttpClassifier::new())
            .with_clone_request(SendOnce)
    }
}
