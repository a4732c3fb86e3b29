//! A circuit breaker: stop calling a dependency that is failing, and find out cheaply when
//! it has recovered.
//!
//! A failing dependency costs its callers twice: each call waits for an error, and the
//! retries pile load onto something that is already down. A breaker watches the outcomes of
//! recent calls and, once too many fail (or are too slow), fails calls at once for a while
//! instead of making them.
//!
//! # The state machine
//!
//! **Closed** is the normal state. Every call passes, and its outcome (decided by a
//! [`Classify`](crate::classify::Classify) value: success, failure or ignored) goes into a
//! sliding window: the last N calls ([`SlidingWindow::Count`]) or the calls of the last D
//! ([`SlidingWindow::Time`]). Once the window holds at least `minimum_calls`, the breaker
//! trips when the failure rate, or the rate of calls slower than `slow_call_duration`,
//! reaches its threshold (at or above, not only above). With `consecutive_failures` set, K
//! failures in a row also trip it. Ignored outcomes change nothing.
//!
//! **Open** rejects every call with [`CircuitOpen`](crate::error::CircuitOpen), which says
//! how long until a probe is let through. After `wait_in_open` the next call moves the
//! breaker to HalfOpen: time is looked at when a call arrives. With
//! `automatic_transition_to_half_open`, a timer makes the move when the wait ends, so the
//! state reads half-open without traffic ([`CircuitBreakerConfig`] says what the timer
//! costs).
//!
//! **HalfOpen** admits exactly `permitted_calls_in_half_open` probe calls. Each slot is
//! reserved atomically when a caller is admitted, so concurrent callers can never exceed
//! it; further callers get [`HalfOpenFull`](crate::error::HalfOpenFull). A probe that is
//! cancelled (its future dropped) or whose outcome is ignored gives its slot back. Once all
//! N probes have reported, the breaker decides on them alone: if their failure rate (or
//! slow-call rate) reaches the threshold it opens again, with the wait multiplied by
//! `wait_multiplier` (up to `max_wait_in_open`); otherwise it closes with an empty window
//! and the wait back at its start. If the probes have not all reported within
//! `max_wait_in_half_open`, it re-opens as if they had failed; a half-open period in which
//! no probe slot is taken at that point (no call came, or every probe was given back) has
//! seen no failure, and starts again instead. This is a simplification of
//! Resilience4j's rule (which also waits for all permitted calls, but then applies the
//! minimum-calls rule to them): here the probes always decide.
//!
//! Every transition starts a new *generation*, and every permit carries the generation it
//! was issued in: a result that arrives after the breaker has moved on (a slow call from
//! before the trip, a probe that outlived a re-open) is recognised and changes nothing.
//!
//! By hand, through a [`CircuitBreakerHandle`]: **ForcedOpen** rejects everything,
//! **Disabled** lets everything through and records nothing, **MetricsOnly** records and
//! reports calls but never rejects; `reset` returns to Closed with an empty window.
//!
//! # Changing the settings of a running breaker
//!
//! [`CircuitBreakerHandle::reconfigure`] takes a new config, validates it with the same
//! field-path errors, and applies it without leaving the current state: new thresholds from
//! the next call, new waits from the next open period, a resized count window keeping its
//! most recent outcomes. The numbers a call reads are atomics of their own; a new window is
//! published beside the old one, which is kept until the breaker is dropped (a call on
//! another thread may still be writing to it), so calls never take a lock for it.
//!
//! # Cost
//!
//! Admitting and recording calls take no lock: only the rare transitions do (a short,
//! never-awaited mutex that makes two threads seeing the same trip point change state
//! once). In Closed with a count window, a call reads one shared word, and its completion
//! does one compare-and-swap on the window's head plus one load (one more atomic update
//! only when a slot's outcome changes). The clock is read only
//! when something needs it: slow-call detection, a time window, or an open circuit. Metrics
//! handles are registered once, when the layer is built (so install a `metrics` recorder
//! before building layers); events are built only on transitions and rejections.
//!
//! # Observability
//!
//! Metrics, labelled `name`: `resilience_circuit_state` (gauge: 0 closed, 1 open,
//! 2 half-open, 3 forced open, 4 disabled, 5 metrics-only),
//! `resilience_circuit_calls_total{outcome}` (`success`, `failure`, `slow_success`,
//! `slow_failure`, `ignored`), `resilience_circuit_rejected_total`,
//! `resilience_circuit_transitions_total{from,to}`. Each real transition is one `INFO`
//! event with target `resilience` and fields `name`, `from`, `to` (a `reset` of a closed
//! breaker clears its window but is not a transition); each rejection is a `DEBUG` event
//! with a `reason`. In MetricsOnly, crossing a threshold is one `WARN` event ("would
//! open") and falling back under it one `INFO` event. [`CircuitBreakerHandle::snapshot`]
//! returns a serializable [`CircuitSnapshot`], and [`CircuitBreakerHandle::subscribe`] a
//! stream of the same transitions, rejections and crossings as [`CircuitEvent`]s, for code
//! that reacts to them (free while nobody subscribes: see [`events`](crate::events)).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::circuit_breaker::{
//!     CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, SlidingWindow,
//! };
//! use resilience_layers::Error;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = CircuitBreakerConfig {
//!     window: SlidingWindow::Count { size: 10 },
//!     minimum_calls: 4,
//!     failure_rate_threshold: 50.0,
//!     wait_in_open: Duration::from_secs(5),
//!     ..Default::default()
//! };
//! let layer = CircuitBreakerLayer::new("users", config).unwrap();
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|fail: bool| async move {
//!         if fail { Err("boom") } else { Ok("fine") }
//!     });
//!
//! for fail in [false, true, false, true] {
//!     let _ = svc.ready().await.unwrap().call(fail).await;
//! }
//! // Two failures out of four calls: 50 %, at the threshold.
//! assert_eq!(handle.state(), CircuitState::Open);
//!
//! let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
//! match Error::from_boxed(err) {
//!     Error::CircuitOpen(open) => assert!(open.retry_after() <= Duration::from_secs(5)),
//!     other => panic!("expected an open circuit, got {other:?}"),
//! }
//! # }
//! ```

mod config;
mod event;
pub mod future;
mod handle;
mod layer;
mod params;
mod service;
mod snapshot;
mod state;
mod sync;
mod window;

#[cfg(all(test, resilience_loom))]
mod loom_tests;
#[cfg(all(test, not(resilience_loom)))]
mod state_tests;

pub use config::{CircuitBreakerConfig, SlidingWindow};
pub use event::{CircuitEvent, RejectReason};
pub use future::ResponseFuture;
pub use handle::{CallPermit, CircuitBreakerHandle};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use snapshot::CircuitSnapshot;
pub use state::CircuitState;
