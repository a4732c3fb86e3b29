//! A bulkhead: a cap on how many calls to one dependency run at once.
//!
//! Why: when a dependency slows down, callers pile up on it, each holding a connection, a
//! task and memory, until the slow dependency takes the caller down too. A bulkhead gives the
//! dependency a fixed number of permits (on tokio's [`Semaphore`](tokio::sync::Semaphore));
//! a call beyond that waits at most `max_wait` for one to free up and is then rejected with
//! [`BulkheadFull`](crate::error::BulkheadFull), so the rest of the service stays healthy.
//!
//! Rejection is `LoadShed`-style: `poll_ready` never parks a caller longer than `max_wait`,
//! and the rejected `call` returns an immediately-ready error. Every service built from one
//! [`BulkheadLayer`] (and every clone of them) shares one set of permits; a permit goes back
//! when the response future completes or is dropped. [`BulkheadHandle`] gives snapshots and
//! permits to code that is not a tower service, and takes a new limit while running
//! ([`BulkheadHandle::reconfigure`]: a lowered limit never revokes a permit in use).
//!
//! **Adaptive limit** (`adaptive` in the config, [`AdaptiveConfig`]): instead of a fixed
//! number, the limit follows the latency of completed calls (AIMD or Gradient2, as Netflix's
//! concurrency-limits and Envoy's adaptive concurrency filter): it falls when latency rises
//! above the lowest seen (the dependency is queueing) and grows back while latency stays near
//! it, within `[min_limit, max_concurrent]`, so it settles near the dependency's knee without
//! anyone measuring it. Each permit then reads the clock when taken and when given back (off
//! otherwise); a limit change moves permits as `reconfigure` does.
//!
//! Metrics (labelled `name`): `resilience_bulkhead_in_use` (calls running and handle permits
//! held), `resilience_bulkhead_waiting`, `resilience_bulkhead_limit` (the limit in force)
//! (gauges) and `resilience_bulkhead_rejected_total`;
//! each rejection is a `debug` event with target `resilience`, and a [`BulkheadEvent`] to
//! the handle's [`subscribe`](BulkheadHandle::subscribe) subscriptions.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::{Error, bulkhead::{BulkheadConfig, BulkheadLayer}};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = BulkheadConfig { max_concurrent: 1, max_wait: Duration::ZERO, adaptive: None };
//! let layer = BulkheadLayer::new("users", config).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
//!
//! // The first call holds the only permit for as long as its future lives...
//! let first = svc.ready().await.unwrap().call(());
//! // ...so the second is rejected at once.
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! assert!(matches!(Error::from_boxed(err), Error::BulkheadFull(_)));
//! assert_eq!(layer.handle().snapshot().rejected_total, 1);
//! drop(first);
//! assert_eq!(layer.handle().snapshot().in_use, 0);
//! # }
//! ```

mod adaptive;
mod config;
mod event;
pub mod future;
mod handle;
mod layer;
mod service;

pub use self::{
    config::{AdaptiveConfig, BulkheadConfig, LimitAlgorithm},
    event::BulkheadEvent,
    future::ResponseFuture,
    handle::{BulkheadHandle, BulkheadPermit, BulkheadSnapshot},
    layer::BulkheadLayer,
    service::Bulkhead,
};
