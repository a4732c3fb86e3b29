//! Unit tests of the pure state machine: time is a number the test sets.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering::SeqCst},
};

use super::config::{CircuitBreakerConfig, SlidingWindow};
use super::state::{CallKind, CircuitState, Hooks, Rejected, StateMachine};
use crate::classify::Outcome;

const SEC: u64 = 1_000_000_000;

#[derive(Default)]
struct Recorder {
    transitions: Mutex<Vec<(CircuitState, CircuitState)>>,
    calls: [AtomicU64; 5],
}

impl Hooks for Recorder {
    fn on_transition(&self, from: CircuitState, to: CircuitState) {
        self.transitions.lock().unwrap().push((from, to));
    }
    fn on_call(&self, kind: CallKind) {
        self.calls[kind as usize].fetch_add(1, SeqCst);
    }
}

struct Fixture {
    machine: StateMachine<Recorder>,
    now: AtomicU64,
}

impl Fixture {
    fn new(config: &CircuitBreakerConfig) -> Self {
        config.validate().unwrap();
        Self {
            machine: StateMachine::new(
                config.params(),
                config.build_window(),
                Recorder::default(),
                0,
            ),
            now: AtomicU64::new(0),
        }
    }

    fn advance(&self, nanos: u64) {
        self.now.fetch_add(nanos, SeqCst);
    }

    fn clock(&self) -> impl Fn() -> u64 + '_ {
        || self.now.load(SeqCst)
    }

    fn call(&self, outcome: Outcome) -> Result<(), Rejected> {
        let permit = self.machine.try_acquire(self.clock())?;
        self.machine.record(permit, outcome, self.clock());
        Ok(())
    }

    fn state(&self) -> CircuitState {
        self.machine.state()
    }

    fn transitions(&self) -> Vec<(CircuitState, CircuitState)> {
        self.machine.hooks.transitions.lock().unwrap().clone()
    }
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 4 },
        minimum_calls: 4,
        failure_rate_threshold: 50.0,
        wait_in_open: std::time::Duration::from_secs(10),
        permitted_calls_in_half_open: 3,
        ..Default::default()
    }
}

fn open(f: &Fixture) {
    for _ in 0..4 {
        f.call(Outcome::Failure).unwrap();
    }
    assert_eq!(f.state(), CircuitState::Open);
}

#[test]
fn closed_path_never_reads_the_clock_without_slow_calls_or_time_window() {
    let f = Fixture::new(&config());
    let clock = || -> u64 { panic!("the clock was read on the closed path") };
    for outcome in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Ignored,
    ] {
        let permit = f.machine.try_acquire(clock).unwrap();
        f.machine.record(permit, outcome, clock);
    }
    assert_eq!(f.machine.counts(0).calls, 3);
}

#[test]
fn a_trip_from_closed_reads_the_clock_once_to_start_the_wait() {
    let f = Fixture::new(&config());
    open(&f);
    assert_eq!(
        f.call(Outcome::Success),
        Err(Rejected::Open {
            retry_after: 10 * SEC
        })
    );
    f.advance(10 * SEC - 1);
    assert_eq!(
        f.call(Outcome::Success),
        Err(Rejected::Open { retry_after: 1 })
    );
    f.advance(1);
    f.call(Outcome::Success).unwrap();
    assert_eq!(f.state(), CircuitState::HalfOpen);
}

#[test]
fn probe_slots_are_reserved_on_entry_and_given_back() {
    let f = Fixture::new(&config());
    open(&f);
    f.advance(10 * SEC);
    let permits: Vec<_> = (0..3)
        .map(|_| f.machine.try_acquire(f.clock()).unwrap())
        .collect();
    assert_eq!(
        f.machine.try_acquire(f.clock()),
        Err(Rejected::HalfOpenFull)
    );
    assert_eq!(f.machine.probes_taken(), 3);
    f.machine.release(&permits[0]);
    assert_eq!(f.machine.probes_taken(), 2);
    // Releasing twice (or releasing a permit that reported) never frees a slot that is not ours.
    f.machine.record(permits[1], Outcome::Success, f.clock());
    f.machine.record(permits[2], Outcome::Success, f.clock());
    f.machine.release(&permits[0]);
    f.machine.release(&permits[1]);
    assert_eq!(
        f.machine.probes_taken(),
        2,
        "two reported probes keep their slots"
    );
    f.call(Outcome::Success).unwrap();
    assert_eq!(f.state(), CircuitState::Closed);
}

#[test]
fn stale_permits_change_nothing() {
    let f = Fixture::new(&config());
    let closed = f.machine.try_acquire(f.clock()).unwrap();
    open(&f);
    f.advance(10 * SEC);
    let probe = f.machine.try_acquire(f.clock()).unwrap();
    assert!(!f.machine.is_current(&closed));
    f.machine.record(closed, Outcome::Failure, f.clock());
    assert_eq!(
        f.machine.view(f.now.load(SeqCst)).counts.calls,
        0,
        "half-open counts probes only"
    );
    // The breaker re-opens by hand; the old probe's release and result both miss.
    f.machine.set(CircuitState::ForcedOpen, 0);
    f.machine.set(CircuitState::Closed, 0);
    let g = f.machine.generation();
    f.machine.release(&probe);
    f.machine.record(probe, Outcome::Failure, f.clock());
    assert_eq!(f.machine.generation(), g);
    assert_eq!(f.machine.counts(0).calls, 0);
}

#[test]
fn every_real_transition_is_reported_once() {
    let f = Fixture::new(&CircuitBreakerConfig {
        permitted_calls_in_half_open: 1,
        ..config()
    });
    open(&f);
    f.advance(10 * SEC);
    f.call(Outcome::Failure).unwrap();
    f.advance(10 * SEC);
    f.call(Outcome::Success).unwrap();
    f.machine.set(CircuitState::Closed, 0);
    use CircuitState::*;
    assert_eq!(
        f.transitions(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

#[test]
fn call_kinds_are_counted_for_metrics() {
    let f = Fixture::new(&CircuitBreakerConfig {
        slow_call_duration: Some(std::time::Duration::from_secs(1)),
        ..config()
    });
    let slow = |outcome| {
        let p = f.machine.try_acquire(f.clock()).unwrap();
        f.advance(SEC);
        f.machine.record(p, outcome, f.clock());
    };
    slow(Outcome::Success);
    slow(Outcome::Failure);
    f.call(Outcome::Success).unwrap();
    f.call(Outcome::Ignored).unwrap();
    let counts: Vec<u64> = f
        .machine
        .hooks
        .calls
        .iter()
        .map(|c| c.load(SeqCst))
        .collect();
    // success, failure, slow_success, slow_failure, ignored
    assert_eq!(counts, [1, 0, 1, 1, 1]);
    let view = f.machine.view(0);
    assert_eq!(
        (view.counts.calls, view.counts.failures, view.counts.slow),
        (3, 1, 2)
    );
}

#[test]
fn threads_racing_for_probes_never_exceed_the_limit() {
    for _ in 0..50 {
        let f = Arc::new(Fixture::new(&config()));
        open(&f);
        f.advance(10 * SEC);
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (f, admitted) = (f.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        if f.machine.try_acquire(f.clock()).is_ok() {
                            admitted.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(SeqCst), 3);
        assert_eq!(
            f.transitions().len(),
            2,
            "closed->open, open->half_open once"
        );
    }
}

#[test]
fn threads_failing_together_trip_once_and_all_count() {
    for _ in 0..50 {
        let f = Arc::new(Fixture::new(&CircuitBreakerConfig {
            window: SlidingWindow::Count { size: 100 },
            minimum_calls: 100,
            ..config()
        }));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || {
                    let permits: Vec<_> = (0..25)
                        .map(|_| f.machine.try_acquire(f.clock()).unwrap())
                        .collect();
                    for p in permits {
                        f.machine.record(p, Outcome::Failure, f.clock());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            f.transitions(),
            [(CircuitState::Closed, CircuitState::Open)]
        );
        assert_eq!(f.machine.view(0).counts.failures, 100);
    }
}
