//! Property test: random sequences of calls, held and dropped permits and clock moves,
//! applied to the breaker and to a small reference model written from the documented
//! semantics, must agree after every step (state, admissions, retry-after, window counts).

use std::{collections::VecDeque, time::Duration};

use proptest::prelude::*;
use resilience_layers::{
    Error, Outcome,
    circuit_breaker::{
        CallPermit, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
        SlidingWindow,
    },
};

const MS: u64 = 1_000_000;
const SLOW: u64 = 1_000 * MS;

fn config(window: SlidingWindow) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window,
        minimum_calls: 3,
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 60.0,
        slow_call_duration: Some(Duration::from_nanos(SLOW)),
        consecutive_failures: Some(4),
        wait_in_open: Duration::from_secs(10),
        wait_multiplier: 2.0,
        max_wait_in_open: Some(Duration::from_secs(35)),
        permitted_calls_in_half_open: 2,
        max_wait_in_half_open: Some(Duration::from_secs(30)),
        automatic_transition_to_half_open: false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Success,
    Failure,
    SlowSuccess,
    SlowFailure,
    Ignored,
    Drop,
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Call(Kind),
    Start,
    Finish(usize, Kind),
    Reset,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Success),
        3 => Just(Kind::Failure),
        1 => Just(Kind::SlowSuccess),
        1 => Just(Kind::SlowFailure),
        1 => Just(Kind::Ignored),
        1 => Just(Kind::Drop),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..25_000).prop_map(|ms| Op::Advance(ms * MS)),
        6 => kind().prop_map(Op::Call),
        2 => Just(Op::Start),
        2 => (any::<usize>(), kind()).prop_map(|(i, k)| Op::Finish(i, k)),
        1 => Just(Op::Reset),
    ]
}

/// What an admission attempt answered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Admit {
    Open(u64),
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Permit {
    generation: u64,
    state: CircuitState,
    start: u64,
}

/// The reference: the documented rules, written as plainly as possible.
struct Model {
    c: CircuitBreakerConfig,
    now: u64,
    state: CircuitState,
    generation: u64,
    /// (epoch of the record, failed, slow); the epoch is only used by time windows.
    window: VecDeque<(u64, bool, bool)>,
    consecutive: u32,
    wait: u64,
    open_until: u64,
    since: u64,
    taken: u32,
    reported: u32,
    failed: u32,
    slow: u32,
}

impl Model {
    fn new(c: CircuitBreakerConfig) -> Self {
        Self {
            wait: c.wait_in_open.as_nanos() as u64,
            c,
            now: 0,
            state: CircuitState::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            since: 0,
            taken: 0,
            reported: 0,
            failed: 0,
            slow: 0,
        }
    }

    fn enter(&mut self, to: CircuitState) {
        let base = self.c.wait_in_open.as_nanos() as u64;
        match to {
            CircuitState::Open => {
                self.wait = if self.state == CircuitState::HalfOpen {
                    let cap = self.c.max_wait_in_open.unwrap().as_nanos() as u64;
                    ((self.wait as f64 * self.c.wait_multiplier) as u64).min(cap)
                } else {
                    base
                };
                self.open_until = self.now + self.wait;
            }
            CircuitState::Closed => {
                self.wait = base;
                self.window.clear();
                self.consecutive = 0;
            }
            _ => {}
        }
        (self.taken, self.reported, self.failed, self.slow) = (0, 0, 0, 0);
        self.generation += 1;
        self.since = self.now;
        self.state = to;
    }

    fn acquire(&mut self) -> Result<Permit, Admit> {
        loop {
            match self.state {
                CircuitState::Closed => break,
                CircuitState::Open if self.now < self.open_until => {
                    return Err(Admit::Open(self.open_until - self.now));
                }
                CircuitState::Open => self.enter(CircuitState::HalfOpen),
                CircuitState::HalfOpen => {
                    let max = self.c.max_wait_in_half_open.unwrap().as_nanos() as u64;
                    if self.now - self.since >= max {
                        // Nothing taken: nothing failed, a new half-open period starts.
                        let to = if self.taken == 0 {
                            CircuitState::HalfOpen
                        } else {
                            CircuitState::Open
                        };
                        self.enter(to);
                        continue;
                    }
                    if self.taken >= self.c.permitted_calls_in_half_open {
                        return Err(Admit::Full);
                    }
                    self.taken += 1;
                    break;
                }
                other => unreachable!("{other:?}"),
            }
        }
        Ok(Permit {
            generation: self.generation,
            state: self.state,
            start: self.now,
        })
    }

    fn release(&mut self, p: Permit) {
        if p.state == CircuitState::HalfOpen
            && p.generation == self.generation
            && self.state == CircuitState::HalfOpen
            && self.taken > self.reported
        {
            self.taken -= 1;
        }
    }

    /// The current bucket number (time windows).
    fn epoch(&self) -> u64 {
        match self.c.window {
            SlidingWindow::Time { duration, buckets } => {
                self.now / (duration.as_nanos() as u64 / u64::from(buckets))
            }
            SlidingWindow::Count { .. } => 0,
        }
    }

    /// (calls, failures, slow calls) in the window now.
    fn counts(&self) -> (u32, u32, u32) {
        let current = self.epoch();
        let live: Vec<_> = match self.c.window {
            SlidingWindow::Time { buckets, .. } => self
                .window
                .iter()
                .filter(|w| current - w.0 < u64::from(buckets))
                .collect(),
            SlidingWindow::Count { .. } => self.window.iter().collect(),
        };
        let f = live.iter().filter(|w| w.1).count() as u32;
        let s = live.iter().filter(|w| w.2).count() as u32;
        (live.len() as u32, f, s)
    }

    fn trips(&self, calls: u32, failed: u32, slow: u32) -> bool {
        let calls = f64::from(calls);
        f64::from(failed) * 100.0 >= self.c.failure_rate_threshold * calls
            || f64::from(slow) * 100.0 >= self.c.slow_call_rate_threshold * calls
    }

    fn record(&mut self, p: Permit, kind: Kind) {
        if kind == Kind::Ignored || kind == Kind::Drop {
            return self.release(p);
        }
        let failed = matches!(kind, Kind::Failure | Kind::SlowFailure);
        let slow = self.now - p.start >= SLOW;
        if p.generation != self.generation {
            return; // stale
        }
        match p.state {
            CircuitState::Closed => {
                let epoch = self.epoch();
                self.window.push_back((epoch, failed, slow));
                if let SlidingWindow::Count { size } = self.c.window
                    && self.window.len() > size as usize
                {
                    self.window.pop_front();
                }
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };
                let (calls, f, s) = self.counts();
                let min = match self.c.window {
                    SlidingWindow::Count { size } => self.c.minimum_calls.min(size),
                    SlidingWindow::Time { .. } => self.c.minimum_calls,
                };
                if (calls >= min && self.trips(calls, f, s))
                    || self.consecutive >= self.c.consecutive_failures.unwrap()
                {
                    self.enter(CircuitState::Open);
                }
            }
            CircuitState::HalfOpen => {
                self.reported += 1;
                self.failed += u32::from(failed);
                self.slow += u32::from(slow);
                let n = self.c.permitted_calls_in_half_open;
                if self.reported == n {
                    let to = if self.trips(n, self.failed, self.slow) {
                        CircuitState::Open
                    } else {
                        CircuitState::Closed
                    };
                    self.enter(to);
                }
            }
            _ => unreachable!(),
        }
    }
}

fn admit(handle: &CircuitBreakerHandle) -> Result<CallPermit, Admit> {
    handle
        .try_acquire()
        .map_err(|e| match Error::from_boxed(e) {
            Error::CircuitOpen(o) => Admit::Open(o.retry_after().as_nanos() as u64),
            Error::HalfOpenFull(_) => Admit::Full,
            other => panic!("unexpected {other:?}"),
        })
}

fn outcome(kind: Kind) -> Outcome {
    match kind {
        Kind::Success | Kind::SlowSuccess => Outcome::Success,
        Kind::Failure | Kind::SlowFailure => Outcome::Failure,
        Kind::Ignored | Kind::Drop => Outcome::Ignored,
    }
}

async fn run(window: SlidingWindow, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let handle = CircuitBreakerLayer::new("model", config(window))
        .unwrap()
        .handle();
    let mut model = Model::new(config(window));
    let mut held: Vec<(CallPermit, Permit)> = Vec::new();

    async fn advance(model: &mut Model, nanos: u64) {
        tokio::time::advance(Duration::from_nanos(nanos)).await;
        model.now += nanos;
    }
    async fn finish(model: &mut Model, real: CallPermit, p: Permit, kind: Kind) {
        if matches!(kind, Kind::SlowSuccess | Kind::SlowFailure) {
            advance(model, SLOW).await;
        }
        match kind {
            Kind::Drop => drop(real),
            k => real.record(outcome(k)),
        }
        model.record(p, kind);
    }

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Advance(nanos) => advance(&mut model, nanos).await,
            Op::Call(kind) | Op::Finish(_, kind)
                if matches!(op, Op::Call(_)) || held.is_empty() =>
            {
                let (real, want) = (admit(&handle), model.acquire());
                match (real, want) {
                    (Ok(real), Ok(p)) => finish(&mut model, real, p, kind).await,
                    (Err(a), Err(b)) => prop_assert_eq!(a, b, "step {}", step),
                    (a, b) => prop_assert!(
                        false,
                        "step {step}: breaker {:?}, model {:?}",
                        a.map(|_| ()),
                        b.map(|_| ())
                    ),
                }
            }
            Op::Finish(i, kind) => {
                let (real, p) = held.remove(i % held.len());
                finish(&mut model, real, p, kind).await;
            }
            Op::Start => match (admit(&handle), model.acquire()) {
                (Ok(real), Ok(p)) => held.push((real, p)),
                (Err(a), Err(b)) => prop_assert_eq!(a, b, "step {}", step),
                (a, b) => prop_assert!(
                    false,
                    "step {step}: breaker {:?}, model {:?}",
                    a.map(|_| ()),
                    b.map(|_| ())
                ),
            },
            Op::Reset => {
                handle.reset();
                model.enter(CircuitState::Closed);
            }
            Op::Call(_) => unreachable!(),
        }
        let snap = handle.snapshot();
        prop_assert_eq!(snap.state, model.state, "step {}", step);
        match model.state {
            CircuitState::Closed => {
                let (calls, f, s) = model.counts();
                prop_assert_eq!(
                    (snap.calls, snap.failures, snap.slow_calls),
                    (u64::from(calls), u64::from(f), u64::from(s)),
                    "step {}",
                    step
                );
            }
            CircuitState::HalfOpen => {
                prop_assert_eq!(
                    snap.probes_in_flight,
                    model.taken - model.reported,
                    "step {}",
                    step
                );
                prop_assert_eq!(snap.calls, u64::from(model.reported), "step {}", step);
            }
            CircuitState::Open => {
                let left = model.open_until.saturating_sub(model.now);
                prop_assert_eq!(
                    snap.retry_after_ms,
                    Some(left.div_ceil(MS)),
                    "step {}",
                    step
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn count_window_breaker_agrees_with_the_reference_model(ops in prop::collection::vec(op(), 1..120)) {
        block_on(run(SlidingWindow::Count { size: 5 }, ops))?;
    }

    #[test]
    fn time_window_breaker_agrees_with_the_reference_model(ops in prop::collection::vec(op(), 1..120)) {
        // Four buckets of 5 s: calls leave the window 15 to 20 s after they ended.
        let window = SlidingWindow::Time { duration: Duration::from_secs(20), buckets: 4 };
        block_on(run(window, ops))?;
    }
}
