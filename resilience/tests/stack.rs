//! The composed stack's order, observed from the outside on a paused clock.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use resilience_layers::{
    BoxError, Error,
    circuit_breaker::CircuitState,
    deadline::current_deadline,
    stack::{ResilienceLayer, StackConfig},
};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

fn layer(toml_text: &str) -> ResilienceLayer {
    let config: StackConfig = toml::from_str(toml_text).unwrap();
    config.into_layer("dep").unwrap()
}

/// Retry first (top-level keys must precede tables, so each test's keys come first).
fn with_retry(extra: &str) -> String {
    format!(
        "{extra}\n[retry]\nmax_attempts = 3\nbackoff = {{ base = \"100ms\", max = \"1s\", jitter = \"none\" }}\n"
    )
}

/// A dependency that fails (or hangs for `hang`) and counts its calls.
fn dependency(
    calls: Arc<AtomicUsize>,
    hang: Option<Duration>,
) -> impl Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>> + Send,
> + Clone
+ Send {
    service_fn(move |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if let Some(hang) = hang {
                tokio::time::sleep(hang).await;
            }
            Err::<u32, BoxError>(format!("failed {x}").into())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_not_retried() {
    let layer = layer(&with_retry(
        "[circuit_breaker]\nwindow = { kind = \"count\", size = 2 }\nminimum_calls = 2\nwait_in_open = \"60s\"",
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = tower::Layer::layer(&layer, dependency(calls.clone(), None));

    // Attempt 1 and 2 fail and open the circuit; attempt 3 is refused, and the refusal ends
    // the request: retry does not spin on an open circuit.
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::CircuitOpen(_)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A new request fails fast: no call, no retry, no backoff sleep.
    let start = Instant::now();
    let retries_before = layer.retry().unwrap().snapshot().retries_total;
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::CircuitOpen(_)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        layer.retry().unwrap().snapshot().retries_total,
        retries_before
    );
    assert_eq!(layer.circuit_breaker().unwrap().state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_count_against_the_breaker() {
    let layer = layer(&with_retry(
        "attempt_timeout = \"50ms\"\n[circuit_breaker]\nminimum_calls = 50",
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = tower::Layer::layer(
        &layer,
        dependency(calls.clone(), Some(Duration::from_secs(10))),
    );

    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::Timeout(_)));
    // Three attempts of 50 ms, backoff 100 ms and 200 ms in between.
    assert_eq!(start.elapsed(), Duration::from_millis(450));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let breaker = layer.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failures),
        (3, 3),
        "each timed-out attempt is a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_spans_all_attempts_and_backoff() {
    let layer = layer(&with_retry(
        "deadline = \"250ms\"\nattempt_timeout = \"100ms\"",
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let hanging = service_fn(move |_: u32| {
        c.fetch_add(1, Ordering::SeqCst);
        s.lock()
            .unwrap()
            .push(current_deadline().map(|d| d.remaining()));
        async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<u32, BoxError>(0)
        }
    });
    let svc = tower::Layer::layer(&layer, hanging);

    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    let elapsed = start.elapsed();
    // Attempt 1 times out at 100 ms, backoff 100 ms, attempt 2 would start at 200 ms and
    // time out at 300 ms, past the deadline: the deadline ends the request at 250 ms.
    assert_eq!(elapsed, Duration::from_millis(250));
    assert!(matches!(Error::from_boxed(err), Error::DeadlineExceeded(_)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Each attempt saw the one deadline, shrinking.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            Some(Duration::from_millis(250)),
            Some(Duration::from_millis(50))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_bounds_whole_requests_retries_included() {
    let layer = layer(&with_retry("[bulkhead]\nmax_concurrent = 1"));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = tower::Layer::layer(&layer, dependency(calls.clone(), None));

    // The first request fails, and holds its permit through its backoff sleeps...
    let first = tokio::spawn(svc.clone().oneshot(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.bulkhead().unwrap().snapshot().in_use, 1);
    // ...so a second request is turned away even though nothing is calling the dependency.
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::BulkheadFull(_)));
    assert!(first.await.unwrap().is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(layer.bulkhead().unwrap().snapshot().in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn absent_pieces_are_not_applied() {
    let layer = layer("");
    let snapshot = layer.snapshot();
    assert!(
        snapshot.breakers.is_empty()
            && snapshot.bulkheads.is_empty()
            && snapshot.retries.is_empty()
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let err = tower::Layer::layer(&layer, dependency(calls.clone(), None))
        .oneshot(1)
        .await
        .unwrap_err();
    // The inner error, untouched, and a single call.
    assert!(matches!(Error::from_boxed(err), Error::Inner(e) if e.to_string() == "failed 1"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn one_classifier_drives_breaker_and_retry() {
    // Odd numbers are "not found": ignored by the breaker and never retried.
    let classify = |r: Result<&u32, &BoxError>| match r {
        Ok(_) => resilience_layers::Outcome::Success,
        Err(e) if e.to_string().ends_with(['1', '3', '5', '7', '9']) => {
            resilience_layers::Outcome::Ignored
        }
        Err(_) => resilience_layers::Outcome::Failure,
    };
    let layer = layer(&with_retry("[circuit_breaker]")).with_classifier(classify);
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = tower::Layer::layer(&layer, dependency(calls.clone(), None));

    svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "ignored: not retried");
    svc.oneshot(2).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 4, "failure: retried twice");
    let breaker = layer.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failures),
        (3, 3),
        "the ignored call was not recorded"
    );
}
