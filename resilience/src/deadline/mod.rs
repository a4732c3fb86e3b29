//! The deadline: one instant by which a whole call must be done, visible to every layer
//! inside it.
//!
//! Why it is its own module: three parts of the crate build on it. The total-time layer here
//! ([`DeadlineLayer`]) sets it and enforces it; retry reads it so that no attempt starts and
//! no backoff sleeps past it ([`retry`](crate::retry)); the HTTP integration sends what is
//! left of it downstream and installs the caller's on the server side
//! ([`http`](crate::http), feature `http`). The per-attempt timeout
//! ([`timeout`](crate::timeout)) sits beside it in the stack and counts in the same metric.
//!
//! How it travels: [`current_deadline`] reads a task-local that a [`DeadlineService`] sets
//! around its inner service's `call` and around every poll of the inner future (and that
//! [`Deadline::scope`] sets around any future). So it works for any request type, and a nested
//! deadline only ever shortens the time: the earlier of the two wins.
//!
//! The pieces, as in every pattern of this crate: the value ([`Deadline`]), the layer
//! ([`DeadlineLayer`], whose only setting is the budget), the service ([`DeadlineService`])
//! and its [`future`]. Past the deadline a call fails with
//! [`DeadlineExceeded`](crate::error::DeadlineExceeded) as a [`BoxError`](crate::BoxError),
//! and `resilience_timeouts_total{name, kind="deadline"}` counts it.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::{Error, deadline::{DeadlineLayer, current_deadline}};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let mut svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new("users", Duration::from_secs(1)).unwrap())
//!     .service(service_fn(|ms: u64| async move {
//!         // Inner code sees how long it has left.
//!         let left = current_deadline().expect("set by the layer").remaining();
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::io::Error>(left)
//!     }));
//! assert_eq!(svc.ready().await.unwrap().call(100).await.unwrap(), Duration::from_secs(1));
//! let err = svc.ready().await.unwrap().call(5_000).await.unwrap_err();
//! assert!(matches!(Error::from_boxed(err), Error::DeadlineExceeded(_)));
//! # }
//! ```

pub mod future;
mod handle;
mod layer;
mod scope;
mod service;
mod value;

#[cfg(feature = "reqwest")]
pub(crate) use self::future::deadline_exceeded;
pub(crate) use self::{handle::TimeoutCounter, layer::timeouts_counter};
pub use self::{
    handle::{TimeoutHandle, TimeoutKind, TimeoutSnapshot},
    layer::DeadlineLayer,
    scope::{WithDeadline, current_deadline},
    service::DeadlineService,
    value::Deadline,
};
