//! Timeouts: one per attempt, beside the deadline for the whole call.
//!
//! Why two: a per-attempt timeout ([`AttemptTimeoutLayer`]) sits inside the circuit breaker so
//! a hung attempt is cut short and counted as a failure, and retry can try again. A total
//! deadline ([`DeadlineLayer`]) sits outside retry so the caller's patience bounds everything:
//! attempts, backoff sleeps and all. The deadline has its own module, [`crate::deadline`],
//! because retry and the HTTP integration build on it too; its items are re-exported here
//! (`timeout::DeadlineLayer`, `timeout::current_deadline`, ...) so the paths that named them
//! here keep working.
//!
//! Errors: [`Elapsed`](crate::error::Elapsed) for an attempt,
//! [`DeadlineExceeded`](crate::error::DeadlineExceeded) for the deadline, both as
//! [`BoxError`](crate::BoxError). Metric: `resilience_timeouts_total{name,kind}` with `kind`
//! `attempt` or `deadline`.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::{Error, deadline::DeadlineLayer, timeout::AttemptTimeoutLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let mut svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new("users", Duration::from_secs(1)).unwrap())
//!     .layer(AttemptTimeoutLayer::new("users", Duration::from_millis(300)).unwrap())
//!     .service(service_fn(|ms: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::io::Error>(ms)
//!     }));
//! assert_eq!(svc.ready().await.unwrap().call(100).await.unwrap(), 100);
//! let err = svc.ready().await.unwrap().call(500).await.unwrap_err();
//! assert!(matches!(Error::from_boxed(err), Error::Timeout(_)));
//! # }
//! ```

pub mod future;
mod layer;
mod service;

pub use self::{layer::AttemptTimeoutLayer, service::AttemptTimeout};
/// The deadline's items at their old paths; [`crate::deadline`] is their home.
pub use crate::deadline::{
    Deadline, DeadlineLayer, DeadlineService, WithDeadline, current_deadline,
};
