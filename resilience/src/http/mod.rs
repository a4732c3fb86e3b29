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
//! - [`ResilienceMiddleware`] (feature `reqwest`) — the same stack as [`for_http`](crate::stack::ResilienceLayer::for_http)
//!   (bulkhead, deadline, retry, a breaker per upstream host, an attempt timeout) around every
//!   `reqwest_middleware` call, built from a [`StackConfig`](crate::stack::StackConfig): one
//!   implementation, so a tower client and a reqwest client decide alike.
//! - [`ResilienceLayer::for_http`](crate::stack::ResilienceLayer::for_http) /
//!   [`for_server`](crate::stack::ResilienceLayer::for_server) — the stack with these hooks in
//!   place, for a tower HTTP client and for an axum route.
//! - [`SimulateLatencyHeader`] — a request asking for its own latency
//!   ([`SIMULATE_LATENCY_HEADER`]) from a [`FaultLayer`](crate::fault::FaultLayer).
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

mod cache;
mod classify;
mod deadline;
mod fallback;
mod idempotency;
mod latency;
#[cfg(feature = "reqwest")]
mod middleware;
mod problem;
mod rate_limit;
mod retry_after;
mod stack;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use self::middleware::{
    ResilienceMiddleware, ResilienceMiddlewareBuilder, into_error, rejection,
};

pub use self::{
    cache::{
        CACHE_STATUS, HttpCachePolicy, MAX_CACHE_KEY_URI, cache_control_freshness,
        request_cache_key,
    },
    classify::{HttpClassifier, HttpFailureClass},
    deadline::{
        AcceptDeadline, AcceptDeadlineFuture, AcceptDeadlineLayer, DEADLINE_HEADER,
        MalformedDeadline, PropagateDeadline, PropagateDeadlineLayer, deadline_from_headers,
        parse_deadline_header, set_deadline_header,
    },
    fallback::{
        FALLBACK_HEADER, MarkedFallback, MarkedFuture, StaticResponse, StaticResponseConfig,
        mark_fallback,
    },
    idempotency::{IDEMPOTENCY_KEY, IdempotentRequests, is_retry_safe},
    latency::{SIMULATE_LATENCY_HEADER, SimulateLatencyHeader},
    problem::{
        BULKHEAD_FULL_TYPE, DEADLINE_EXCEEDED_TYPE, PROBLEM_JSON, ProblemDetails, ProblemLayer,
        ProblemService, RATE_LIMITED_TYPE, ResponseFuture,
    },
    rate_limit::{RATE_LIMIT, RATE_LIMIT_POLICY, rate_limit_fields},
    retry_after::{HttpRetryAfter, parse_retry_after, retry_after},
};
