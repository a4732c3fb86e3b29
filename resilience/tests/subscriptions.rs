//! Subscriptions to breaker, bulkhead and retry events: the sequence and timing of what each
//! layer reports, on the paused clock. (That nothing is built or allocated while nobody
//! listens: `events::Channel`'s unit tests and `no_allocation.rs`.)

use std::time::Duration;

use resilience_layers::{
    BoxError, Outcome,
    bulkhead::{BulkheadConfig, BulkheadEvent, BulkheadLayer},
    circuit_breaker::{
        CircuitBreakerConfig, CircuitBreakerLayer, CircuitEvent, CircuitState, RejectReason,
        SlidingWindow,
    },
    events::{RecvError, Subscription, TryRecvError},
    retry::{BackoffConfig, BudgetConfig, Jitter, RetryConfig, RetryEvent},
    stack::StackConfig,
};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Everything waiting in `sub`, without waiting.
fn drain<E: Clone>(sub: &mut Subscription<E>) -> Vec<E> {
    let mut out = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(e) => out.push(e),
            Err(TryRecvError::Empty) => return out,
            Err(e) => panic!("{e:?}"),
        }
    }
}

fn breaker_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 4 },
        minimum_calls: 2,
        failure_rate_threshold: 50.0,
        wait_in_open: Duration::from_secs(5),
        permitted_calls_in_half_open: 1,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_reports_its_cycle_in_order_with_the_time_of_each_step() {
    let layer = CircuitBreakerLayer::new("sub-cycle", breaker_config()).unwrap();
    let handle = layer.handle();
    let mut events = handle.subscribe();
    let mut svc = layer.layer(service_fn(|fail: bool| async move {
        if fail { Err("down") } else { Ok(()) }
    }));
    let t0 = Instant::now();

    for _ in 0..2 {
        let _ = svc.ready().await.unwrap().call(true).await;
    }
    advance(Duration::from_secs(2)).await;
    let _ = svc.ready().await.unwrap().call(false).await; // rejected, 3 s left
    advance(Duration::from_secs(3)).await;
    let probe = handle.try_acquire().unwrap(); // the one probe
    assert!(handle.try_acquire().is_err()); // half-open full
    advance(Duration::from_millis(10)).await;
    probe.record(Outcome::Success);

    let got = drain(&mut events);
    let s = Duration::from_secs;
    let want = [
        CircuitEvent::StateChanged {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            at: t0,
        },
        CircuitEvent::Rejected {
            reason: RejectReason::Open { retry_after: s(3) },
            at: t0 + s(2),
        },
        CircuitEvent::StateChanged {
            from: CircuitState::Open,
            to: CircuitState::HalfOpen,
            at: t0 + s(5),
        },
        CircuitEvent::Rejected {
            reason: RejectReason::HalfOpenFull,
            at: t0 + s(5),
        },
        CircuitEvent::StateChanged {
            from: CircuitState::HalfOpen,
            to: CircuitState::Closed,
            at: t0 + s(5) + Duration::from_millis(10),
        },
    ];
    assert_eq!(got, want);
}

#[tokio::test(start_paused = true)]
async fn every_subscription_sees_every_event_and_manual_moves_are_events_too() {
    let handle = CircuitBreakerLayer::new("sub-manual", breaker_config())
        .unwrap()
        .handle();
    let mut a = handle.subscribe();
    handle.force_open();
    let mut b = handle.subscribe(); // sees only what follows
    assert!(handle.try_acquire().is_err());
    handle.reset();
    handle.metrics_only();
    for _ in 0..2 {
        handle.try_acquire().unwrap().record(Outcome::Failure);
    }
    let kinds = |events: Vec<CircuitEvent>| -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                CircuitEvent::StateChanged { from, to, .. } => format!("{from}->{to}"),
                CircuitEvent::Rejected { reason, .. } => format!("rejected {reason:?}"),
                CircuitEvent::ThresholdCrossed { exceeded, .. } => format!("over {exceeded}"),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let tail = [
        "rejected ForcedOpen",
        "forced_open->closed",
        "closed->metrics_only",
        "over true",
    ];
    let mut all = vec!["closed->forced_open"];
    all.extend(tail);
    assert_eq!(kinds(drain(&mut a)), all);
    assert_eq!(kinds(drain(&mut b)), tail);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_ends_when_the_breaker_is_dropped() {
    let handle = CircuitBreakerLayer::new("sub-drop", breaker_config())
        .unwrap()
        .handle();
    let mut events = handle.subscribe();
    handle.force_open();
    drop(handle);
    assert!(matches!(
        events.recv().await,
        Ok(CircuitEvent::StateChanged { .. })
    ));
    assert!(matches!(events.recv().await, Err(RecvError::Closed)));
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_reports_rejections_at_once_and_after_its_wait() {
    let config = BulkheadConfig {
        max_concurrent: 1,
        max_wait: Duration::from_millis(50),
        adaptive: None,
    };
    let handle = BulkheadLayer::new("sub-bulkhead", config).unwrap().handle();
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    let held = handle.acquire().await.unwrap();
    assert!(handle.acquire().await.is_err()); // waits 50 ms, then rejected
    drop(held);
    let _again = handle.acquire().await.unwrap(); // free again: no event
    assert_eq!(
        drain(&mut events),
        [BulkheadEvent::Rejected {
            max_concurrent: 1,
            at: t0 + Duration::from_millis(50),
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stack_reports_each_retry_and_the_refusal_of_its_budget() {
    // No deposits count (ratio 0) and a floor of 1 retry a second over 1 s: one retry, then
    // the budget is spent.
    let config = StackConfig {
        retry: Some(RetryConfig {
            max_attempts: 3,
            backoff: BackoffConfig {
                base: Duration::from_millis(100),
                max: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: Jitter::None,
            },
            budget: Some(BudgetConfig {
                ttl: Duration::from_secs(1),
                min_per_sec: 1,
                retry_ratio: 0.0,
            }),
        }),
        ..Default::default()
    };
    let layer = config.into_layer("sub-retry").unwrap();
    let mut events = layer.retry().unwrap().subscribe();
    let mut svc = layer.layer(service_fn(|_: ()| async {
        Err::<(), BoxError>("down".into())
    }));
    let t0 = Instant::now();
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    let ms = Duration::from_millis;
    assert_eq!(
        drain(&mut events),
        [
            RetryEvent::Retrying {
                attempt: 2,
                delay: ms(100),
                at: t0,
            },
            RetryEvent::BudgetExhausted { at: t0 + ms(100) },
        ]
    );
}
