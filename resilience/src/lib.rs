//! Tower layers that keep a service standing when its dependencies do not.
//!
//! A dependency that slows down or fails takes its callers with it: threads pile up waiting,
//! retries multiply the load on something already down, and users wait for timeouts instead
//! of getting a quick answer. This crate gives a tower service the four classic defences, each
//! a [`tower::Layer`] usable alone, and one composed stack built from one config value:
//!
//! | layer | module | what it prevents |
//! |---|---|---|
//! | circuit breaker | [`circuit_breaker`] | calling a dependency that is known to be failing; fails fast instead |
//! | retry with budget | [`retry`] | giving up on a transient failure, without ever multiplying an outage's load |
//! | attempt timeout and total deadline | [`timeout`] | waiting forever; no call outlives the caller's patience |
//! | bulkhead | [`bulkhead`] | one slow dependency taking every task and connection |
//!
//! What counts as a failure is decided once, by a [`Classify`] value shared by the breaker and
//! retry ([`classify`]); HTTP responses are classified by the `http` feature ([`http`]
//! module: tower-http classification, `Retry-After`, idempotency, a reqwest-middleware client
//! and an axum layer that answers rejections with `application/problem+json`).
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
//! Outermost first: **bulkhead → deadline → retry → circuit breaker → attempt timeout →
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
pub mod circuit_breaker;
pub mod classify;
pub mod config;
pub mod error;
pub mod events;
pub mod fault;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod name;
mod per_thread;
pub mod retry;
pub mod stack;
pub mod timeout;
mod versions;

pub use classify::{Classify, ErrorsAreFailures, Outcome};
pub use config::ConfigError;
pub use error::{BoxError, Error};

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
