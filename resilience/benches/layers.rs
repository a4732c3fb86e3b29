//! Per-call cost of the bulkhead, timeout, deadline, retry and fault layers on a bare
//! `service_fn`, next to tower's own layers where tower has one.
//!
//! Each iteration is one `poll_ready` + `call` + one poll of the response future with a no-op
//! waker, inside a current-thread tokio runtime (entered, for the timers). The inner service
//! is always ready, so this is the overhead a layer adds to a call that succeeds at once.
//!
//! Run: `cargo bench -p resilience-layers --bench layers`.
use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use resilience_layers::{
    bulkhead::{BulkheadConfig, BulkheadLayer},
    fault::{FaultHandle, FaultLayer},
    retry::{RetryConfig, RetryLayer},
    timeout::{AttemptTimeoutLayer, DeadlineLayer},
};
use tower::{
    Layer, Service,
    limit::ConcurrencyLimitLayer,
    retry::{Policy, RetryLayer as TowerRetryLayer},
    service_fn,
    timeout::TimeoutLayer,
};

/// One ready-to-complete call through `svc`.
#[inline]
fn call_once<S>(svc: &mut S, cx: &mut Context<'_>) -> S::Response
where
    S: Service<u64>,
{
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("service not ready"),
    }
    let fut = pin!(svc.call(black_box(7)));
    match fut.poll(cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("response not ready on the first poll"),
    }
}

fn bare()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x)))
}

/// A policy that never retries: tower's `Retry` at its cheapest.
#[derive(Clone)]
struct NeverRetry;

impl<E> Policy<u64, u64, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, _: &mut Result<u64, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn bench<S: Service<u64>>(c: &mut Criterion, name: &str, mut svc: S) {
    let mut cx = Context::from_waker(Waker::noop());
    c.bench_function(name, |b| b.iter(|| call_once(&mut svc, &mut cx)));
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    bench(c, "bare service_fn", bare());

    let bulkhead = BulkheadLayer::new(
        "bench",
        BulkheadConfig {
            max_concurrent: 1024,
            max_wait: Duration::ZERO,
            adaptive: None,
        },
    )
    .unwrap();
    bench(c, "bulkhead (wait 0)", bulkhead.layer(bare()));
    let waiting = BulkheadLayer::new(
        "bench-wait",
        BulkheadConfig {
            max_concurrent: 1024,
            max_wait: Duration::from_millis(10),
            adaptive: None,
        },
    )
    .unwrap();
    bench(c, "bulkhead (wait 10ms)", waiting.layer(bare()));
    bench(
        c,
        "tower ConcurrencyLimit",
        ConcurrencyLimitLayer::new(1024).layer(bare()),
    );

    let attempt = AttemptTimeoutLayer::new("bench", Duration::from_secs(1)).unwrap();
    bench(c, "attempt timeout", attempt.layer(bare()));
    bench(
        c,
        "tower Timeout",
        TimeoutLayer::new(Duration::from_secs(1)).layer(bare()),
    );
    let deadline = DeadlineLayer::new("bench", Duration::from_secs(1)).unwrap();
    bench(c, "deadline", deadline.layer(bare()));

    let with_budget = RetryLayer::new("bench", RetryConfig::default()).unwrap();
    bench(c, "retry (budget)", with_budget.layer(bare()));
    let no_budget = RetryLayer::new(
        "bench-nobudget",
        RetryConfig {
            budget: None,
            ..Default::default()
        },
    )
    .unwrap();
    bench(c, "retry (no budget)", no_budget.layer(bare()));
    bench(
        c,
        "tower Retry (never retries)",
        TowerRetryLayer::new(NeverRetry).layer(bare()),
    );

    bench(
        c,
        "fault (off)",
        FaultLayer::new(FaultHandle::new("bench")).layer(bare()),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = layers
}
criterion_main!(benches);
