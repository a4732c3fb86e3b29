//! A response cache for idempotent calls: bounded, with stale-if-error and request
//! coalescing.
//!
//! Why: an answer that was right a moment ago is usually still right, and fetching it again
//! costs a round trip, a bulkhead permit and a share of the dependency's capacity. And when
//! the dependency fails, a recent answer is often better than none: RFC 5861's
//! `stale-if-error` serves the last good answer for a bounded time past its freshness.
//!
//! What a request goes through, keyed by a function of the request (`None`: not cached):
//!
//! 1. **Fresh hit**: an answer stored less than its lifetime ago (the configured `ttl`, or
//!    a shorter upstream `max-age`) is served with no call.
//! 2. **Coalescing**: otherwise, if a call for the same key is in flight, the request waits
//!    for it and shares its answer, so 100 concurrent misses make one call. If that call had
//!    nothing to share (it failed, or its answer may not be stored), each waiter goes on alone.
//! 3. **Call**: a success (as the classifier says) is stored, unless the policy says
//!    `no-store`; an ignored result (a `404`) is passed on and never stored.
//! 4. **Stale-if-error**: a failure, or one of the stack's rejections (open circuit,
//!    bulkhead full, timeout, rate limited), is answered with the stored answer when it is
//!    less than `ttl + stale_if_error` old, marked [`Served::Stale`]; past that, the failure
//!    goes to the caller.
//!
//! Freshness is decided on tokio's clock from each entry's own time (so tests run on a
//! paused clock); [`moka`] holds the entries, bounded in bytes by its weigher and in entries
//! by weighing each at least `max_bytes / max_entries` (one capacity bounds both), with
//! TinyLFU admission deciding what is kept.
//!
//! The pieces: the config ([`CacheConfig`]), the response hooks ([`CachePolicy`]: weight,
//! freshness, marking), the layer ([`CacheLayer`]), the service ([`Cache`]), its [`future`],
//! and the shared [`CacheHandle`] with its [`snapshot`](CacheHandle::snapshot).
//!
//! Metrics (labelled `name`): `resilience_cache_requests_total{result}` with `result` one
//! of `hit`, `miss`, `stale`, `coalesced`; the gauges `resilience_cache_entries` and
//! `resilience_cache_bytes`. Each stale answer is a `debug` event with target `resilience`.
//! The cache adds no rejection of its own: without a stale answer, the inner error passes.
//!
//! ```
//! use std::{sync::{Arc, atomic::{AtomicU32, Ordering}}, time::Duration};
//! use resilience_layers::cache::{CacheConfig, CacheLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
//! let config = CacheConfig { ttl: Duration::from_secs(10), stale_if_error: Duration::from_secs(60), ..Default::default() };
//! let layer = CacheLayer::new("users", config, |id: &u32| Some(*id)).unwrap();
//! let (c, u) = (calls.clone(), up.clone());
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn(move |id: u32| {
//!     c.fetch_add(1, Ordering::SeqCst);
//!     let up = u.load(Ordering::SeqCst);
//!     async move { if up { Ok(format!("user {id}")) } else { Err(std::io::Error::other("down")) } }
//! }));
//!
//! assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), "user 7");
//! assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), "user 7"); // fresh hit
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//!
//! up.store(false, Ordering::SeqCst);
//! tokio::time::advance(Duration::from_secs(30)).await;
//! // Stale, and the call failed: the last good answer.
//! assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), "user 7");
//! tokio::time::advance(Duration::from_secs(60)).await;
//! // Past ttl + stale_if_error: the failure itself.
//! assert!(svc.ready().await.unwrap().call(7).await.is_err());
//! assert_eq!(layer.handle().snapshot().stale_total, 1);
//! # }
//! ```

mod config;
pub mod future;
mod handle;
mod layer;
mod service;
mod state;

pub use self::{
    config::CacheConfig,
    future::ResponseFuture,
    handle::{CacheHandle, CacheSnapshot},
    layer::CacheLayer,
    service::Cache,
    state::{CachePolicy, CacheStatus, DefaultPolicy, Freshness, Served},
};
