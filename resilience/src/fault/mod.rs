//! Fault injection: added latency and errors on demand, for demos and chaos tests.
//!
//! Why: the other layers only show their worth when something fails, and this machine has
//! no network fault tools (no `tc netem`, no Toxiproxy). A [`FaultLayer`] in front of a
//! service (or a client) adds latency and fails a fraction of calls with [`InjectedFault`],
//! driven at run time through a [`FaultHandle`] (from an admin endpoint, say). Everything is
//! off by default, and the off path is two atomic loads. A request can ask for its own
//! latency through a [`RequestLatency`] hook; with the `http` feature,
//! `http::SimulateLatencyHeader` reads `X-Simulate-Latency: 250ms` (or `250`), capped at
//! [`MAX_REQUEST_LATENCY`]: the header lives with the other HTTP code.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::fault::{FaultHandle, FaultLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let faults = FaultHandle::new("users");
//! let mut svc = ServiceBuilder::new()
//!     .layer(FaultLayer::new(faults.clone()))
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//!
//! faults.set_latency(Duration::from_millis(300));
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
//! assert_eq!(start.elapsed(), Duration::from_millis(300));
//! # }
//! ```

mod config;
pub mod future;
mod handle;
mod latency;
mod layer;
mod service;

pub use self::{
    config::FaultConfig,
    future::ResponseFuture,
    handle::{FaultHandle, FaultSnapshot},
    latency::{MAX_REQUEST_LATENCY, RequestLatency, parse_latency},
    layer::FaultLayer,
    service::Fault,
};
pub use crate::error::InjectedFault;
