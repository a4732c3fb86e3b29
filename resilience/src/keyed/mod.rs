//! Keyed resilience: one breaker, bulkhead and retry budget per key of the request (a host,
//! a host and route, a tenant), from one config, for any tower service.
//!
//! Why: one client often talks to many upstreams, and one service serves many tenants. With
//! one breaker for all of them, one failing webhook host opens the circuit for every healthy
//! one, and one tenant's flood fills the bulkhead for everyone. A [`KeyedLayer`] takes a key
//! function of the request (anything `Hash + Eq + Clone + Display`) and gives each key its own
//! stack, built from one [`StackConfig`](crate::stack::StackConfig) and named
//! `<name>@<key>` in metrics and snapshots. Whatever the config holds is per key: a breaker, a
//! bulkhead, retry with its budget, timeouts. Pieces that should be shared go in a plain stack
//! outside it; the stack's order is kept by putting the keyed layer where its pieces belong:
//!
//! ```text
//! shared (bulkhead → deadline → retry) → keyed (circuit breaker → attempt timeout) → service
//! ```
//!
//! The reqwest middleware's per-host breakers are this, keyed by `host:port` (or by a key the
//! user chooses: [`ResilienceMiddlewareBuilder::key_by`](crate::http::ResilienceMiddlewareBuilder::key_by)).
//!
//! # A bounded registry
//!
//! Keys come from traffic, so the registry is bounded ([`KeyedConfig`]):
//!
//! - **at most `max_keys`** at once. A new key that finds the registry full first sweeps the
//!   idle keys out, then evicts the least recently used one. Chosen over refusing the new
//!   key with an error: a client calling many hosts (webhooks) keeps working, memory stays
//!   bounded, and what is lost is the evicted key's history (its breaker starts closed when
//!   the key comes back); size `max_keys` above the number of keys in use at once so that
//!   only keys that went quiet are evicted. Keys added with [`KeyedLayer::pin`] are never
//!   evicted and come on top of `max_keys`.
//! - **idle keys evicted**: a key unused for `idle` goes. Lookups sweep when the oldest key
//!   may have become idle (at most once per eighth of `idle`, so a key goes at most that late);
//!   [`KeyedLayer::evict_idle`] sweeps on demand, for a process whose traffic may stop.
//!
//! An evicted key frees everything it held. Its name: the names of breakers and bulkheads
//! built directly are configuration and are kept for the process, but a key's name is
//! reference-counted and freed with the last error or handle carrying it. Its metric series:
//! metrics-rs has no call to remove a series, so the layer drops every metric handle of an
//! evicted key and stops updating its series, and the exporter removes them: the Prometheus
//! exporter forgets a series not updated for its idle timeout
//! (`PrometheusBuilder::idle_timeout`). So that only evicted keys' series go, the layer marks
//! a live key's counters and gauges as updated (a `+0`, at most every half `idle`, on use):
//! give the exporter an idle timeout longer than `idle`, for counters and gauges (a histogram
//! cannot be marked without recording a sample; leave histograms out of its mask, or the
//! per-key retry delay histogram of a quiet key goes too). The exporter's idle timeout applies
//! to every series it holds, the process's non-keyed layers included: one whose gauge does not
//! move for that long is dropped as well.
//!
//! # Example
//!
//! ```
//! use resilience_layers::{
//!     Error, circuit_breaker::CircuitState, keyed::{KeyedConfig, KeyedLayer}, stack::StackConfig,
//! };
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Requests are (tenant, payload); tenant "acme"'s backend is down.
//! let config: StackConfig = toml::from_str(r#"
//!     [circuit_breaker]
//!     consecutive_failures = 3
//! "#).unwrap();
//! let per_tenant = KeyedLayer::new("reports", config, KeyedConfig::default(), |req: &(String, u32)| {
//!     req.0.clone()
//! })
//! .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(per_tenant.clone())
//!     .service(service_fn(|(tenant, n): (String, u32)| async move {
//!         if tenant == "acme" { Err(std::io::Error::other("down")) } else { Ok(n) }
//!     }));
//! for _ in 0..3 {
//!     let _ = svc.ready().await.unwrap().call(("acme".into(), 1)).await;
//! }
//! // acme's circuit is open; globex is served as before.
//! let err = svc.ready().await.unwrap().call(("acme".into(), 1)).await.unwrap_err();
//! assert!(matches!(Error::from_boxed(err), Error::CircuitOpen(_)));
//! assert_eq!(svc.ready().await.unwrap().call(("globex".into(), 2)).await.unwrap(), 2);
//!
//! let breakers = per_tenant.snapshot().breakers;
//! let states: Vec<_> = breakers.iter().map(|b| (b.name.as_str(), b.state)).collect();
//! assert_eq!(states, [("reports@acme", CircuitState::Open), ("reports@globex", CircuitState::Closed)]);
//! # }
//! ```

mod config;
pub mod future;
mod layer;
mod registry;
mod service;

#[cfg(feature = "reqwest")]
pub(crate) use self::layer::KeyedStacks;
pub use self::{config::KeyedConfig, layer::KeyedLayer, service::Keyed};

#[cfg(all(test, not(resilience_loom)))]
mod tests;
