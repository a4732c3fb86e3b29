//! The circuit breaker's behaviour through its tower service and handle, on tokio's paused
//! clock (no real sleeps).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use resilience_layers::{
    BoxError, Error, Outcome,
    circuit_breaker::{
        CircuitBreaker, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer,
        CircuitState, SlidingWindow,
    },
};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

/// What the test service does with a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Ok,
    Fail,
    /// Succeeds after this many milliseconds.
    SlowOk(u64),
    /// Fails in a way the classifier ignores.
    Ignore,
    /// Never completes.
    Hang,
}

type Classifier = fn(Result<&&'static str, &&'static str>) -> Outcome;

fn classify(r: Result<&&'static str, &&'static str>) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        Err(&"ignore") => Outcome::Ignored,
        Err(_) => Outcome::Failure,
    }
}

/// A service that counts how often it is polled for readiness and called.
#[derive(Clone, Default)]
struct Backend {
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Service<Call> for Backend {
    type Response = &'static str;
    type Error = &'static str;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, &'static str>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match call {
                Call::Ok => Ok("ok"),
                Call::Fail => Err("fail"),
                Call::SlowOk(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok("slow")
                }
                Call::Ignore => Err("ignore"),
                Call::Hang => std::future::pending().await,
            }
        })
    }
}

type Svc = CircuitBreaker<Backend, Classifier>;

fn breaker(config: CircuitBreakerConfig) -> (Svc, CircuitBreakerHandle, Backend) {
    let layer = CircuitBreakerLayer::new("backend", config)
        .unwrap()
        .with_classifier(classify as Classifier);
    let handle = layer.handle();
    let backend = Backend::default();
    (layer.layer(backend.clone()), handle, backend)
}

/// Window of 10, at least 4 calls, 50 %, open 10 s, 2 probes.
fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 10 },
        minimum_calls: 4,
        failure_rate_threshold: 50.0,
        wait_in_open: Duration::from_secs(10),
        permitted_calls_in_half_open: 2,
        ..Default::default()
    }
}

async fn call(svc: &mut Svc, c: Call) -> Result<&'static str, BoxError> {
    svc.ready().await?.call(c).await
}

async fn calls(svc: &mut Svc, cs: &[Call]) {
    for &c in cs {
        let _ = call(svc, c).await;
    }
}

fn kind(err: BoxError) -> &'static str {
    match Error::from_boxed(err) {
        Error::CircuitOpen(_) => "open",
        Error::HalfOpenFull(_) => "half_open_full",
        Error::Inner(_) => "inner",
        _ => "other",
    }
}

fn retry_after(err: BoxError) -> Duration {
    match Error::from_boxed(err) {
        Error::CircuitOpen(e) => e.retry_after(),
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

/// Trips `svc` (config(): 4 failures).
async fn trip(svc: &mut Svc, handle: &CircuitBreakerHandle) {
    calls(svc, &[Call::Fail; 4]).await;
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn no_trip_before_minimum_calls() {
    let (mut svc, handle, _) = breaker(config());
    calls(&mut svc, &[Call::Fail; 3]).await;
    assert_eq!(handle.state(), CircuitState::Closed, "3 calls < minimum 4");
    assert_eq!(handle.snapshot().failure_rate, 100.0);
    // The fourth call reaches the minimum; even a success then trips (3/4 failed).
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn trips_exactly_at_the_threshold_and_not_just_below() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        minimum_calls: 10,
        failure_rate_threshold: 30.0,
        ..config()
    });
    calls(&mut svc, &[Call::Ok; 8]).await;
    calls(&mut svc, &[Call::Fail; 2]).await;
    assert_eq!(handle.snapshot().failure_rate, 20.0);
    assert_eq!(handle.state(), CircuitState::Closed, "2/10 is below 30 %");
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed, "still 2/10");
    call(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.snapshot().failures, 3);
    assert_eq!(handle.state(), CircuitState::Open, "3/10 is exactly 30 %");
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count_even_when_they_succeed() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        slow_call_duration: Some(Duration::from_secs(1)),
        slow_call_rate_threshold: 50.0,
        ..config()
    });
    calls(&mut svc, &[Call::Ok, Call::SlowOk(999), Call::SlowOk(1000)]).await;
    let snap = handle.snapshot();
    assert_eq!(
        (snap.calls, snap.failures, snap.slow_calls),
        (3, 0, 1),
        "1000 ms is slow, 999 ms not"
    );
    assert_eq!(handle.state(), CircuitState::Closed, "below the minimum");
    call(&mut svc, Call::SlowOk(5000)).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Open, "2 of 4 slow: 50 %");
}

#[tokio::test(start_paused = true)]
async fn count_window_keeps_exactly_the_last_n_calls() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 4 },
        ..config()
    });
    calls(&mut svc, &[Call::Fail, Call::Ok, Call::Ok, Call::Ok]).await;
    assert_eq!(handle.snapshot().failures, 1);
    // The fifth call pushes the first (the failure) out.
    call(&mut svc, Call::Ok).await.unwrap();
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (4, 0));
    calls(&mut svc, &[Call::Fail]).await;
    assert_eq!(handle.state(), CircuitState::Closed, "1 of the last 4");
    calls(&mut svc, &[Call::Fail]).await;
    assert_eq!(handle.state(), CircuitState::Open, "2 of the last 4");
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_calls() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        window: SlidingWindow::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        },
        ..config()
    });
    calls(&mut svc, &[Call::Fail; 3]).await;
    advance(Duration::from_secs(5)).await;
    assert_eq!(
        handle.snapshot().calls,
        3,
        "5 s later the failures are still in"
    );
    advance(Duration::from_secs(6)).await;
    assert_eq!(handle.snapshot().calls, 0, "11 s later they are gone");
    calls(&mut svc, &[Call::Ok; 3]).await;
    call(&mut svc, Call::Fail).await.unwrap_err();
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (4, 1));
    assert_eq!(handle.state(), CircuitState::Closed, "1/4, not 4/7");
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_change_nothing_and_free_their_permit() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        permitted_calls_in_half_open: 1,
        ..config()
    });
    calls(&mut svc, &[Call::Ignore; 10]).await;
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (0, 0));

    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    // The single probe is ignored: its slot is free again and the state is unchanged.
    assert_eq!(
        kind(call(&mut svc, Call::Ignore).await.unwrap_err()),
        "inner"
    );
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_moves_to_half_open_only_after_the_wait() {
    let (mut svc, handle, backend) = breaker(config());
    trip(&mut svc, &handle).await;
    let before = backend.calls.load(Ordering::SeqCst);

    advance(Duration::from_millis(9_999)).await;
    let err = call(&mut svc, Call::Ok).await.unwrap_err();
    assert_eq!(retry_after(err), Duration::from_millis(1));
    assert_eq!(handle.snapshot().retry_after_ms, Some(1));
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        before,
        "rejected calls never reach the backend"
    );

    advance(Duration::from_millis(1)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(backend.calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_n_probes_and_rejects_the_next() {
    let (mut svc, handle, _) = breaker(config());
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    let p1 = handle.try_acquire().expect("first probe");
    let p2 = handle.try_acquire().expect("second probe");
    assert_eq!(p1.state(), CircuitState::HalfOpen);
    assert_eq!(kind(handle.try_acquire().unwrap_err()), "half_open_full");
    assert_eq!(
        kind(call(&mut svc, Call::Ok).await.unwrap_err()),
        "half_open_full"
    );
    assert_eq!(handle.snapshot().probes_in_flight, 2);
    drop(p2);
    assert_eq!(
        handle.snapshot().probes_in_flight,
        1,
        "a dropped probe gives its slot back"
    );
    let p3 = handle.try_acquire().expect("the freed slot");
    p1.record(Outcome::Success);
    p3.record(Outcome::Success);
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_results_decide_closed_or_open() {
    let (mut svc, handle, _) = breaker(config());
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(
        handle.state(),
        CircuitState::HalfOpen,
        "waits for both probes"
    );
    call(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "1 of 2 probes failed: 50 %"
    );

    advance(Duration::from_secs(10)).await;
    calls(&mut svc, &[Call::Ok, Call::Ok]).await;
    assert_eq!(handle.state(), CircuitState::Closed);
    let snap = handle.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (0, 0),
        "closing starts an empty window"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_grows_while_probes_fail_up_to_the_cap() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        wait_multiplier: 2.0,
        max_wait_in_open: Some(Duration::from_secs(25)),
        permitted_calls_in_half_open: 1,
        ..config()
    });
    trip(&mut svc, &handle).await;
    let mut waits = vec![retry_after(call(&mut svc, Call::Ok).await.unwrap_err())];
    for _ in 0..3 {
        advance(*waits.last().unwrap()).await;
        call(&mut svc, Call::Fail).await.unwrap_err(); // the probe fails
        waits.push(retry_after(call(&mut svc, Call::Ok).await.unwrap_err()));
    }
    let secs = |s| Duration::from_secs(s);
    assert_eq!(waits, [secs(10), secs(20), secs(25), secs(25)]);

    // A successful probe resets the wait.
    advance(secs(25)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    trip(&mut svc, &handle).await;
    assert_eq!(
        retry_after(call(&mut svc, Call::Ok).await.unwrap_err()),
        secs(10)
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_reopens_after_its_maximum_time() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        max_wait_in_half_open: Some(Duration::from_secs(5)),
        ..config()
    });
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    let hung = handle.try_acquire().unwrap();
    advance(Duration::from_millis(4_999)).await;
    let second = handle.try_acquire().expect("still half-open");
    second.record(Outcome::Success);
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    advance(Duration::from_millis(1)).await;
    assert_eq!(kind(call(&mut svc, Call::Ok).await.unwrap_err()), "open");
    assert_eq!(handle.state(), CircuitState::Open);
    // The hung probe finally answers: it belongs to an older generation, nothing changes.
    hung.record(Outcome::Success);
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn forced_open_disabled_and_metrics_only() {
    let (mut svc, handle, backend) = breaker(config());

    handle.force_open();
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    let err = call(&mut svc, Call::Ok).await.unwrap_err();
    assert_eq!(
        retry_after(err),
        Duration::ZERO,
        "forced open has no known end"
    );
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        kind(call(&mut svc, Call::Ok).await.unwrap_err()),
        "open",
        "no wait ends it"
    );
    assert_eq!(backend.calls.load(Ordering::SeqCst), 0);

    handle.disable();
    calls(&mut svc, &[Call::Fail; 20]).await;
    assert_eq!(handle.state(), CircuitState::Disabled);
    assert_eq!(handle.snapshot().calls, 0, "disabled records nothing");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 20);

    handle.metrics_only();
    calls(&mut svc, &[Call::Fail; 20]).await;
    assert_eq!(handle.state(), CircuitState::MetricsOnly, "never trips");
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (10, 10), "but records");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 40);

    handle.reset();
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.snapshot().calls, 0, "reset empties the window");
    trip(&mut svc, &handle).await;
    handle.reset();
    call(&mut svc, Call::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let (mut a, handle, _) = breaker(config());
    let mut b = a.clone();
    calls(&mut a, &[Call::Fail; 2]).await;
    calls(&mut b, &[Call::Fail; 2]).await;
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(kind(call(&mut a, Call::Ok).await.unwrap_err()), "open");
    assert_eq!(kind(call(&mut b, Call::Ok).await.unwrap_err()), "open");
    assert_eq!(handle.snapshot().rejected_total, 2);
    // Services made from the same layer value share it too.
    let layer = CircuitBreakerLayer::new("shared", config()).unwrap();
    let (mut x, mut y) = (
        layer.layer(Backend::default()),
        layer.layer(Backend::default()),
    );
    layer.handle().force_open();
    assert!(x.ready().await.unwrap().call(Call::Ok).await.is_err());
    assert!(y.ready().await.unwrap().call(Call::Ok).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_stale_result_from_before_a_transition_changes_nothing() {
    let (mut svc, handle, _) = breaker(config());
    let old = handle.try_acquire().unwrap();
    handle.reset();
    old.record(Outcome::Failure);
    assert_eq!(handle.snapshot().calls, 0);

    // A call started while closed that ends after the trip does not count either.
    let slow = handle.try_acquire().unwrap();
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    let probe = handle.try_acquire().unwrap();
    slow.record(Outcome::Failure);
    assert_eq!(
        handle.snapshot().failures,
        0,
        "half-open counts only its probes"
    );
    probe.record(Outcome::Success);
    handle.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_whatever_the_rate() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 100 },
        minimum_calls: 100,
        consecutive_failures: Some(3),
        ..config()
    });
    calls(
        &mut svc,
        &[Call::Fail, Call::Fail, Call::Ok, Call::Fail, Call::Fail],
    )
    .await;
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "a success breaks the run"
    );
    calls(&mut svc, &[Call::Ignore]).await;
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "ignored neither breaks nor extends it"
    );
    calls(&mut svc, &[Call::Fail]).await;
    assert_eq!(handle.state(), CircuitState::Open);
}

/// tower contract: an open circuit answers without polling the inner service.
#[tokio::test(start_paused = true)]
async fn inner_service_is_not_polled_when_open() {
    let (mut svc, handle, backend) = breaker(config());
    trip(&mut svc, &handle).await;
    let (polls, calls_made) = (
        backend.polls.load(Ordering::SeqCst),
        backend.calls.load(Ordering::SeqCst),
    );
    let mut ready = tokio_test::task::spawn(());
    ready.enter(|cx, _| {
        assert!(
            matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))),
            "rejection is ready at once"
        );
    });
    let mut fut = tokio_test::task::spawn(svc.call(Call::Ok));
    let err = tokio_test::assert_ready_err!(fut.poll());
    assert_eq!(kind(err), "open");
    assert_eq!(backend.polls.load(Ordering::SeqCst), polls);
    assert_eq!(backend.calls.load(Ordering::SeqCst), calls_made);
}

/// tower contract: dropping a response future gives its probe slot back and records nothing.
#[tokio::test(start_paused = true)]
async fn dropped_response_future_releases_the_probe_slot() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        permitted_calls_in_half_open: 1,
        ..config()
    });
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    let mut hanging = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Hang));
    tokio_test::assert_pending!(hanging.poll());
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    assert_eq!(
        kind(call(&mut svc, Call::Ok).await.unwrap_err()),
        "half_open_full"
    );
    drop(hanging);
    let snap = handle.snapshot();
    assert_eq!(
        (snap.probes_in_flight, snap.calls),
        (0, 0),
        "freed, nothing recorded"
    );
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

/// tower contract: a clone does not inherit the permit its original reserved in `poll_ready`.
#[tokio::test(start_paused = true)]
async fn clones_do_not_inherit_readiness() {
    let (mut svc, handle, _) = breaker(CircuitBreakerConfig {
        permitted_calls_in_half_open: 1,
        ..config()
    });
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(10)).await;
    svc.ready().await.unwrap(); // reserves the only probe slot
    let mut clone = svc.clone();
    assert_eq!(
        kind(
            clone
                .ready()
                .await
                .unwrap()
                .call(Call::Ok)
                .await
                .unwrap_err()
        ),
        "half_open_full",
        "the clone had to ask for its own permit"
    );
    svc.call(Call::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    let dropped_ready = {
        let mut c = svc.clone();
        c.ready().await.unwrap();
        c
    };
    drop(dropped_ready); // a reserved permit dropped with its service records nothing
    assert_eq!(handle.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn snapshot_serializes_as_the_contract_says() {
    let (mut svc, handle, _) = breaker(config());
    trip(&mut svc, &handle).await;
    advance(Duration::from_secs(4)).await;
    let _ = call(&mut svc, Call::Ok).await;
    let json = serde_json::to_value(handle.snapshot()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "backend", "state": "open", "calls": 4, "failures": 4, "slow_calls": 0,
            "failure_rate": 100.0, "slow_call_rate": 0.0, "probes_in_flight": 0,
            "time_in_state_ms": 4000, "retry_after_ms": 6000, "rejected_total": 1,
            "transitions_total": 1
        })
    );
}

#[test]
fn a_bad_config_is_refused_with_the_field_name() {
    let err = CircuitBreakerLayer::new(
        "x",
        CircuitBreakerConfig {
            permitted_calls_in_half_open: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.field(), "permitted_calls_in_half_open");
}

#[test]
fn handle_is_send_sync_and_debug() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    assert_traits::<CircuitBreakerHandle>();
    fn assert_send<T: Send>() {}
    assert_send::<resilience_layers::circuit_breaker::CallPermit>();
    let handle = CircuitBreakerLayer::new("dbg", config()).unwrap().handle();
    assert_eq!(
        format!("{handle:?}"),
        r#"CircuitBreakerHandle { name: "dbg", state: Closed }"#
    );
}

/// A recorder that keeps every counter and gauge by its rendered key.
#[derive(Default)]
struct TestRecorder(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl TestRecorder {
    fn cell(&self, key: &metrics::Key) -> Arc<AtomicU64> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(u64::MAX, |c| c.load(Ordering::SeqCst))
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_the_naming_contract() {
    let recorder = TestRecorder::default();
    // Handles are registered when the breaker is built, with the recorder in place then.
    let (mut svc, handle, _) = metrics::with_local_recorder(&recorder, || {
        breaker(CircuitBreakerConfig {
            slow_call_duration: Some(Duration::from_secs(1)),
            ..config()
        })
    });
    let gauge = || f64::from_bits(recorder.get("resilience_circuit_state{name=backend}"));
    assert_eq!(gauge(), 0.0);
    // A transition series exists for each move the breaker can make, and for no other:
    // by itself closed -> open -> half_open -> closed | open, by hand from any state to
    // closed (reset), forced_open, disabled and metrics_only.
    let registered: Vec<String> = {
        let mut keys: Vec<String> = recorder
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("resilience_circuit_transitions_total"))
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    let states = [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "disabled",
        "metrics_only",
    ];
    let mut possible: Vec<String> = Vec::new();
    for from in states {
        for to in states {
            let automatic = matches!(
                (from, to),
                ("closed", "open") | ("open", "half_open") | ("half_open", "open")
            );
            let by_hand = matches!(to, "closed" | "forced_open" | "disabled" | "metrics_only");
            if from != to && (automatic || by_hand) {
                possible.push(format!(
                    "resilience_circuit_transitions_total{{from={from},name=backend,to={to}}}"
                ));
            }
        }
    }
    possible.sort();
    assert_eq!(registered.len(), 23);
    assert_eq!(registered, possible);
    calls(&mut svc, &[Call::Ok, Call::SlowOk(1500), Call::Ignore]).await;
    // 2 failures make 2 of 4 (50 %): open; the next 2 failures and 3 successes are rejected.
    calls(&mut svc, &[Call::Fail; 4]).await;
    calls(&mut svc, &[Call::Ok; 3]).await;
    assert_eq!(gauge(), 1.0);
    let outcome = |o: &str| {
        recorder.get(&format!(
            "resilience_circuit_calls_total{{name=backend,outcome={o}}}"
        ))
    };
    assert_eq!(
        [
            outcome("success"),
            outcome("slow_success"),
            outcome("ignored"),
            outcome("failure"),
            outcome("slow_failure")
        ],
        [1, 1, 1, 2, 0]
    );
    assert_eq!(
        recorder.get("resilience_circuit_rejected_total{name=backend}"),
        5
    );
    let transitions = |from: &str, to: &str| {
        recorder.get(&format!(
            "resilience_circuit_transitions_total{{from={from},name=backend,to={to}}}"
        ))
    };
    assert_eq!(transitions("closed", "open"), 1);
    advance(Duration::from_secs(10)).await;
    calls(&mut svc, &[Call::Ok, Call::Ok]).await;
    assert_eq!(
        (
            transitions("open", "half_open"),
            transitions("half_open", "closed")
        ),
        (1, 1)
    );
    assert_eq!(transitions("half_open", "open"), 0);
    assert_eq!(gauge(), 0.0);
    handle.disable();
    assert_eq!(gauge(), 4.0);
}
