//! The automatic move from Open to HalfOpen (`automatic_transition_to_half_open`), on the
//! paused clock: the state is truthful without traffic, the timer follows the breaker's
//! periods, and it neither outlives the breaker nor keeps it alive.

use std::time::Duration;

use resilience_layers::{
    Outcome,
    circuit_breaker::{
        CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitEvent,
        CircuitState, SlidingWindow,
    },
};
use tokio::time::{Instant, advance};

const WAIT: Duration = Duration::from_secs(5);

fn config(automatic: bool) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 4 },
        minimum_calls: 2,
        wait_in_open: WAIT,
        wait_multiplier: 2.0,
        max_wait_in_open: Some(Duration::from_secs(60)),
        permitted_calls_in_half_open: 1,
        automatic_transition_to_half_open: automatic,
        ..Default::default()
    }
}

fn handle(name: &str, config: CircuitBreakerConfig) -> CircuitBreakerHandle {
    CircuitBreakerLayer::new(name, config).unwrap().handle()
}

fn trip(handle: &CircuitBreakerHandle) {
    while handle.state() != CircuitState::Open {
        handle.try_acquire().unwrap().record(Outcome::Failure);
    }
}

/// Lets the timer task run (the clock is paused; nothing else is pending).
async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn state_reads_half_open_when_the_wait_ends_with_no_call() {
    let handle = handle("timer-state", config(true));
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    trip(&handle);
    advance(WAIT - Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "not before the wait ends"
    );
    advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.state, CircuitState::HalfOpen);
    assert_eq!(snapshot.retry_after_ms, None);
    // Subscribers hear of it at the time it happened.
    assert!(matches!(
        events.try_recv(),
        Ok(CircuitEvent::StateChanged {
            to: CircuitState::Open,
            ..
        })
    ));
    match events.try_recv() {
        Ok(CircuitEvent::StateChanged { from, to, at }) => {
            assert_eq!((from, to), (CircuitState::Open, CircuitState::HalfOpen));
            assert_eq!(at, t0 + WAIT);
        }
        other => panic!("{other:?}"),
    }
    // The first call is the probe, as without the timer.
    handle.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn off_by_default_the_state_waits_for_a_call() {
    assert!(!CircuitBreakerConfig::default().automatic_transition_to_half_open);
    let handle = handle("timer-off", config(false));
    trip(&handle);
    advance(WAIT * 10).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.snapshot().retry_after_ms, Some(0));
    assert_eq!(alive_tasks(), 0, "no timer task was started");
}

#[tokio::test(start_paused = true)]
async fn each_open_period_gets_its_timer_with_its_own_wait() {
    let handle = handle("timer-periods", config(true));
    trip(&handle);
    advance(WAIT).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    // The probe fails: open again, for twice as long.
    handle.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(handle.state(), CircuitState::Open);
    advance(WAIT).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::Open, "the wait doubled");
    advance(WAIT).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(alive_tasks(), 0, "each timer ended with its period");
}

#[tokio::test(start_paused = true)]
async fn a_timer_for_a_period_that_ended_by_hand_does_nothing() {
    let handle = handle("timer-manual", config(true));
    trip(&handle);
    handle.force_open();
    advance(WAIT).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    handle.reset();
    trip(&handle);
    advance(WAIT / 2).await;
    settle().await;
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "the new period's own wait"
    );
    advance(WAIT / 2).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_breaker_ends_its_timer() {
    let handle = handle("timer-drop", config(true));
    trip(&handle);
    assert_eq!(alive_tasks(), 1, "the timer of the open period");
    // The breaker is freed although its timer is pending (the task holds a weak
    // reference), and freeing it aborts the task.
    drop(handle);
    settle().await;
    assert_eq!(
        alive_tasks(),
        0,
        "aborted with the breaker, long before the wait ends"
    );
}

#[test]
fn outside_a_runtime_the_next_call_makes_the_move() {
    let handle = handle("timer-no-runtime", config(true));
    trip(&handle); // no runtime: no timer, no panic
    assert_eq!(handle.state(), CircuitState::Open);
    let retry_after = handle.snapshot().retry_after_ms.unwrap();
    assert!(retry_after > 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_half_open_period_is_not_a_failure() {
    // With a half-open time limit, an automatic move followed by no traffic must not count
    // as probes that failed: the period starts again instead of re-opening.
    let handle = handle(
        "timer-idle",
        CircuitBreakerConfig {
            max_wait_in_half_open: Some(Duration::from_secs(2)),
            ..config(true)
        },
    );
    trip(&handle);
    advance(WAIT).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    advance(Duration::from_secs(30)).await;
    let probe = handle.try_acquire().expect("a probe, not a re-open");
    assert_eq!(probe.state(), CircuitState::HalfOpen);
    assert_eq!(
        handle.snapshot().time_in_state_ms,
        0,
        "a new half-open period"
    );
    // A probe that hangs past the limit still re-opens the circuit.
    advance(Duration::from_secs(2)).await;
    assert!(handle.try_acquire().is_err());
    assert_eq!(handle.state(), CircuitState::Open);
    drop(probe);
}
