//! A rate limiter: at most so many calls per period, in bursts of at most so many.
//!
//! Why: a bulkhead bounds how many calls run *at once*; a rate limiter bounds how many start
//! *per second*. A server uses it to shed what it cannot serve before doing any work for it
//! (and to tell the client, with `429` and `Retry-After`, when to come back); a client uses it
//! to stay within an upstream's quota instead of collecting that upstream's `429`s.
//!
//! The algorithm is GCRA, from [`governor`] (lock-free: one atomic word per limiter), on a
//! clock that reads tokio's time ([`TokioClock`]), so tests run on a paused clock like every
//! other layer here. One permit comes back every `period / permits`; a full bucket holds
//! `burst` ([`RateLimitConfig`]). Two modes:
//!
//! - **reject** (`max_wait` zero, the default): no permit, no call. The rejection
//!   ([`RateLimited`](crate::error::RateLimited)) carries the time until the next permit; with
//!   the `http` feature [`ProblemLayer`](crate::http::ProblemLayer) answers it `429` with
//!   `Retry-After` and the IETF `RateLimit` and `RateLimit-Policy` fields.
//! - **wait**: the caller waits for its permit, at most `max_wait` and never past the
//!   [deadline](crate::deadline::current_deadline) in force; a permit further away than that
//!   is refused at once.
//!
//! The pieces, as in every pattern of this crate: the config ([`RateLimitConfig`]), the
//! limiter as a plain value ([`RateLimiter`]: the GCRA state and nothing else, so a keyed
//! layer can hold one per key), the layer ([`RateLimitLayer`]), the service ([`RateLimit`]),
//! its [`future`], and the shared [`RateLimitHandle`] with its [`snapshot`](RateLimitHandle::snapshot).
//!
//! Metrics (labelled `name`): `resilience_rate_limit_rejected_total`,
//! `resilience_rate_limit_delayed_total` (calls that waited and got their permit), and the
//! gauge `resilience_rate_limit_waiting`. Each rejection is a `debug` event with target
//! `resilience`, and a [`RateLimitEvent`] to the handle's
//! [`subscribe`](RateLimitHandle::subscribe) subscriptions.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::{Error, rate_limit::{RateLimitConfig, RateLimitLayer}};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // 10 calls a second, 2 at once.
//! let config = RateLimitConfig { permits: 10, period: Duration::from_secs(1), burst: Some(2), ..Default::default() };
//! let layer = RateLimitLayer::new("search", config).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|q: &'static str| async move { Ok::<_, std::io::Error>(q.len()) }));
//!
//! for _ in 0..2 {
//!     svc.ready().await.unwrap().call("rust").await.unwrap();
//! }
//! // The burst is spent: the third is rejected, and told when to come back.
//! let err = svc.ready().await.unwrap().call("rust").await.unwrap_err();
//! match Error::from_boxed(err) {
//!     Error::RateLimited(e) => assert_eq!(e.retry_after(), Duration::from_millis(100)),
//!     other => panic!("{other}"),
//! }
//! tokio::time::advance(Duration::from_millis(100)).await;
//! svc.ready().await.unwrap().call("rust").await.unwrap();
//! assert_eq!(layer.handle().snapshot().rejected_total, 1);
//! # }
//! ```

mod clock;
mod config;
mod event;
pub mod future;
mod handle;
mod layer;
mod service;
mod state;

pub use self::{
    clock::{TokioClock, TokioInstant},
    config::RateLimitConfig,
    event::RateLimitEvent,
    future::ResponseFuture,
    handle::{RateLimitHandle, RateLimitSnapshot},
    layer::RateLimitLayer,
    service::RateLimit,
    state::{Decision, RateLimiter},
};
