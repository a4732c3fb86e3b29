//! Live reconfiguration on the paused clock: each layer takes new settings without losing
//! its state, an invalid config changes nothing, and services built before follow at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use resilience_layers::{
    BoxError, Outcome,
    bulkhead::{BulkheadConfig, BulkheadLayer},
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, SlidingWindow},
    retry::{BackoffConfig, BudgetConfig, Jitter, RetryConfig, RetryHandle},
    stack::StackConfig,
};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker_config(size: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size },
        minimum_calls: 2,
        failure_rate_threshold: 50.0,
        wait_in_open: Duration::from_secs(10),
        permitted_calls_in_half_open: 2,
        ..Default::default()
    }
}

fn record(handle: &resilience_layers::circuit_breaker::CircuitBreakerHandle, outcomes: &str) {
    for c in outcomes.chars() {
        let outcome = if c == 'F' {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        handle.try_acquire().unwrap().record(outcome);
    }
}

#[tokio::test(start_paused = true)]
async fn a_resized_count_window_keeps_the_most_recent_outcomes() {
    let handle = CircuitBreakerLayer::new(
        "re-resize",
        CircuitBreakerConfig {
            failure_rate_threshold: 100.0,
            ..breaker_config(6)
        },
    )
    .unwrap()
    .handle();
    record(&handle, "FSSFSS"); // oldest first
    let shrink = CircuitBreakerConfig {
        failure_rate_threshold: 100.0,
        ..breaker_config(3)
    };
    handle.reconfigure(shrink).unwrap();
    let s = handle.snapshot();
    assert_eq!((s.calls, s.failures), (3, 1), "the last three: F S S");

    let grow = CircuitBreakerConfig {
        failure_rate_threshold: 100.0,
        ..breaker_config(10)
    };
    handle.reconfigure(grow).unwrap();
    assert_eq!(handle.snapshot().calls, 3, "all three fit");
    record(&handle, "F");
    let s = handle.snapshot();
    assert_eq!(
        (s.calls, s.failures),
        (4, 2),
        "new calls land in the new window"
    );
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_lowered_threshold_trips_on_the_next_call_and_a_time_window_starts_empty() {
    let handle = CircuitBreakerLayer::new("re-threshold", breaker_config(10))
        .unwrap()
        .handle();
    record(&handle, "SSFS"); // 25 %: under 50
    handle
        .reconfigure(CircuitBreakerConfig {
            failure_rate_threshold: 20.0,
            ..breaker_config(10)
        })
        .unwrap();
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "nothing decided until a call"
    );
    record(&handle, "S"); // 1 of 5 = 20 %
    assert_eq!(handle.state(), CircuitState::Open);

    handle.reset();
    handle
        .reconfigure(CircuitBreakerConfig {
            window: SlidingWindow::Time {
                duration: Duration::from_secs(10),
                buckets: 10,
            },
            ..breaker_config(10)
        })
        .unwrap();
    assert_eq!(handle.snapshot().calls, 0);
    record(&handle, "SF");
    let s = handle.snapshot();
    assert_eq!((s.calls, s.failures), (2, 1));
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "50 % of 2 in the new window"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_stays_open_and_a_new_wait_applies_to_the_next_period() {
    let handle = CircuitBreakerLayer::new("re-open", breaker_config(4))
        .unwrap()
        .handle();
    let mut events = handle.subscribe();
    record(&handle, "FF");
    assert_eq!(handle.state(), CircuitState::Open);
    let longer = CircuitBreakerConfig {
        wait_in_open: Duration::from_secs(60),
        ..breaker_config(4)
    };
    handle.reconfigure(longer.clone()).unwrap();
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(
        handle.snapshot().retry_after_ms,
        Some(10_000),
        "this period keeps its end"
    );
    assert_eq!(handle.config(), longer);
    advance(Duration::from_secs(10)).await;
    let probes = [handle.try_acquire().unwrap(), handle.try_acquire().unwrap()];
    for p in probes {
        p.record(Outcome::Failure);
    }
    assert_eq!(
        handle.snapshot().retry_after_ms,
        Some(60_000),
        "the next one waits the new wait"
    );
    // The subscription survived the reconfiguration.
    assert!(events.try_recv().is_ok());
    assert_eq!(handle.snapshot().transitions_total, 3);
}

#[tokio::test(start_paused = true)]
async fn fewer_probes_than_already_reported_decide_at_once() {
    let handle = CircuitBreakerLayer::new("re-probes", breaker_config(4))
        .unwrap()
        .handle();
    record(&handle, "FF");
    advance(Duration::from_secs(10)).await;
    let first = handle.try_acquire().unwrap();
    let second = handle.try_acquire().unwrap();
    first.record(Outcome::Success); // 1 of 2 reported
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    handle
        .reconfigure(CircuitBreakerConfig {
            permitted_calls_in_half_open: 1,
            ..breaker_config(4)
        })
        .unwrap();
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the one reported probe decides"
    );
    second.record(Outcome::Failure); // stale now: changes nothing
    assert_eq!(handle.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_config_names_its_field_and_changes_nothing() {
    let layer = CircuitBreakerLayer::new("re-invalid", breaker_config(4)).unwrap();
    let handle = layer.handle();
    record(&handle, "F");
    let err = handle
        .reconfigure(CircuitBreakerConfig {
            failure_rate_threshold: 0.0,
            ..breaker_config(8)
        })
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate_threshold");
    assert_eq!(handle.config(), breaker_config(4));
    assert_eq!(handle.snapshot().calls, 1);
}

#[tokio::test(start_paused = true)]
async fn services_built_before_follow_a_reconfigured_breaker() {
    let layer = CircuitBreakerLayer::new("re-service", breaker_config(10)).unwrap();
    let mut svc = layer.layer(service_fn(|fail: bool| async move {
        if fail { Err("down") } else { Ok(()) }
    }));
    // A call in flight across the resize records into the new window.
    let in_flight = svc.ready().await.unwrap().call(true);
    layer
        .handle()
        .reconfigure(CircuitBreakerConfig {
            minimum_calls: 1,
            ..breaker_config(3)
        })
        .unwrap();
    assert!(in_flight.await.is_err());
    assert_eq!(
        layer.handle().state(),
        CircuitState::Open,
        "1 of 1 failed, minimum 1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_raised_bulkhead_limit_admits_waiters_at_once() {
    let config = BulkheadConfig {
        max_concurrent: 1,
        max_wait: Duration::from_secs(1),
        adaptive: None,
    };
    let handle = BulkheadLayer::new("re-raise", config).unwrap().handle();
    let _held = handle.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.acquire().await.map(drop) }
    });
    tokio::task::yield_now().await;
    assert_eq!(handle.snapshot().waiting, 1);
    handle
        .reconfigure(BulkheadConfig {
            max_concurrent: 2,
            max_wait: Duration::from_secs(1),
            adaptive: None,
        })
        .unwrap();
    waiter
        .await
        .unwrap()
        .expect("the new permit went to the waiter");
    assert_eq!(handle.snapshot().max_concurrent, 2);
}

#[tokio::test(start_paused = true)]
async fn a_lowered_bulkhead_limit_honours_permits_in_use() {
    let config = |n| BulkheadConfig {
        max_concurrent: n,
        max_wait: Duration::ZERO,
        adaptive: None,
    };
    let handle = BulkheadLayer::new("re-lower", config(4)).unwrap().handle();
    let mut held: Vec<_> = Vec::new();
    for _ in 0..3 {
        held.push(handle.acquire().await.unwrap());
    }
    handle.reconfigure(config(1)).unwrap();
    let s = handle.snapshot();
    assert_eq!((s.max_concurrent, s.in_use), (1, 3), "none revoked");
    assert!(handle.acquire().await.is_err(), "over the new limit");
    held.pop();
    held.pop();
    assert_eq!(handle.snapshot().in_use, 1);
    assert!(handle.acquire().await.is_err(), "at the new limit");
    held.pop();
    let one = handle.acquire().await.unwrap();
    assert!(handle.acquire().await.is_err(), "exactly one");
    // Raising again while nothing is owed frees permits at once.
    handle.reconfigure(config(3)).unwrap();
    let two = handle.acquire().await.unwrap();
    let three = handle.acquire().await.unwrap();
    assert!(handle.acquire().await.is_err());
    drop((one, two, three));
    assert_eq!(handle.snapshot().in_use, 0);

    // Lowered and raised again before the permits came back: the debt is cancelled.
    let held: Vec<_> = [(); 3]
        .map(|_| {
            futures_util::FutureExt::now_or_never(handle.acquire())
                .unwrap()
                .unwrap()
        })
        .into();
    handle.reconfigure(config(1)).unwrap();
    handle.reconfigure(config(3)).unwrap();
    drop(held);
    let s = handle.snapshot();
    assert_eq!((s.max_concurrent, s.in_use), (3, 0));
    let again: Vec<_> = [(); 3]
        .map(|_| {
            futures_util::FutureExt::now_or_never(handle.acquire())
                .unwrap()
                .unwrap()
        })
        .into();
    assert!(handle.acquire().await.is_err(), "three, no more, no fewer");
    drop(again);
}

fn retry_config(max_attempts: u32, budget: Option<BudgetConfig>) -> RetryConfig {
    RetryConfig {
        max_attempts,
        backoff: BackoffConfig {
            base: Duration::from_millis(10),
            max: Duration::from_secs(1),
            multiplier: 1.0,
            jitter: Jitter::None,
        },
        budget,
    }
}

const ONE_RETRY: BudgetConfig = BudgetConfig {
    ttl: Duration::from_secs(1),
    min_per_sec: 1,
    retry_ratio: 0.0,
};

#[tokio::test(start_paused = true)]
async fn an_unchanged_budget_keeps_its_balance_and_a_changed_one_keeps_its_count() {
    let retry = RetryHandle::new("re-budget", retry_config(3, Some(ONE_RETRY))).unwrap();
    assert!(retry.withdraw());
    assert!(!retry.withdraw(), "spent");
    retry.reconfigure(retry_config(5, Some(ONE_RETRY))).unwrap();
    assert_eq!(retry.max_attempts(), 5);
    assert!(!retry.withdraw(), "still spent: the same budget");
    assert_eq!(retry.snapshot().budget_exhausted_total, 2);

    let bigger = BudgetConfig {
        min_per_sec: 3,
        ..ONE_RETRY
    };
    retry.reconfigure(retry_config(5, Some(bigger))).unwrap();
    assert_eq!(
        retry.snapshot().budget_available,
        Some(3),
        "a new budget, full"
    );
    assert_eq!(
        retry.snapshot().budget_exhausted_total,
        2,
        "the count is kept"
    );
    retry.reconfigure(retry_config(5, None)).unwrap();
    assert!(retry.withdraw(), "no budget: never refused");
    assert_eq!(
        retry
            .reconfigure(retry_config(0, None))
            .unwrap_err()
            .field(),
        "max_attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stack_reconfigures_every_piece_and_refuses_what_needs_a_restart() {
    let text = |attempts: u32, base_ms: u64, bulkhead: usize| {
        format!(
            r#"
            deadline = "5s"
            [bulkhead]
            max_concurrent = {bulkhead}
            [retry]
            max_attempts = {attempts}
            budget = {{ min_per_sec = 100 }}
            [retry.backoff]
            base = "{base_ms}ms"
            multiplier = 1.0
            jitter = "none"
            [circuit_breaker]
            minimum_calls = 100
            "#
        )
    };
    let parse = |t: String| toml::from_str::<StackConfig>(&t).unwrap();
    let layer = parse(text(2, 10, 4)).into_layer("re-stack").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = layer.layer(service_fn({
        let calls = calls.clone();
        move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), BoxError>("down".into()) }
        }
    }));
    let started = tokio::time::Instant::now();
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(calls.swap(0, Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), Duration::from_millis(10));

    layer.reconfigure(parse(text(4, 30, 8))).unwrap();
    let started = tokio::time::Instant::now();
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the service built before follows"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(90),
        "three 30 ms waits"
    );
    assert_eq!(layer.bulkhead().unwrap().snapshot().max_concurrent, 8);
    assert_eq!(layer.config(), parse(text(4, 30, 8)));

    for (bad, field) in [
        (text(0, 30, 8), "retry.max_attempts"),
        (text(4, 30, 0), "bulkhead.max_concurrent"),
        (text(4, 30, 8).replace("5s", "6s"), "deadline"),
        (text(4, 30, 8).replace("deadline = \"5s\"", ""), "deadline"),
        (
            format!("attempt_timeout = \"1s\"\n{}", text(4, 30, 8)),
            "attempt_timeout",
        ),
        (
            text(4, 30, 8).replace("[circuit_breaker]\n            minimum_calls = 100", ""),
            "circuit_breaker",
        ),
    ] {
        let err = layer.reconfigure(parse(bad.clone())).unwrap_err();
        assert_eq!(err.field(), field, "{bad}");
    }
    assert_eq!(
        layer.config(),
        parse(text(4, 30, 8)),
        "nothing refused was applied"
    );
    let err = layer
        .reconfigure(parse(text(4, 30, 8).replace("5s", "6s")))
        .unwrap_err();
    assert!(err.to_string().contains("restart"), "{err}");
    // The breaker kept counting across all of it.
    assert_eq!(layer.circuit_breaker().unwrap().snapshot().calls, 6);
}

mod bulkhead_model {
    use std::time::Duration;

    use futures_util::FutureExt;
    use proptest::prelude::*;
    use resilience_layers::bulkhead::{
        BulkheadConfig, BulkheadHandle, BulkheadLayer, BulkheadPermit,
    };

    fn config(n: usize) -> BulkheadConfig {
        BulkheadConfig {
            max_concurrent: n,
            max_wait: Duration::ZERO,
            adaptive: None,
        }
    }

    fn try_acquire(handle: &BulkheadHandle) -> Option<BulkheadPermit> {
        handle
            .acquire()
            .now_or_never()
            .expect("max_wait is zero: decided at once")
            .ok()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Release(usize),
        Reconfigure(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Acquire),
            2 => (0usize..8).prop_map(Op::Release),
            1 => (1usize..6).prop_map(Op::Reconfigure),
        ]
    }

    proptest! {
        /// Whatever the order of acquisitions, releases and new limits, a caller is admitted
        /// exactly when fewer permits are held than the limit in force, and the snapshot
        /// counts the permits held.
        #[test]
        fn admitted_exactly_below_the_limit_in_force(ops in proptest::collection::vec(op(), 1..60)) {
            let handle = BulkheadLayer::new("re-model", config(3)).unwrap().handle();
            let mut limit = 3;
            let mut held = Vec::new();
            for op in ops {
                match op {
                    Op::Acquire => {
                        let got = try_acquire(&handle);
                        prop_assert_eq!(got.is_some(), held.len() < limit, "held {} limit {}", held.len(), limit);
                        held.extend(got);
                    }
                    Op::Release(i) => {
                        if !held.is_empty() {
                            let i = i % held.len();
                            held.swap_remove(i);
                        }
                    }
                    Op::Reconfigure(n) => {
                        handle.reconfigure(config(n)).unwrap();
                        limit = n;
                    }
                }
                let s = handle.snapshot();
                prop_assert_eq!((s.in_use, s.max_concurrent), (held.len(), limit));
            }
        }
    }

    /// Threads acquiring and releasing while the limit changes under them: once they are
    /// done, the bulkhead admits exactly its last limit.
    #[test]
    fn racing_reconfigurations_leave_exactly_the_last_limit() {
        let handle = BulkheadLayer::new("re-race", config(4)).unwrap().handle();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let handle = handle.clone();
                scope.spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..20_000 {
                        if i % 3 == 2 {
                            held.clear();
                        } else {
                            held.extend(try_acquire(&handle));
                        }
                    }
                });
            }
            for i in 0..2_000 {
                handle.reconfigure(config(1 + i % 7)).unwrap();
            }
        });
        handle.reconfigure(config(5)).unwrap();
        let held: Vec<_> = (0..5)
            .map(|_| try_acquire(&handle).expect("within the limit"))
            .collect();
        assert!(try_acquire(&handle).is_none(), "exactly five");
        assert_eq!(handle.snapshot().in_use, 5);
        drop(held);
        assert_eq!(handle.snapshot().in_use, 0);
    }
}

/// Threads making requests and asking for retries while the budget is replaced under them:
/// nothing is lost from the counters, and the last budget is the one in force.
#[test]
fn racing_budget_replacements_keep_the_counters() {
    let retry = RetryHandle::new("re-budget-race", retry_config(3, Some(ONE_RETRY))).unwrap();
    const PER_THREAD: u64 = 20_000;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let retry = retry.clone();
            scope.spawn(move || {
                for _ in 0..PER_THREAD {
                    retry.record_request();
                    let _ = retry.withdraw();
                }
            });
        }
        for i in 0..500u32 {
            let budget = BudgetConfig {
                min_per_sec: i % 4,
                ..ONE_RETRY
            };
            retry
                .reconfigure(retry_config(2 + i % 3, Some(budget)))
                .unwrap();
        }
    });
    let last = BudgetConfig {
        min_per_sec: 499 % 4,
        ..ONE_RETRY
    };
    assert_eq!(retry.config(), retry_config(2 + 499 % 3, Some(last)));
    assert_eq!(retry.budget().unwrap().config(), &last);
    assert_eq!(retry.snapshot().requests_total, 2 * PER_THREAD);
}
