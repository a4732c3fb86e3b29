//! Tower layers that keep a service standing when its dependencies do not.
//!
//! A dependency that slows down or fails takes its callers with it: threads pile up waiting,
//! retries multiply the load on something already down, and users wait for timeouts instead
//! of getting a quick answer. This crate gives a tower service the classic defences, each
//! a [`tower::Layer`] usable alone, and one composed stack built from one config value:
//!
//! | layer | module | what it prevents |
//! |---|---|---|
//! | circuit breaker | [`circuit_breaker`] | calling a dependency that is known to be failing; fails fast instead |
//! | retry with budget | [`retry`] | giving up on a transient failure, without ever multiplying an outage's load |
//! | total deadline | [`deadline`] | no call, retries included, outlives the caller's patience; the time left travels downstream |
//! | attempt timeout | [`timeout`] | waiting forever on one hung attempt |
//! | bulkhead | [`bulkhead`] | one slow dependency taking every task and connection; with `adaptive`, a limit that finds the dependency's knee from latency |
//! | fallback | [`fallback`] | an error where a degraded answer would do: answers chosen outcomes from a closure, a service or a static response, and says so |
//! | keyed | [`keyed`] | one failing host or noisy tenant taking the others with it: a stack per key, in a bounded registry |
//! | rate limiter | [`rate_limit`] | more calls per second than a server can serve or an upstream allows; sheds or paces them |
//! | cache | [`cache`] | a round trip for an answer seen moments ago, and an error when a recent good answer exists (stale-if-error); concurrent misses make one call |
//! | hedge | [`hedge`] | one slow attempt setting the tail latency: a second attempt after a delay, the first good answer wins |
//! | fault injection | [`fault`] | finding out in production what a slow or failing dependency does: latency and errors on demand |
//!
//! What counts as a failure is decided once, by a [`Classify`] value shared by the breaker and
//! retry ([`classify`]); HTTP responses are classified by the `http` feature ([`http`]
//! module: tower-http classification, `Retry-After`, idempotency, an axum layer that answers
//! rejections with `application/problem+json`, and with the `reqwest` feature a
//! reqwest-middleware client).
//!
//! # Features, and the versions the integrations are built for
//!
//! | feature | what it adds | the crates its API uses |
//! |---|---|---|
//! | *(none)* | every layer, the stack, its config | `tower` 0.5, `tokio` 1 |
//! | `http` | HTTP classification, `Retry-After`, idempotency, deadline headers, the server side (axum) | `http` 1, `tower-http` 0.6 |
//! | `reqwest` | the reqwest client middleware (implies `http`) | `reqwest` 0.13, `reqwest-middleware` 0.5 |
//!
//! A server-only user enables `http` and does not compile reqwest. The traits and types in
//! this crate's API are those of the versions above: a `reqwest` 0.12 client next to this
//! crate's 0.13 is a different crate to the compiler, and fails with "`ResilienceMiddleware:
//! Middleware` is not satisfied". [`deps`] re-exports the exact crates, so
//! `resilience_layers::deps::reqwest` is always the one that fits.
//!
//! Every rejection is a small typed error inside tower's [`BoxError`]; [`Error::from_boxed`]
//! turns it into an enum to `match`. Every decision is a `tracing` event and a `metrics`
//! metric (the crate never installs a recorder), and each layer has a handle whose
//! `snapshot()` feeds health endpoints and dashboards, whose `subscribe()` streams the same
//! decisions as typed events ([`events`]: free while nobody listens), and whose
//! `reconfigure()` applies a new config value without losing state (the whole stack too:
//! [`ResilienceLayer::reconfigure`](stack::ResilienceLayer::reconfigure)).
//!
//! # The stack
//!
//! Outermost first: **rate limiter → bulkhead → deadline → retry → circuit breaker → attempt timeout →
//! service** ([`stack`] says why).
//!
//! ```
//! use resilience_layers::{Error, stack::StackConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config: StackConfig = toml::from_str(r#"
//!     deadline = "2s"
//!     attempt_timeout = "300ms"
//!     [bulkhead]
//!     max_concurrent = 32
//!     [retry]
//!     max_attempts = 3
//!     [circuit_breaker]
//!     minimum_calls = 4
//!     failure_rate_threshold = 50.0
//! "#).expect("valid config");
//! let layer = config.into_layer("inventory").expect("validated");
//! let breaker = layer.circuit_breaker().expect("configured");
//!
//! // A dependency that is down: every call fails.
//! let mut client = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("down")) }));
//!
//! // The first request is tried three times and fails with the dependency's own error.
//! let err = client.ready().await.unwrap().call(1).await.unwrap_err();
//! assert!(matches!(Error::from_boxed(err), Error::Inner(_)));
//! // The next attempt is the fourth failure: the breaker trips, and the retry that follows
//! // is turned away at once with the time until the next probe (an open circuit is never
//! // retried).
//! let err = client.ready().await.unwrap().call(1).await.unwrap_err();
//! match Error::from_boxed(err) {
//!     Error::CircuitOpen(open) => assert!(open.retry_after() > std::time::Duration::ZERO),
//!     other => panic!("expected an open circuit, got {other}"),
//! }
//! assert_eq!(breaker.snapshot().state, resilience_layers::circuit_breaker::CircuitState::Open);
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bulkhead;
pub mod cache;
mod cache_lines;
pub mod circuit_breaker;
pub mod classify;
pub mod config;
pub mod deadline;
pub mod error;
pub mod events;
pub mod fallback;
pub mod fault;
pub mod hedge;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod keyed;
mod name;
mod random;
pub mod rate_limit;
pub mod retry;
pub mod stack;
pub mod timeout;
mod versions;

pub use classify::{Classify, ErrorsAreFailures, Outcome};

/// The crates this crate's public API is built on, re-exported at the exact versions it was
/// built against (see the [feature table](crate#features-and-the-versions-the-integrations-are-built-for)).
///
/// Use these paths when your own `Cargo.toml` names another version, or to be sure the types
/// you hand to this crate are the ones it expects:
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
/// use resilience_layers::deps::tower::{ServiceBuilder, service_fn};
///
/// let svc = ServiceBuilder::new()
///     .layer(BulkheadLayer::new("db", BulkheadConfig::default()).unwrap())
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// # let _ = svc;
/// ```
pub mod deps {
    pub use ::tower;

    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub use ::http;
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub use ::tower_http;

    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub use ::reqwest;
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub use ::reqwest_middleware;
}
pub use config::ConfigError;
pub use error::{BoxError, Error};

/// The crate README's examples, compiled and run as doctests so they cannot rot.
#[cfg(all(doctest, feature = "reqwest"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
