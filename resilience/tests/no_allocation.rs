//! Subscriptions cost nothing while nobody subscribes: no allocation on a call that passes the
//! stack, and a rejection allocates its error and nothing more, whether nobody ever
//! subscribed, every subscription ended, or one is live (the channel's slots are made once).
//!
//! Counted by a global allocator wrapper, so this runs without the test harness (whose own
//! threads allocate): one thread, one pass, `cargo test --test no_allocation`.

use std::alloc::System;

use futures_util::FutureExt;
use resilience_layers::{BoxError, stack::StackConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations made while running `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

/// `poll_ready` then `call`, driven to completion at once (the service is always ready).
fn call<S: Service<u32>>(svc: &mut S, x: u32) -> Result<S::Response, S::Error> {
    ready_and_call(svc, x)
        .now_or_never()
        .expect("an always-ready service answers at once")
}

async fn ready_and_call<S: Service<u32>>(svc: &mut S, x: u32) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(x).await
}

fn main() {
    let config: StackConfig =
        toml::from_str("[bulkhead]\nmax_concurrent = 4\n[retry]\n[circuit_breaker]\n").unwrap();
    let layer = config.into_layer("no-alloc").unwrap();
    let breaker = layer.circuit_breaker().unwrap();
    let mut svc = layer.layer(service_fn(|x: u32| {
        std::future::ready(Ok::<_, BoxError>(x))
    }));
    let mut calls = |n: u32| {
        allocations(|| {
            for i in 0..n {
                call(&mut svc, i).unwrap();
            }
        })
    };
    calls(16); // warm up: thread views, lazily made state
    assert_eq!(calls(1000), 0, "a call through the stack, never subscribed");
    drop((
        breaker.subscribe(),
        layer.bulkhead().unwrap().subscribe(),
        layer.retry().unwrap().subscribe(),
    ));
    assert_eq!(calls(1000), 0, "every subscription ended");

    // A rejection allocates its boxed error, one allocation, and nothing for the events.
    breaker.force_open();
    let rejections = |n: usize| {
        allocations(|| {
            for _ in 0..n {
                drop(breaker.try_acquire().unwrap_err());
            }
        })
    };
    rejections(4);
    assert_eq!(rejections(100), 100, "ended subscriptions: the error only");
    let mut live = breaker.subscribe();
    rejections(4);
    assert_eq!(
        rejections(100),
        100,
        "a live subscription: events into made slots"
    );
    let mut received = 0;
    while live.try_recv().is_ok() {
        received += 1;
    }
    assert_eq!(received, 104, "every rejection was reported");
    fallback_allocates_nothing_on_the_happy_path();
    println!("no_allocation: ok");
}

/// A stack with a fallback given: a success allocates nothing (the fallback's future is never
/// made), and an open circuit answered by the fallback allocates the rejection only.
fn fallback_allocates_nothing_on_the_happy_path() {
    let config: StackConfig = toml::from_str(
        "[fallback]\non = [\"circuit_open\", \"failure\"]\n[retry]\n[circuit_breaker]\n",
    )
    .unwrap();
    let layer = config.into_layer("no-alloc-fallback").unwrap();
    let fallback = layer
        .fallback_layer(|_: resilience_layers::fallback::Fault<u32>| 0)
        .unwrap();
    let mut svc = fallback.layer(layer.layer(service_fn(|x: u32| {
        std::future::ready(Ok::<_, BoxError>(x + 1))
    })));
    let mut calls = |n: u32| {
        allocations(|| {
            for i in 0..n {
                assert_eq!(call(&mut svc, i).unwrap(), i + 1);
            }
        })
    };
    calls(16);
    assert_eq!(calls(1000), 0, "a success through a stack with a fallback");
    layer.circuit_breaker().unwrap().force_open();
    let mut answered = |n: u32| {
        allocations(|| {
            for i in 0..n {
                assert_eq!(call(&mut svc, i).unwrap(), 0);
            }
        })
    };
    answered(4);
    assert_eq!(answered(100), 100, "an answered rejection: its error only");
    assert_eq!(layer.fallback().unwrap().snapshot().served_total, 104);
}
