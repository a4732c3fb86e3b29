//! Per-call cost of the circuit breaker: a bare `service_fn`, the same service behind a
//! closed breaker (count window of 100) and behind an open one (the rejection path), each on
//! one thread and on two threads sharing one breaker through clones.
//!
//! Futures are polled once with a no-op waker: the services are immediately ready, so what
//! is measured is the breaker, not a runtime. No `metrics` recorder is installed (the
//! handles are no-ops, as in a service that does not export metrics).
//!
//! `cargo bench -p resilience-layers --bench breaker`
#![allow(missing_docs, clippy::disallowed_types)] // std::time::Instant times the 2-thread runs

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use resilience_layers::{
    Outcome,
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState},
};
use tower::{Layer, Service};

/// One call: `poll_ready`, `call`, one poll of the future. Returns whether it succeeded.
#[inline]
fn call_once<S>(svc: &mut S, x: u64) -> bool
where
    S: Service<u64, Response = u64>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let fut = std::pin::pin!(svc.call(x));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
}

fn bare() -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send {
    tower::service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

fn closed() -> impl Service<u64, Response = u64, Future: Send> + Clone + Send {
    let layer = CircuitBreakerLayer::new("bench", CircuitBreakerConfig::default()).unwrap();
    layer.layer(bare())
}

fn open() -> impl Service<u64, Response = u64, Future: Send> + Clone + Send {
    let config = CircuitBreakerConfig {
        wait_in_open: Duration::from_secs(3600),
        ..Default::default()
    };
    let layer = CircuitBreakerLayer::new("bench", config).unwrap();
    let handle = layer.handle();
    for _ in 0..20 {
        handle.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(handle.state(), CircuitState::Open);
    layer.layer(bare())
}

/// Forced open by hand: rejected with no clock read (there is no wait to check).
fn forced_open() -> impl Service<u64, Response = u64, Future: Send> + Clone + Send {
    let layer = CircuitBreakerLayer::new("bench", CircuitBreakerConfig::default()).unwrap();
    layer.handle().force_open();
    layer.layer(bare())
}

/// Runs `iters` calls on each of two threads, each with its own clone of `svc`, and returns
/// the wall time (so the figure is the per-call time while the other thread also calls).
fn two_threads<S>(svc: &S, iters: u64, expect_ok: bool) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
{
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = svc.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        assert_eq!(call_once(&mut svc, black_box(i)), expect_ok);
                    }
                    start.elapsed()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .max()
            .unwrap()
    })
}

/// The shape of `resilience_layers::error::CircuitOpen` (whose constructor is the crate's own).
#[derive(Debug)]
struct LikeCircuitOpen(
    #[allow(dead_code)] &'static str,
    #[allow(dead_code)] Duration,
);

impl std::fmt::Display for LikeCircuitOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("open")
    }
}

impl std::error::Error for LikeCircuitOpen {}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));

    let mut svc = bare();
    group.bench_function("bare/1 thread", |b| {
        b.iter(|| call_once(&mut svc, black_box(1)))
    });
    let mut svc = closed();
    group.bench_function("closed/1 thread", |b| {
        b.iter(|| call_once(&mut svc, black_box(1)))
    });
    let mut svc = open();
    group.bench_function("open/1 thread", |b| {
        b.iter(|| call_once(&mut svc, black_box(1)))
    });

    let mut svc = forced_open();
    group.bench_function("forced open/1 thread", |b| {
        b.iter(|| call_once(&mut svc, black_box(1)))
    });

    // What the open path cannot avoid: one exact clock read (to admit the first call after
    // the wait as a probe, and to say how long is left) and the boxed error. tokio's clock
    // with `test-util` (a dev-dependency, so on here) first checks whether any runtime ever
    // paused time: one atomic load, so the two clock rows should match.
    group.bench_function("ref: tokio Instant::now", |b| {
        b.iter(tokio::time::Instant::now)
    });
    group.bench_function("ref: std Instant::now", |b| b.iter(Instant::now));
    group.bench_function("ref: boxed error like CircuitOpen", |b| {
        b.iter(|| {
            let e: resilience_layers::BoxError = Box::new(LikeCircuitOpen("bench", Duration::ZERO));
            black_box(e)
        })
    });

    let svc = bare();
    group.bench_function("bare/2 threads", |b| {
        b.iter_custom(|n| two_threads(&svc, n, true))
    });
    let svc = closed();
    group.bench_function("closed/2 threads", |b| {
        b.iter_custom(|n| two_threads(&svc, n, true))
    });
    let svc = open();
    group.bench_function("open/2 threads", |b| {
        b.iter_custom(|n| two_threads(&svc, n, false))
    });
    let svc = forced_open();
    group.bench_function("forced open/2 threads", |b| {
        b.iter_custom(|n| two_threads(&svc, n, false))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
