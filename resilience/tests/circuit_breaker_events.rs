//! The breaker's `tracing` events: one per real transition, one per rejection, and the
//! metrics-only threshold notices.
//!
//! In their own test binary, and every test installs its subscriber before touching a
//! breaker: `tracing` caches each call site's interest process-wide, so a call site first
//! hit by a thread with no subscriber could otherwise be silenced for a capturing test.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use resilience_layers::{
    Outcome,
    circuit_breaker::{
        CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
        SlidingWindow,
    },
};
use tokio::time::advance;

/// Collects the fields of every event with target `resilience`.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl Events {
    fn with(&self, field: &str) -> Vec<HashMap<String, String>> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|e| e.contains_key(field))
            .cloned()
            .collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut HashMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.insert(f.name().to_owned(), format!("{v:?}"));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.insert(f.name().to_owned(), v.to_owned());
            }
        }
        if event.metadata().target() == "resilience" {
            let mut fields = HashMap::new();
            fields.insert("level".to_owned(), event.metadata().level().to_string());
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

fn capture() -> (Events, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::layer::SubscriberExt;
    let events = Events::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    (events, guard)
}

/// Window of 10, at least 4 calls, 50 %, open 10 s, 2 probes.
fn breaker() -> CircuitBreakerHandle {
    let config = CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 10 },
        minimum_calls: 4,
        wait_in_open: Duration::from_secs(10),
        permitted_calls_in_half_open: 2,
        ..Default::default()
    };
    CircuitBreakerLayer::new("backend", config)
        .unwrap()
        .handle()
}

/// Makes `n` calls with `outcome`; returns how many were rejected.
fn calls(handle: &CircuitBreakerHandle, outcome: Outcome, n: usize) -> usize {
    (0..n)
        .filter(|_| match handle.try_acquire() {
            Ok(permit) => {
                permit.record(outcome);
                false
            }
            Err(_) => true,
        })
        .count()
}

#[tokio::test(start_paused = true)]
async fn exactly_one_event_per_real_transition() {
    let (events, _guard) = capture();
    let handle = breaker();
    calls(&handle, Outcome::Failure, 4);
    assert_eq!(
        calls(&handle, Outcome::Failure, 3),
        3,
        "rejected: no transition"
    );
    advance(Duration::from_secs(10)).await;
    calls(&handle, Outcome::Success, 2);
    handle.force_open();
    handle.force_open(); // already forced: not a transition
    handle.reset();
    handle.reset(); // closed -> closed: window cleared, not a transition
    handle.metrics_only();
    handle.disable();

    let got: Vec<_> = events.with("from");
    let pairs: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e["from"].as_str(), e["to"].as_str()))
        .collect();
    let want = [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "closed"),
        ("closed", "metrics_only"),
        ("metrics_only", "disabled"),
    ];
    assert_eq!(pairs, want);
    assert!(
        got.iter()
            .all(|e| e["name"] == "backend" && e["level"] == "INFO")
    );
    assert_eq!(handle.snapshot().transitions_total, want.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn concurrent_failures_at_the_trip_point_make_one_event() {
    let (events, _guard) = capture();
    let handle = breaker();
    // Eight permits issued while closed, all failing after the trip point is passed.
    let permits: Vec<_> = (0..8).map(|_| handle.try_acquire().unwrap()).collect();
    for p in permits {
        p.record(Outcome::Failure);
    }
    assert_eq!(events.with("from").len(), 1);
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn rejections_are_debug_events() {
    let (events, _guard) = capture();
    let handle = breaker();
    calls(&handle, Outcome::Failure, 4);
    assert_eq!(calls(&handle, Outcome::Success, 2), 2);
    let rejections = events.with("reason");
    assert_eq!(rejections.len(), 2);
    assert_eq!(rejections[0]["level"], "DEBUG");
    assert_eq!(rejections[0]["reason"], "open");
    assert_eq!(rejections[0]["name"], "backend");
}

#[tokio::test(start_paused = true)]
async fn metrics_only_says_once_when_it_would_have_opened() {
    let (events, _guard) = capture();
    let handle = breaker();
    handle.metrics_only();
    calls(&handle, Outcome::Failure, 6);
    calls(&handle, Outcome::Success, 10);
    calls(&handle, Outcome::Failure, 6);
    let said: Vec<String> = events
        .with("state")
        .iter()
        .map(|e| format!("{} {}", e["level"], e["message"]))
        .collect();
    assert_eq!(
        said,
        [
            "WARN circuit breaker would open: a threshold is reached",
            "INFO circuit breaker back under its thresholds",
            "WARN circuit breaker would open: a threshold is reached",
        ]
    );
    assert_eq!(handle.state(), CircuitState::MetricsOnly);
    assert_eq!(
        events.with("from").len(),
        1,
        "only the move to metrics-only itself"
    );
}
