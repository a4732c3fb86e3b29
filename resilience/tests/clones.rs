//! Clones of a breaker service share one breaker, whichever thread they run on: clones share
//! a per-thread view of it (so cloning does not allocate; tower's `Retry` clones on every
//! call), and a clone used on another thread makes its own view there first.

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use resilience_layers::{
    Outcome,
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState},
};
use tower::{Layer, Service, service_fn};

/// One call, polled once: whether it succeeded.
fn call_once<S: Service<u64, Response = u64>>(svc: &mut S) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    matches!(pin!(svc.call(7)).poll(&mut cx), Poll::Ready(Ok(7)))
}

fn bare() -> impl Service<u64, Response = u64, Error = Infallible> + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

#[test]
fn a_chain_of_clones_reports_to_one_breaker() {
    let layer = CircuitBreakerLayer::new("clones", CircuitBreakerConfig::default()).unwrap();
    let mut svc = layer.layer(bare());
    for _ in 0..50 {
        // What tower's `Retry` does on every call: call through a fresh clone of the last.
        let mut clone = svc.clone();
        assert!(call_once(&mut clone));
        svc = clone;
    }
    assert_eq!(layer.handle().snapshot().calls, 50);
}

#[test]
fn clones_used_on_other_threads_report_to_the_same_breaker() {
    let layer = CircuitBreakerLayer::new("threads", CircuitBreakerConfig::default()).unwrap();
    let svc = layer.layer(bare());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let mut svc = svc.clone();
            scope.spawn(move || {
                for _ in 0..500 {
                    assert!(call_once(&mut svc));
                }
            });
        }
    });
    assert_eq!(layer.handle().snapshot().calls, 100); // the window's size: it is full
    assert_eq!(layer.handle().snapshot().failures, 0);
}

#[test]
fn a_clone_moved_to_another_thread_sees_the_breaker_open() {
    let layer = CircuitBreakerLayer::new("moved", CircuitBreakerConfig::default()).unwrap();
    let mut svc = layer.layer(bare());
    assert!(call_once(&mut svc)); // this thread's view exists now
    let handle = layer.handle();
    while handle.state() == CircuitState::Closed {
        handle.try_acquire().unwrap().record(Outcome::Failure);
    }
    let mut moved = svc.clone();
    let rejected = std::thread::spawn(move || !call_once(&mut moved))
        .join()
        .unwrap();
    assert!(rejected);
    assert!(!call_once(&mut svc));
    assert_eq!(handle.snapshot().rejected_total, 2);
}
