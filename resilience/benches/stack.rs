//! What the whole composed stack adds to a bare call, on the success path, single-threaded.
//!
//! Each iteration is one `poll_ready` + `call` + one poll of the response future with a no-op
//! waker, inside a tokio runtime context (the deadline and timeout layers need its clock);
//! the service answers at once, so the numbers are the layers' own overhead.
//!
//! `cargo bench -p resilience-layers --bench stack`
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use resilience_layers::{
    bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig, retry::RetryConfig,
    stack::StackConfig,
};
use tower::{Layer, Service, service_fn};

/// One call, polled once; the service is always ready and answers at once.
fn call_once<S: Service<u64>>(svc: &mut S, req: u64) -> S::Response
where
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Ready(Err(e)) => panic!("failed: {e:?}"),
        Poll::Pending => panic!("pending"),
    }
}

/// The size of `svc`'s response future, in bytes: it is built and moved through every layer
/// on each call, so it is part of the cost.
fn future_size<S: Service<u64>>(svc: &mut S) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = svc.call(1);
    let size = std::mem::size_of_val(&fut);
    let _ = pin!(fut).poll(&mut cx);
    size
}

fn full() -> StackConfig {
    StackConfig {
        cache: None,
        rate_limit: None,
        fallback: None,
        bulkhead: Some(BulkheadConfig {
            max_concurrent: 100,
            ..Default::default()
        }),
        deadline: Some(Duration::from_secs(5)),
        retry: Some(RetryConfig::default()),
        hedge: None,
        circuit_breaker: Some(CircuitBreakerConfig::default()),
        attempt_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    }
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let bare = service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)));

    let mut group = c.benchmark_group("stack");
    group.bench_function("bare", |b| {
        let mut svc = bare;
        b.iter(|| call_once(&mut svc, black_box(1)))
    });

    let variants: [(&str, StackConfig); 7] = [
        ("all", full()),
        ("none", StackConfig::default()),
        (
            "bulkhead",
            StackConfig {
                bulkhead: full().bulkhead,
                ..Default::default()
            },
        ),
        (
            "deadline",
            StackConfig {
                deadline: full().deadline,
                ..Default::default()
            },
        ),
        (
            "retry",
            StackConfig {
                retry: full().retry,
                ..Default::default()
            },
        ),
        (
            "circuit_breaker",
            StackConfig {
                circuit_breaker: full().circuit_breaker,
                ..Default::default()
            },
        ),
        (
            "attempt_timeout",
            StackConfig {
                attempt_timeout: full().attempt_timeout,
                ..Default::default()
            },
        ),
    ];
    for (name, config) in variants {
        let layer = config.into_layer("bench").unwrap();
        let mut svc = layer.layer(bare);
        eprintln!(
            "stack/{name}: response future {} bytes",
            future_size(&mut svc)
        );
        group.bench_function(name, |b| b.iter(|| call_once(&mut svc, black_box(1))));
    }
    group.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
