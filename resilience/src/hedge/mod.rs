//! Hedged requests (Finagle's backup requests, tower's `hedge`): when the first attempt is
//! slow, send one more and take whichever answers well first.
//!
//! Why: a few slow calls (a GC pause, a cold cache, one bad instance) dominate tail latency;
//! a second attempt sent once the first is slower than usual often answers long before it.
//! Why so careful: during an outage, extra attempts multiply the load on a dependency that
//! is already down. So:
//! - **When**: after a fixed `delay`, or after the `percentile` of recently observed
//!   latency (a fixed-size histogram of the last 1024 to 2048 completed attempts, on atomics,
//!   no lock; nothing is hedged until `min_samples` attempts completed). At most
//!   `max_hedges` per request, one `delay` apart.
//! - **Which requests**: only those the [`CloneRequest`](crate::retry::CloneRequest) hook
//!   copies; for HTTP, [`IdempotentRequests`](crate::http::IdempotentRequests) refuses
//!   unsafe methods without an `Idempotency-Key`, so a POST is never sent twice.
//! - **How much**: each hedge withdraws from a [`RetryBudget`](crate::retry::RetryBudget), in
//!   a stack the retry's own, so hedges and retries together stay within one budget; none is
//!   sent while the circuit breaker is not closed ([`HedgeHandle::with_breaker`]).
//! - **Who wins**: the first answer the classifier does not call a failure. A failure or a
//!   rejection (an open circuit met by the hedge) never wins while another attempt is in
//!   flight; when every attempt has failed, the first attempt's failure is returned. The
//!   losers are dropped (cancelled) as soon as there is a winner.
//! - Placed outside the breaker, each attempt passes it and is recorded on its own.
//!
//! Built beside rather than on `tower::hedge`: that one reads `std::time::Instant` (so no
//! paused-clock tests), keeps its own histogram behind a lock, and has no budget or breaker
//! hook.
//!
//! Metrics (labelled `name`): `resilience_hedge_sent_total`, `resilience_hedge_won_total`,
//! `resilience_hedge_budget_exhausted_total`; each is a `debug` event with target
//! `resilience` and a [`HedgeEvent`] to the handle's [`subscribe`](HedgeHandle::subscribe)
//! subscriptions.
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::hedge::{HedgeConfig, HedgeLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = HedgeConfig { delay: Some(Duration::from_millis(20)), ..Default::default() };
//! let layer = HedgeLayer::new("users", config).unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn({
//!     let calls = calls.clone();
//!     move |_: ()| {
//!         // The first attempt hangs for a second, the hedge answers at once.
//!         let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move {
//!             if n == 0 { tokio::time::sleep(Duration::from_secs(1)).await }
//!             Ok::<_, std::io::Error>(n)
//!         }
//!     }
//! }));
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 1);
//! assert_eq!(start.elapsed(), Duration::from_millis(20));
//! assert_eq!(layer.snapshot().won_total, 1);
//! # }
//! ```

mod config;
mod event;
pub mod future;
mod handle;
mod latency;
mod layer;
mod service;

pub use self::{
    config::HedgeConfig,
    event::HedgeEvent,
    handle::{HedgeHandle, HedgeSnapshot},
    layer::HedgeLayer,
    service::Hedge,
};
