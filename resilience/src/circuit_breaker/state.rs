//! The breaker's state machine: atomics and a transition lock, no tokio, no clock.
//!
//! Time comes in as nanoseconds since an origin the caller chose, through a closure that is
//! only called when an answer depends on it (open circuit, half-open timeout, slow-call
//! detection, time window), so the closed path never reads a clock it does not need and
//! tests (unit, property and loom) drive time by hand.
//!
//! # One word of state
//!
//! Everything a call needs to decide is packed into one `AtomicU64`:
//!
//! ```text
//!  63          40 39    32 31    24 23    16 15     8 7   0
//! | generation   | slow   | failed | reported | taken  | kind |
//! ```
//!
//! `taken`, `reported`, `failed` and `slow` only mean something in HalfOpen: `taken` counts
//! probe slots handed out (in flight or reported), so admitting a probe is one
//! compare-and-swap that fails once `taken` reaches the limit. Every transition stores a
//! word with the next generation, and every permit remembers the generation it was issued
//! under, so a result or a cancellation that arrives after a transition is recognised as
//! stale and changes nothing.
//!
//! Transitions themselves are rare; they take a mutex, re-check the word they were decided
//! from (so two threads that both saw the trip point make exactly one transition), write the
//! side data (when the open period ends, the current wait) and then publish the new word
//! with `Release`, so anyone who sees the new generation also sees its side data.

use std::fmt;

use serde::Serialize;

use super::params::LiveParams;
use super::sync::{AtomicU32, AtomicU64, Mutex, Ordering::*, Padded, lock};
use super::window::{Counts, FAILED, GEN_MASK, SLOW, Window};
use crate::classify::Outcome;
use crate::versions::Versions;

/// The state of a circuit breaker.
///
/// Serializes in snake case (`"half_open"`), as the snapshot and the dashboard show it.
///
/// ```
/// use resilience_layers::circuit_breaker::CircuitState;
///
/// assert_eq!(CircuitState::HalfOpen.as_str(), "half_open");
/// assert!(CircuitState::ForcedOpen.rejects());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls pass and are recorded; the breaker trips when a rate crosses its threshold.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A fixed number of probe calls pass; their results decide Closed or Open.
    HalfOpen,
    /// Set by hand: every call is rejected until [`reset`](super::CircuitBreakerHandle::reset).
    ForcedOpen,
    /// Set by hand: every call passes and nothing is recorded.
    Disabled,
    /// Set by hand: calls are recorded and counted in metrics, but the breaker never trips.
    MetricsOnly,
}

impl CircuitState {
    pub(crate) const ALL: [CircuitState; 6] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
        CircuitState::MetricsOnly,
    ];

    /// The snake-case name used in metrics labels, events and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    /// The value of the `resilience_circuit_state` gauge: 0 closed, 1 open, 2 half-open,
    /// 3 forced open, 4 disabled, 5 metrics-only.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// True for the states that reject calls (open and forced open; half-open rejects only
    /// once its probe slots are taken).
    pub fn rejects(self) -> bool {
        matches!(self, CircuitState::Open | CircuitState::ForcedOpen)
    }

    /// Whether the breaker can move from `self` to `to`: by itself (Closed to Open, Open to
    /// HalfOpen, HalfOpen to Closed or Open) or by hand (to ForcedOpen, Disabled,
    /// MetricsOnly or Closed, from any other state).
    pub(crate) fn can_become(self, to: CircuitState) -> bool {
        use CircuitState::*;
        self != to
            && matches!(
                (self, to),
                (Closed, Open)
                    | (Open, HalfOpen)
                    | (HalfOpen, Open)
                    | (_, Closed | ForcedOpen | Disabled | MetricsOnly)
            )
    }

    fn from_code(code: u64) -> CircuitState {
        Self::ALL[(code as usize).min(5)]
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// The state word.
const KIND_MASK: u64 = 0xff;
const TAKEN_SHIFT: u32 = 8;
const REPORTED_SHIFT: u32 = 16;
const FAILED_SHIFT: u32 = 24;
const SLOW_SHIFT: u32 = 32;
const GEN_SHIFT: u32 = 40;

fn kind(word: u64) -> CircuitState {
    CircuitState::from_code(word & KIND_MASK)
}
fn generation(word: u64) -> u64 {
    word >> GEN_SHIFT
}
fn field(word: u64, shift: u32) -> u64 {
    (word >> shift) & 0xff
}
fn pack(gen_: u64, state: CircuitState) -> u64 {
    ((gen_ & GEN_MASK) << GEN_SHIFT) | u64::from(state.code())
}

/// What kind of call was recorded, for the `calls_total{outcome}` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Success = 0,
    Failure = 1,
    SlowSuccess = 2,
    SlowFailure = 3,
    Ignored = 4,
}

impl CallKind {
    pub(crate) const ALL: [CallKind; 5] = [
        CallKind::Success,
        CallKind::Failure,
        CallKind::SlowSuccess,
        CallKind::SlowFailure,
        CallKind::Ignored,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallKind::Success => "success",
            CallKind::Failure => "failure",
            CallKind::SlowSuccess => "slow_success",
            CallKind::SlowFailure => "slow_failure",
            CallKind::Ignored => "ignored",
        }
    }
}

/// Why a call was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Open; the next probe is admitted in this many nanoseconds.
    Open { retry_after: u64 },
    /// Forced open by hand: no known end.
    ForcedOpen,
    /// Half-open with every probe slot taken.
    HalfOpenFull,
}

/// Observers of what the state machine does. Implemented by the metrics/tracing observer,
/// by `()` (nothing) and by counting hooks in tests.
pub(crate) trait Hooks {
    /// A real transition (`from != to`); called once, under the transition lock.
    fn on_transition(&self, from: CircuitState, to: CircuitState);
    /// A call's result was recorded (not called in Disabled).
    fn on_call(&self, kind: CallKind);
    /// In MetricsOnly: the window crossed a threshold (`true`: the breaker would have
    /// opened) or fell back under them. Called once per crossing.
    fn on_threshold(&self, _exceeded: bool) {}
    /// With the automatic transition on: an open period of `generation` began, ending at
    /// `until`; call [`StateMachine::wait_elapsed`] then. Called under the transition lock.
    fn on_open(&self, _generation: u64, _until: u64) {}
}

impl Hooks for () {
    fn on_transition(&self, _: CircuitState, _: CircuitState) {}
    fn on_call(&self, _: CallKind) {}
}

/// Numbers derived from a validated config, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    /// `None`: slow-call detection off, the clock is never read for it.
    pub(crate) slow_call_nanos: Option<u64>,
    pub(crate) minimum_calls: u64,
    pub(crate) consecutive_failures: Option<u64>,
    pub(crate) wait_nanos: u64,
    pub(crate) wait_multiplier: f64,
    pub(crate) max_wait_nanos: u64,
    pub(crate) probes: u64,
    pub(crate) max_half_open_nanos: Option<u64>,
    /// Move to HalfOpen when the wait ends, without waiting for a call ([`Hooks::on_open`]).
    pub(crate) automatic_half_open: bool,
}

/// Admission to one call, tied to the generation it was issued in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawPermit {
    pub(crate) generation: u64,
    pub(crate) state: CircuitState,
    /// When the call started, if slow-call detection needs it.
    pub(crate) start: u64,
}

/// Side data, written only under the transition lock.
#[derive(Debug)]
struct Side {
    /// The wait of the current (or last) open period.
    wait: u64,
    /// The configured waits (only transitions read them).
    wait_nanos: u64,
    wait_multiplier: f64,
    max_wait_nanos: u64,
}

impl Side {
    fn waits(&mut self, params: &Params) {
        self.wait_nanos = params.wait_nanos;
        self.wait_multiplier = params.wait_multiplier;
        self.max_wait_nanos = params.max_wait_nanos;
    }
}

/// The state machine shared by every clone of a breaker.
#[derive(Debug)]
pub(crate) struct StateMachine<H> {
    params: LiveParams,
    word: AtomicU64,
    /// The window, and every window a reconfiguration replaced it with ([`Versions`]).
    windows: Versions<Window>,
    /// gen(24) | consecutive failures(40), only used when that mode is on.
    consecutive: Padded<AtomicU64>,
    /// The generation of the window's contents (the last Closed or MetricsOnly one).
    window_gen: AtomicU64,
    /// When the current open period ends (valid while the word says Open).
    open_until: AtomicU64,
    /// When the current state was entered.
    since: AtomicU64,
    /// In MetricsOnly: 1 while the window is at or over a threshold.
    over_threshold: AtomicU32,
    side: Mutex<Side>,
    pub(crate) hooks: H,
}

impl<H: Hooks> StateMachine<H> {
    /// A closed breaker; `now` is the time of construction.
    pub(crate) fn new(params: Params, window: Window, hooks: H, now: u64) -> Self {
        let mut side = Side {
            wait: params.wait_nanos,
            wait_nanos: 0,
            wait_multiplier: 1.0,
            max_wait_nanos: 0,
        };
        side.waits(&params);
        Self {
            side: Mutex::new(side),
            params: LiveParams::new(&params),
            word: AtomicU64::new(pack(0, CircuitState::Closed)),
            windows: Versions::new(window),
            consecutive: Padded(AtomicU64::new(0)),
            window_gen: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            since: AtomicU64::new(now),
            over_threshold: AtomicU32::new(0),
            hooks,
        }
    }

    fn measures_duration(&self) -> bool {
        self.params.slow_call_nanos().is_some()
    }

    /// Asks to make one call. The clock is read only in Open and HalfOpen, and in Closed
    /// only when slow-call detection is on.
    #[inline]
    pub(crate) fn try_acquire(&self, now: impl Fn() -> u64) -> Result<RawPermit, Rejected> {
        let mut word = self.word.load(Acquire);
        loop {
            let generation = generation(word);
            let state = kind(word);
            match state {
                CircuitState::Closed | CircuitState::MetricsOnly | CircuitState::Disabled => {
                    let start = if self.measures_duration() && state != CircuitState::Disabled {
                        now()
                    } else {
                        0
                    };
                    return Ok(RawPermit {
                        generation,
                        state,
                        start,
                    });
                }
                CircuitState::ForcedOpen => return Err(Rejected::ForcedOpen),
                CircuitState::Open => {
                    let t = now();
                    let until = self.open_until.load(Acquire);
                    if t < until {
                        return Err(Rejected::Open {
                            retry_after: until - t,
                        });
                    }
                    self.transition(word, CircuitState::HalfOpen, t);
                    word = self.word.load(Acquire);
                }
                CircuitState::HalfOpen => {
                    if let Some(max) = self.params.max_half_open_nanos() {
                        let t = now();
                        let since = self.since.load(Acquire);
                        // `since` is published after the word: if we read a newer period's
                        // value, the newer word is visible now too, so start over with it.
                        let again = self.word.load(Acquire);
                        if again >> GEN_SHIFT != generation {
                            word = again;
                            continue;
                        }
                        if t.saturating_sub(since) >= max {
                            // Our `since` may be older than the word's; decide under the lock.
                            self.half_open_timeout(word, max, t);
                            word = self.word.load(Acquire);
                            continue;
                        }
                    }
                    if field(word, TAKEN_SHIFT) >= self.params.probes() {
                        return Err(Rejected::HalfOpenFull);
                    }
                    match self.word.compare_exchange_weak(
                        word,
                        word + (1 << TAKEN_SHIFT),
                        AcqRel,
                        Acquire,
                    ) {
                        Ok(_) => {
                            let start = if self.measures_duration() { now() } else { 0 };
                            return Ok(RawPermit {
                                generation,
                                state,
                                start,
                            });
                        }
                        Err(actual) => word = actual,
                    }
                }
            }
        }
    }

    /// Gives back a permit whose call never reported (dropped, or ignored): frees its probe
    /// slot if it still belongs to the current half-open period.
    pub(crate) fn release(&self, permit: &RawPermit) {
        if permit.state != CircuitState::HalfOpen {
            return;
        }
        let mut word = self.word.load(Acquire);
        loop {
            if generation(word) != permit.generation
                || kind(word) != CircuitState::HalfOpen
                || field(word, TAKEN_SHIFT) <= field(word, REPORTED_SHIFT)
            {
                return; // stale, or nothing in flight to give back
            }
            match self
                .word
                .compare_exchange_weak(word, word - (1 << TAKEN_SHIFT), AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Records the result of a permitted call.
    pub(crate) fn record(&self, permit: RawPermit, outcome: Outcome, now: impl Fn() -> u64) {
        if permit.state == CircuitState::Disabled {
            return;
        }
        // Read the clock at most once, and only if something needs it.
        let mut cached = None;
        let mut clock = || *cached.get_or_insert_with(&now);
        let bad = match outcome {
            Outcome::Ignored => {
                self.hooks.on_call(CallKind::Ignored);
                self.release(&permit);
                return;
            }
            Outcome::Failure => FAILED,
            Outcome::Success => 0,
        };
        let slow = match self.params.slow_call_nanos() {
            Some(limit) if clock().saturating_sub(permit.start) >= limit => SLOW,
            _ => 0,
        };
        let bits = bad | slow;
        self.hooks.on_call(match bits {
            0 => CallKind::Success,
            FAILED => CallKind::Failure,
            SLOW => CallKind::SlowSuccess,
            _ => CallKind::SlowFailure,
        });
        match permit.state {
            CircuitState::Closed | CircuitState::MetricsOnly => {
                self.record_closed(permit, bits, &mut clock)
            }
            CircuitState::HalfOpen => self.record_probe(permit, bits, &mut clock),
            // No permits are issued in these states.
            CircuitState::Open | CircuitState::ForcedOpen | CircuitState::Disabled => {}
        }
    }

    fn record_closed(&self, permit: RawPermit, bits: u8, clock: &mut impl FnMut() -> u64) {
        let window = self.windows.get();
        let counts = window.record(permit.generation, bits, &mut *clock);
        let consecutive_trip = match self.params.consecutive_failures() {
            Some(limit) => self.count_consecutive(permit.generation, bits & FAILED != 0) >= limit,
            None => false,
        };
        if permit.state == CircuitState::MetricsOnly {
            // Never trips, but says when it would have (and when that is over), once each.
            let counts = counts.unwrap_or_else(|| window.counts(permit.generation, clock()));
            let over = u32::from(consecutive_trip || self.rates_trip(counts));
            if self.over_threshold.load(Acquire) != over
                && self.over_threshold.swap(over, AcqRel) != over
            {
                self.hooks.on_threshold(over == 1);
            }
            return;
        }
        let rate_trip = counts.is_some_and(|c| self.rates_trip(c));
        if consecutive_trip || rate_trip {
            let word = pack(permit.generation, CircuitState::Closed);
            self.transition(word, CircuitState::Open, clock());
        }
    }

    /// Updates the consecutive-failure counter and returns its value (0 when stale).
    fn count_consecutive(&self, gen_: u64, failed: bool) -> u64 {
        const COUNT: u64 = (1 << 40) - 1;
        let gen_ = gen_ & GEN_MASK;
        let mut cur = self.consecutive.load(Acquire);
        loop {
            if cur >> 40 != gen_ {
                return 0;
            }
            let next = if failed {
                (cur & COUNT).saturating_add(1).min(COUNT)
            } else if cur & COUNT == 0 {
                return 0; // already zero: don't write a shared line for nothing
            } else {
                0
            };
            match self
                .consecutive
                .compare_exchange_weak(cur, (gen_ << 40) | next, AcqRel, Acquire)
            {
                Ok(_) => return next,
                Err(actual) => cur = actual,
            }
        }
    }

    /// At or above either threshold, once there are enough calls.
    fn rates_trip(&self, c: Counts) -> bool {
        c.calls > 0 && c.calls >= self.params.minimum_calls() && self.rates_trip_ignoring_minimum(c)
    }

    fn record_probe(&self, permit: RawPermit, bits: u8, clock: &mut impl FnMut() -> u64) {
        let mut word = self.word.load(Acquire);
        let next = loop {
            if generation(word) != permit.generation || kind(word) != CircuitState::HalfOpen {
                return; // a newer period started: this result changes nothing
            }
            let mut next = word + (1 << REPORTED_SHIFT);
            if bits & FAILED != 0 {
                next += 1 << FAILED_SHIFT;
            }
            if bits & SLOW != 0 {
                next += 1 << SLOW_SHIFT;
            }
            match self.word.compare_exchange_weak(word, next, AcqRel, Acquire) {
                Ok(_) => break next,
                Err(actual) => word = actual,
            }
        };
        let reported = field(next, REPORTED_SHIFT);
        if reported < self.params.probes() {
            return;
        }
        // Every probe has reported; exactly one caller gets here for this generation.
        let probes = Counts {
            calls: reported,
            failures: field(next, FAILED_SHIFT),
            slow: field(next, SLOW_SHIFT),
        };
        let to = if self.rates_trip_ignoring_minimum(probes) {
            CircuitState::Open
        } else {
            CircuitState::Closed
        };
        self.transition(next, to, clock());
    }

    fn rates_trip_ignoring_minimum(&self, c: Counts) -> bool {
        c.failures as f64 * 100.0 >= self.params.failure_rate_threshold() * c.calls as f64
            || c.slow as f64 * 100.0 >= self.params.slow_call_rate_threshold() * c.calls as f64
    }

    /// Moves from the state and generation of `from_word` to `to`, unless someone else
    /// already moved on. Returns whether this call made the transition.
    fn transition(&self, from_word: u64, to: CircuitState, now: u64) -> bool {
        let mut side = lock(&self.side);
        let word = self.word.load(Acquire);
        if generation(word) != generation(from_word) || kind(word) != kind(from_word) {
            return false;
        }
        self.enter(&mut side, word, to, now);
        true
    }

    /// Ends a half-open period that has lasted `max`, checked under the lock, where `since`
    /// is exactly the period's start: it re-opens if a probe slot is taken (a probe is
    /// hung, or too few came to decide); with no slot taken (no probe came yet, as after an
    /// automatic move with no traffic, or every probe was given back) nothing has failed,
    /// and a new half-open period starts instead.
    fn half_open_timeout(&self, from_word: u64, max: u64, now: u64) {
        let mut side = lock(&self.side);
        let word = self.word.load(Acquire);
        if generation(word) == generation(from_word)
            && kind(word) == CircuitState::HalfOpen
            && now.saturating_sub(self.since.load(Acquire)) >= max
        {
            let to = if field(word, TAKEN_SHIFT) == 0 {
                CircuitState::HalfOpen
            } else {
                CircuitState::Open
            };
            self.enter(&mut side, word, to, now);
        }
    }

    /// The timer of an automatic transition: moves the open period of `generation` to
    /// HalfOpen if it is still the current one and its wait is over at `now`.
    pub(crate) fn wait_elapsed(&self, generation_: u64, now: u64) {
        let mut side = lock(&self.side);
        let word = self.word.load(Acquire);
        if generation(word) == generation_
            && kind(word) == CircuitState::Open
            && now >= self.open_until.load(Acquire)
            && self.params.automatic_half_open()
        {
            self.enter(&mut side, word, CircuitState::HalfOpen, now);
        }
    }

    /// Takes new numbers, and `window` in place of the current window when given (built for
    /// the new config), without leaving the current state:
    ///
    /// - thresholds, minimum calls, slow-call and consecutive-failure settings apply from
    ///   the next recorded call;
    /// - the waits apply from the next open period (the current one keeps its end), and a
    ///   wait grown by repeated failed probes is brought within the new bounds;
    /// - a new window takes over the outcomes of the old one, the most recent first, as far
    ///   as both are count windows and they fit (a time window starts empty);
    /// - a half-open period whose reported probes already reach a lowered probe count
    ///   decides at once on them;
    /// - turning the automatic transition on while open starts the timer for this period.
    pub(crate) fn reconfigure(&self, params: Params, window: Option<Window>, now: u64) {
        let mut side = lock(&self.side);
        side.waits(&params);
        side.wait = side.wait.clamp(
            params.wait_nanos,
            params.max_wait_nanos.max(params.wait_nanos),
        );
        self.params.store(&params);
        if let Some(window) = window {
            let contents = self.window_gen.load(Acquire);
            let outcomes = self.windows.get().outcomes(contents);
            self.windows.replace(window.seeded(contents, &outcomes));
        }
        let word = self.word.load(Acquire);
        match kind(word) {
            CircuitState::HalfOpen => {
                let reported = field(word, REPORTED_SHIFT);
                if reported > 0 && reported >= params.probes {
                    let probes = Counts {
                        calls: reported,
                        failures: field(word, FAILED_SHIFT),
                        slow: field(word, SLOW_SHIFT),
                    };
                    let to = if self.rates_trip_ignoring_minimum(probes) {
                        CircuitState::Open
                    } else {
                        CircuitState::Closed
                    };
                    self.enter(&mut side, word, to, now);
                }
            }
            CircuitState::Open if params.automatic_half_open => {
                self.hooks
                    .on_open(generation(word), self.open_until.load(Acquire));
            }
            _ => {}
        }
    }

    /// Sets a state by hand (forced open, disabled, metrics-only, or closed by `reset`).
    ///
    /// Closed (a reset) always starts a new generation with an empty window, even from
    /// Closed; the other states are left alone when the breaker is already in them.
    pub(crate) fn set(&self, to: CircuitState, now: u64) {
        let mut side = lock(&self.side);
        let word = self.word.load(Acquire);
        let from = kind(word);
        if from == to && to != CircuitState::Closed {
            return;
        }
        self.enter(&mut side, word, to, now);
    }

    /// Publishes the next generation in state `to`. Caller holds the transition lock.
    fn enter(&self, side: &mut Side, word: u64, to: CircuitState, now: u64) {
        let from = kind(word);
        // The metrics register a transition counter only for the moves `can_become` allows.
        debug_assert!(from == to || from.can_become(to), "{from} -> {to}");
        let next_gen = (generation(word) + 1) & GEN_MASK;
        match to {
            CircuitState::Open => {
                side.wait = if from == CircuitState::HalfOpen {
                    // Probes failed again (or never finished): wait longer, up to the cap.
                    let grown = side.wait as f64 * side.wait_multiplier;
                    (grown.min(side.max_wait_nanos as f64) as u64).max(side.wait)
                } else {
                    side.wait_nanos
                };
                self.open_until
                    .store(now.saturating_add(side.wait), Release);
            }
            CircuitState::Closed | CircuitState::MetricsOnly => {
                side.wait = side.wait_nanos;
                self.windows.get().reset(next_gen);
                self.window_gen.store(next_gen, Release);
                self.over_threshold.store(0, Release);
                self.consecutive.swap(next_gen << 40, AcqRel);
            }
            CircuitState::HalfOpen | CircuitState::ForcedOpen | CircuitState::Disabled => {}
        }
        // Any probe slot taken since `word` was loaded belongs to the old generation; its
        // permit's later release or result is recognised as stale, so the new word simply
        // replaces whatever is there. A swap rather than a store: as a read-modify-write it
        // is ordered against every racing compare-and-swap (loom found a lost transition
        // with a plain store).
        self.word.swap(pack(next_gen, to), AcqRel);
        // After the word, so a reader that sees this `since` also sees the new word (and one
        // that sees the new word with an older `since` re-checks under the lock).
        self.since.store(now, Release);
        if from != to {
            self.hooks.on_transition(from, to);
        }
        if to == CircuitState::Open && self.params.automatic_half_open() {
            self.hooks.on_open(next_gen, self.open_until.load(Acquire));
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> CircuitState {
        kind(self.word.load(Acquire))
    }

    /// Everything a snapshot shows, read without the lock (each value is current; together
    /// they may straddle a concurrent call).
    pub(crate) fn view(&self, now: u64) -> View {
        let word = self.word.load(Acquire);
        let state = kind(word);
        let counts = if state == CircuitState::HalfOpen {
            Counts {
                calls: field(word, REPORTED_SHIFT),
                failures: field(word, FAILED_SHIFT),
                slow: field(word, SLOW_SHIFT),
            }
        } else {
            // Outside Closed the window stays as it was when the breaker left it, which
            // shows why it tripped.
            self.windows
                .get()
                .counts(self.window_gen.load(Acquire), now)
        };
        View {
            state,
            counts,
            probes_in_flight: if state == CircuitState::HalfOpen {
                field(word, TAKEN_SHIFT) - field(word, REPORTED_SHIFT)
            } else {
                0
            },
            in_state_for: now.saturating_sub(self.since.load(Acquire)),
            retry_after: (state == CircuitState::Open)
                .then(|| self.open_until.load(Acquire).saturating_sub(now)),
        }
    }

    /// Whether `permit` still belongs to the current generation (for tests).
    #[cfg(all(test, not(resilience_loom)))]
    pub(crate) fn is_current(&self, permit: &RawPermit) -> bool {
        generation(self.word.load(Acquire)) == permit.generation
    }

    /// The number of probe slots taken (for tests and loom models).
    #[cfg(test)]
    pub(crate) fn probes_taken(&self) -> u64 {
        field(self.word.load(Acquire), TAKEN_SHIFT)
    }

    /// The raw word (for messages from loom models).
    #[cfg(all(test, resilience_loom))]
    pub(crate) fn raw(&self) -> u64 {
        self.word.load(Acquire)
    }

    /// The current generation (for tests).
    #[cfg(all(test, not(resilience_loom)))]
    pub(crate) fn generation(&self) -> u64 {
        generation(self.word.load(Acquire))
    }

    /// How many windows the breaker holds (for loom models).
    #[cfg(all(test, resilience_loom))]
    pub(crate) fn windows_held(&self) -> usize {
        self.windows.held()
    }

    /// The counts of the current window (for tests and loom models).
    #[cfg(test)]
    pub(crate) fn counts(&self, now: u64) -> Counts {
        self.view(now).counts
    }
}

/// What the snapshot reads from the state machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    pub(crate) state: CircuitState,
    pub(crate) counts: Counts,
    pub(crate) probes_in_flight: u64,
    pub(crate) in_state_for: u64,
    pub(crate) retry_after: Option<u64>,
}
