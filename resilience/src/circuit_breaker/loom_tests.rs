//! loom models of the state machine: every interleaving of two threads is explored.
//!
//! Run with:
//! `RUSTFLAGS="--cfg resilience_loom" CARGO_TARGET_DIR=target-loom cargo test -p resilience-layers --release --lib loom`

use std::time::Duration;

use loom::{sync::Arc, thread};

use super::config::{CircuitBreakerConfig, SlidingWindow};
use super::state::{CallKind, CircuitState, Hooks, Rejected, StateMachine};
use super::sync::{AtomicU64, Ordering::SeqCst};
use crate::classify::Outcome;

const WAIT: u64 = 10;

struct Transitions(AtomicU64);

impl Hooks for Transitions {
    fn on_transition(&self, _: CircuitState, _: CircuitState) {
        self.0.fetch_add(1, SeqCst);
    }
    fn on_call(&self, _: CallKind) {}
}

fn machine(config: CircuitBreakerConfig) -> Arc<StateMachine<Transitions>> {
    config.validate().unwrap();
    Arc::new(StateMachine::new(
        config.params(),
        config.build_window(),
        Transitions(AtomicU64::new(0)),
        0,
    ))
}

fn config(probes: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 4 },
        minimum_calls: 2,
        failure_rate_threshold: 30.0,
        wait_in_open: Duration::from_nanos(WAIT),
        permitted_calls_in_half_open: probes,
        ..Default::default()
    }
}

fn at(t: u64) -> impl Fn() -> u64 {
    move || t
}

fn transitions(m: &StateMachine<Transitions>) -> u64 {
    m.hooks.0.load(SeqCst)
}

/// Makes and records `n` calls at time 0, one after the other (setup, single-threaded).
fn calls(m: &StateMachine<Transitions>, n: usize, outcome: Outcome) {
    for _ in 0..n {
        let p = m.try_acquire(at(0)).unwrap();
        m.record(p, outcome, at(0));
    }
}

/// Trips the breaker (single-threaded setup) and returns when its wait is over.
fn open(m: &StateMachine<Transitions>) {
    calls(m, 2, Outcome::Failure);
    assert_eq!(m.state(), CircuitState::Open);
}

#[test]
fn loom_two_callers_race_for_one_half_open_probe() {
    loom::model(|| {
        let m = machine(config(1));
        open(&m);
        // Move to half-open first, then race for the single slot.
        let first = m.try_acquire(at(WAIT)).unwrap();
        m.release(&first);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.try_acquire(at(WAIT)).is_ok())
            })
            .collect();
        let won = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&w| w)
            .count();
        assert_eq!(won, 1, "exactly one caller gets the probe");
        assert_eq!(m.probes_taken(), 1);
    });
}

#[test]
fn loom_two_failures_race_at_the_trip_point() {
    loom::model(|| {
        let m = machine(config(1));
        // Two successes: either failure alone makes 1/3 >= 30 %.
        calls(&m, 2, Outcome::Success);
        let permits = [m.try_acquire(at(0)).unwrap(), m.try_acquire(at(0)).unwrap()];
        let threads: Vec<_> = permits
            .into_iter()
            .map(|p| {
                let m = m.clone();
                thread::spawn(move || m.record(p, Outcome::Failure, at(0)))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.state(), CircuitState::Open);
        assert_eq!(transitions(&m), 1, "exactly one transition");
        let counts = m.counts(0);
        assert_eq!(
            (counts.calls, counts.failures),
            (4, 2),
            "both failures counted"
        );
    });
}

#[test]
fn loom_two_callers_race_at_open_to_half_open() {
    loom::model(|| {
        let m = machine(config(1));
        open(&m);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.try_acquire(at(WAIT)))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(admitted, 1, "probes never exceed the limit: {results:?}");
        assert!(results.contains(&Err(Rejected::HalfOpenFull)));
        assert_eq!(m.state(), CircuitState::HalfOpen);
        assert_eq!(
            transitions(&m),
            2,
            "closed->open, then open->half_open once"
        );
    });
}

#[test]
fn loom_cancel_races_acquire() {
    loom::model(|| {
        let m = machine(config(1));
        open(&m);
        let held = m.try_acquire(at(WAIT)).unwrap();
        let canceller = {
            let m = m.clone();
            thread::spawn(move || m.release(&held))
        };
        let acquirer = {
            let m = m.clone();
            thread::spawn(move || m.try_acquire(at(WAIT)).is_ok())
        };
        canceller.join().unwrap();
        let got = acquirer.join().unwrap();
        let taken = m.probes_taken();
        assert!(taken <= 1, "never above the limit");
        assert_eq!(
            taken,
            u64::from(got),
            "a slot is taken exactly when someone holds it"
        );
    });
}

#[test]
fn loom_stale_result_after_a_newer_generation_has_no_effect() {
    for window in [
        SlidingWindow::Count { size: 4 },
        SlidingWindow::Time {
            duration: Duration::from_millis(10),
            buckets: 2,
        },
    ] {
        loom::model(move || {
            let m = machine(CircuitBreakerConfig {
                window,
                minimum_calls: 1,
                ..config(1)
            });
            let stale = m.try_acquire(at(0)).unwrap();
            let recorder = {
                let m = m.clone();
                thread::spawn(move || m.record(stale, Outcome::Failure, at(0)))
            };
            let resetter = {
                let m = m.clone();
                thread::spawn(move || m.set(CircuitState::Closed, 0))
            };
            recorder.join().unwrap();
            resetter.join().unwrap();
            // Either the failure landed first (and tripped, and the reset closed again), or it
            // arrived after the reset and was dropped: the new window is empty either way.
            assert_eq!(m.state(), CircuitState::Closed);
            assert_eq!(m.counts(0).calls, 0);
            assert_eq!(m.counts(0).failures, 0);
        });
    }
}

#[test]
fn loom_stale_probe_result_after_reopen_has_no_effect() {
    loom::model(|| {
        let m = machine(config(2));
        open(&m);
        let probe = m.try_acquire(at(WAIT)).unwrap();
        let recorder = {
            let m = m.clone();
            thread::spawn(move || m.record(probe, Outcome::Success, at(WAIT)))
        };
        let forcer = {
            let m = m.clone();
            thread::spawn(move || m.set(CircuitState::ForcedOpen, WAIT))
        };
        recorder.join().unwrap();
        forcer.join().unwrap();
        assert_eq!(
            m.state(),
            CircuitState::ForcedOpen,
            "word {:#x} transitions {}",
            m.raw(),
            transitions(&m)
        );
        assert_eq!(
            transitions(&m),
            3,
            "closed->open->half_open->forced_open, nothing else"
        );
        assert_eq!(m.probes_taken(), 0);
    });
}

#[test]
fn loom_two_probes_finish_together_and_exactly_one_decides() {
    loom::model(|| {
        let m = machine(config(2));
        open(&m);
        let probes = [
            m.try_acquire(at(WAIT)).unwrap(),
            m.try_acquire(at(WAIT)).unwrap(),
        ];
        let threads: Vec<_> = probes
            .into_iter()
            .map(|p| {
                let m = m.clone();
                thread::spawn(move || m.record(p, Outcome::Success, at(WAIT)))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.state(), CircuitState::Closed);
        assert_eq!(
            transitions(&m),
            3,
            "closed->open->half_open->closed, once each"
        );
    });
}

#[test]
fn loom_last_probe_races_the_half_open_timeout() {
    loom::model(|| {
        let m = machine(CircuitBreakerConfig {
            max_wait_in_half_open: Some(Duration::from_nanos(5)),
            ..config(1)
        });
        open(&m);
        let probe = m.try_acquire(at(WAIT)).unwrap();
        let reporter = {
            let m = m.clone();
            thread::spawn(move || m.record(probe, Outcome::Success, at(WAIT + 5)))
        };
        let caller = {
            let m = m.clone();
            thread::spawn(move || m.try_acquire(at(WAIT + 5)))
        };
        reporter.join().unwrap();
        let admitted = caller.join().unwrap();
        // Either the probe closed the circuit first (and the caller was admitted), or the
        // timeout re-opened it first (and the late probe result was stale): never both.
        assert_eq!(transitions(&m), 3);
        match m.state() {
            CircuitState::Closed => assert!(admitted.is_ok()),
            CircuitState::Open => assert!(matches!(admitted, Err(Rejected::Open { .. }))),
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
fn loom_failure_races_a_success_that_skips_the_full_window() {
    loom::model(|| {
        let m = machine(CircuitBreakerConfig {
            window: SlidingWindow::Count { size: 2 },
            failure_rate_threshold: 100.0,
            ..config(1)
        });
        // A full window of successes: a success now skips the ring (reads only).
        calls(&m, 2, Outcome::Success);
        let permits = [m.try_acquire(at(0)).unwrap(), m.try_acquire(at(0)).unwrap()];
        let threads: Vec<_> = permits
            .into_iter()
            .zip([Outcome::Failure, Outcome::Success])
            .map(|(p, outcome)| {
                let m = m.clone();
                thread::spawn(move || m.record(p, outcome, at(0)))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts = m.counts(0);
        assert_eq!(
            (counts.calls, counts.failures),
            (2, 1),
            "the failure counts"
        );
        assert_eq!(m.state(), CircuitState::Closed, "1 of 2 is under 100 %");
        // Two more successes push the failure out, whichever way the race went.
        calls(&m, 2, Outcome::Success);
        assert_eq!(m.counts(0).failures, 0, "the failure left the window");
    });
}

#[test]
fn loom_reconfigure_lowering_the_probes_races_the_last_probe() {
    loom::model(|| {
        let m = machine(config(2));
        open(&m);
        let first = m.try_acquire(at(WAIT)).unwrap();
        let second = m.try_acquire(at(WAIT)).unwrap();
        m.record(first, Outcome::Success, at(WAIT));
        let reporter = {
            let m = m.clone();
            thread::spawn(move || m.record(second, Outcome::Success, at(WAIT)))
        };
        let operator = {
            let m = m.clone();
            thread::spawn(move || m.reconfigure(config(1).params(), None, WAIT))
        };
        reporter.join().unwrap();
        operator.join().unwrap();
        // Whoever decides (the last probe, or the reconfiguration on the one reported),
        // the half-open period ends exactly once.
        assert_eq!(m.state(), CircuitState::Closed);
        assert_eq!(
            transitions(&m),
            3,
            "closed->open->half_open->closed, once each"
        );
    });
}

#[test]
fn loom_a_failure_races_a_window_resize() {
    loom::model(|| {
        let m = machine(config(1));
        calls(&m, 1, Outcome::Failure); // 1 call: under the minimum of 2
        let permit = m.try_acquire(at(0)).unwrap();
        let caller = {
            let m = m.clone();
            thread::spawn(move || m.record(permit, Outcome::Failure, at(0)))
        };
        let operator = {
            let m = m.clone();
            thread::spawn(move || {
                let resized = CircuitBreakerConfig {
                    window: SlidingWindow::Count { size: 2 },
                    ..config(1)
                };
                m.reconfigure(resized.params(), Some(resized.build_window()), 0);
            })
        };
        caller.join().unwrap();
        operator.join().unwrap();
        // The failure lands in the old window (which it then trips on: 2 of 2) or in the
        // new one (which holds the first failure too): either way it counts, once.
        assert_eq!(m.state(), CircuitState::Open, "raw word {:#x}", m.raw());
        assert_eq!(transitions(&m), 1);
        assert!(m.counts(0).calls <= 2, "the new window holds at most 2");
        assert_eq!(m.windows_held(), 2);
    });
}
