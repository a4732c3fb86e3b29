//! Fault injection under a paused clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use resilience_layers::fault::{FaultHandle, FaultLayer, InjectedFault, MAX_REQUEST_LATENCY};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};

fn counting() -> (
    Arc<AtomicUsize>,
    impl Service<u64, Response = u64, Error = std::io::Error, Future: Send> + Clone + Send + Sync,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = service_fn({
        let calls = calls.clone();
        move |x: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(x) }
        }
    });
    (calls, svc)
}

#[tokio::test(start_paused = true)]
async fn off_by_default() {
    let faults = FaultHandle::new("test");
    let (calls, inner) = counting();
    let svc = FaultLayer::new(faults.clone()).layer(inner);
    let start = Instant::now();
    for i in 0..100 {
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    let snap = faults.snapshot();
    assert_eq!((snap.injected_errors_total, snap.delayed_total), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_and_can_be_changed_live() {
    let faults = FaultHandle::new("test");
    let (_, inner) = counting();
    let svc = FaultLayer::new(faults.clone()).layer(inner);
    faults.set_latency(Duration::from_millis(250));
    let mut fut = task::spawn(svc.clone().oneshot(1));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(249)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(assert_ready_ok!(fut.poll()), 1);

    faults.set_latency(Duration::ZERO);
    let start = Instant::now();
    svc.oneshot(2).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(faults.snapshot().delayed_total, 1);
}

#[tokio::test(start_paused = true)]
async fn error_rate_fails_about_that_fraction_without_calling_inner() {
    let faults = FaultHandle::new("test");
    let (calls, inner) = counting();
    let svc = FaultLayer::new(faults.clone()).layer(inner);
    faults.set_error_rate(0.3).unwrap();
    let mut failed = 0;
    for i in 0..2000 {
        match svc.clone().oneshot(i).await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.is::<InjectedFault>());
                failed += 1;
            }
        }
    }
    assert!(
        (450..=750).contains(&failed),
        "{failed} of 2000 failed at rate 0.3"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2000 - failed);
    assert_eq!(faults.snapshot().injected_errors_total, failed as u64);

    faults.set_error_rate(1.0).unwrap();
    assert!(svc.clone().oneshot(0).await.is_err());
    faults.reset();
    assert!(svc.oneshot(0).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_request_can_ask_for_latency_through_a_hook() {
    let faults = FaultHandle::new("test");
    let (_, inner) = counting();
    // The request value is its own latency in ms, capped like the header.
    let svc = FaultLayer::new(faults)
        .with_request_latency(|ms: &u64| Some(Duration::from_millis(*ms).min(MAX_REQUEST_LATENCY)))
        .layer(inner);
    let start = Instant::now();
    svc.clone().oneshot(40).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    let start = Instant::now();
    svc.oneshot(3_600_000).await.unwrap();
    assert_eq!(start.elapsed(), MAX_REQUEST_LATENCY);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_simulate_latency_header_adds_latency() {
    use resilience_layers::http::SimulateLatencyHeader;

    let faults = FaultHandle::new("test");
    faults.set_latency(Duration::from_millis(10));
    let svc = FaultLayer::new(faults)
        .with_request_latency(SimulateLatencyHeader)
        .layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, std::io::Error>(())
        }));
    for (value, want_ms) in [
        (Some("250ms"), 260),
        (Some("250"), 260),
        (Some("garbage"), 10),
        (Some("2h"), 30_010),
        (None, 10),
    ] {
        let mut req = http::Request::builder();
        if let Some(value) = value {
            req = req.header("X-Simulate-Latency", value);
        }
        let start = Instant::now();
        svc.clone().oneshot(req.body(()).unwrap()).await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(want_ms),
            "header {value:?}"
        );
    }
}

#[test]
fn the_service_and_its_future_are_send_and_sync() {
    fn check<S: Service<u64, Future: Send + 'static> + Send + Sync + 'static>(_: S) {}
    check(FaultLayer::new(FaultHandle::new("test")).layer(counting().1));
}

#[tokio::test(start_paused = true)]
async fn each_injector_is_named_and_a_stacks_takes_the_stacks_name() {
    let faults = FaultHandle::new("users");
    assert_eq!(
        (faults.name(), faults.snapshot().name.as_str()),
        ("users", "users")
    );
    assert!(format!("{faults:?}").contains("users"));

    let config: resilience_layers::stack::StackConfig =
        toml::from_str("[fault]\nerror_rate = 1.0").unwrap();
    let stack = config.into_layer("orders").unwrap();
    let handle = stack.fault().expect("the stack has a fault layer");
    assert_eq!(handle.name(), "orders");
    let err = stack.layer(counting().1).oneshot(1).await.unwrap_err();
    assert!(err.downcast_ref::<InjectedFault>().is_some());
    let snapshot = stack.snapshot();
    assert_eq!(snapshot.faults.len(), 1);
    assert_eq!(snapshot.faults[0].name, "orders");
    assert_eq!(snapshot.faults[0].injected_errors_total, 1);
}
