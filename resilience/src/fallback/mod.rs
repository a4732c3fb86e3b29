//! A fallback: an answer for the calls that would otherwise fail.
//!
//! Why: a breaker, a bulkhead, a rate limiter and a deadline make a failing dependency fail
//! *fast*; some callers can do better than fail: serve a cached or default value, ask
//! another service, or (HTTP) answer a static degraded response. The fallback turns chosen
//! outcomes into answers, and says it did, so the caller can tell a degraded answer from a
//! real one.
//!
//! The config ([`FallbackConfig`]) names the outcomes from a closed set
//! ([`FallbackOutcome`]: `circuit_open`, `half_open_full`, `bulkhead_full`, `rate_limited`,
//! `timeout`, `deadline_exceeded`, and `failure`, what the [classifier](crate::classify)
//! calls a failure); code gives the answer ([`Fallback`]: a closure `Fn(Fault<Res>) -> Res`,
//! another service through [`FallbackService`], or with `http` a
//! [`StaticResponse`](crate::http::StaticResponse)). An outcome not listed passes through
//! unchanged. A response from the fallback is marked [`FromFallback`]: in HTTP responses'
//! extensions and by the `x-resilience-fallback` header; other response types say it in
//! their own value (see [`FromFallback`]).
//!
//! The pieces: the config, the layer ([`FallbackLayer`]), the service ([`WithFallback`]),
//! its [`future`] (the fallback's future is built in place, only on the error path), and the
//! shared [`FallbackHandle`] with its [`snapshot`](FallbackHandle::snapshot).
//!
//! Metrics: `resilience_fallback_total{name, outcome}`, answers served per outcome. Each
//! answer served is a `debug` event with target `resilience`.
//!
//! With a [stack](crate::stack), the `[fallback]` section says which outcomes and
//! [`ResilienceLayer::fallback_layer`](crate::stack::ResilienceLayer::fallback_layer) builds
//! the layer to put outside the stack (inside its cache): it catches an open circuit, the
//! final failure after retries, a full bulkhead, a deadline and a rate limit.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault};
//! use resilience_layers::timeout::AttemptTimeoutLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config: FallbackConfig = toml::from_str(r#"on = ["timeout"]"#).unwrap();
//! let fallback = FallbackLayer::new("price", config, |fault: Fault<u32>| {
//!     assert_eq!(fault.outcome(), FallbackOutcome::Timeout);
//!     42 // the last known price
//! }).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(fallback.clone())
//!     .layer(AttemptTimeoutLayer::new("price", Duration::from_millis(100)).unwrap())
//!     .service(service_fn(|slow: bool| async move {
//!         if slow { tokio::time::sleep(Duration::from_secs(1)).await; }
//!         Ok::<_, std::io::Error>(7)
//!     }));
//! assert_eq!(svc.ready().await.unwrap().call(false).await.unwrap(), 7);
//! assert_eq!(svc.ready().await.unwrap().call(true).await.unwrap(), 42);
//! assert_eq!(fallback.handle().snapshot().served_total, 1);
//! # }
//! ```

mod answer;
mod config;
pub mod future;
mod handle;
mod layer;
mod service;

pub use self::{
    answer::{Fallback, FallbackService, Fault, FromFallback, NoFallback, ServiceAnswer},
    config::{FallbackConfig, FallbackOutcome},
    future::ResponseFuture,
    handle::{FallbackHandle, FallbackSnapshot},
    layer::FallbackLayer,
    service::WithFallback,
};
