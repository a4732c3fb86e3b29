//! Retry with backoff and a budget, built on [`tower::retry`].
//!
//! Why: many failures are momentary (a restarted instance, a dropped connection, a timeout
//! on one slow attempt), and a second attempt a little later succeeds. Why so careful: during
//! a real outage, naive retries multiply the load on a dependency that is already down. So:
//! - **What** is retried comes from the same [`Classify`](crate::Classify) value the circuit
//!   breaker uses; rejections made before the call reached the dependency (open circuit,
//!   half-open full, bulkhead full) are never retried, and neither are requests that cannot
//!   be cloned ([`CloneRequest`]: the idempotency hook).
//! - **When**: exponential [`Backoff`] with a cap and jitter ([`Jitter`]), or any iterator of
//!   durations ([`RetryPolicy::with_backoff`], so `backon` plugs in); a [`RetryAfter`] hint
//!   raises the next delay.
//! - **How much**: at most `max_attempts` in total, within the [`current_deadline`]
//!   (no attempt starts and no backoff sleeps past it), and within a shared [`RetryBudget`]
//!   (retries add at most `retry_ratio` of recent requests plus a floor a second).
//! - Dropping the caller's future drops the attempt or the sleep in progress: nothing more
//!   is sent.
//! - [`RetryHandle::reconfigure`] changes attempts, backoff and budget while running; the
//!   services already built follow, and the budget keeps its balance unless its own
//!   settings change.
//!
//! Metrics (labelled `name`): `resilience_retry_requests_total`,
//! `resilience_retry_retries_total`, `resilience_retry_budget_exhausted_total`, and the
//! `resilience_retry_delay_seconds` histogram; each retry, refusal and give-up is a `debug`
//! event with target `resilience`, and each retry and refusal a [`RetryEvent`] to the
//! handle's [`subscribe`](RetryHandle::subscribe) subscriptions.
//!
//! [`current_deadline`]: crate::deadline::current_deadline
//!
//! ```
//! use std::{sync::{Arc, atomic::{AtomicU32, Ordering}}, time::Duration};
//! use resilience_layers::retry::{BackoffConfig, RetryConfig, RetryLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = RetryConfig {
//!     max_attempts: 3,
//!     backoff: BackoffConfig { base: Duration::from_millis(50), ..Default::default() },
//!     ..Default::default()
//! };
//! let layer = RetryLayer::new("users", config).unwrap();
//! let calls = Arc::new(AtomicU32::new(0));
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn({
//!     let calls = calls.clone();
//!     move |_: ()| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move { if n < 2 { Err("flaky") } else { Ok(n) } }
//!     }
//! }));
//! assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 2); // third attempt
//! assert_eq!(layer.snapshot().retries_total, 2);
//! # }
//! ```

mod backoff;
mod budget;
mod config;
mod event;
pub mod future;
mod handle;
mod layer;
mod policy;

pub use self::{
    backoff::{Backoff, FromIter, MakeBackoff},
    budget::RetryBudget,
    config::{BackoffConfig, BudgetConfig, Jitter, RetryConfig},
    event::RetryEvent,
    future::Delay,
    handle::{RetryHandle, RetrySnapshot},
    layer::RetryLayer,
    policy::{CloneRequest, Cloned, GIVE_UP, RetryAfter, RetryPolicy},
};
pub(crate) use self::{config::budget_switch, policy::is_rejection};
/// The service [`RetryLayer`] builds: tower's own, driven by a [`RetryPolicy`].
pub use tower::retry::Retry;
