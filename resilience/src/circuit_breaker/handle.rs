//! The breaker shared by every clone, and the handle that reaches it from outside a stack.

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
    time::Duration,
};

use metrics::{Counter, Gauge};
use tokio::time::Instant;

use super::config::CircuitBreakerConfig;
use super::event::CircuitEvent;
use super::snapshot::CircuitSnapshot;
use super::state::{CallKind, CircuitState, Hooks, RawPermit, Rejected, StateMachine};
use crate::cache_lines::{StripedCounter, ThreadView};
use crate::classify::Outcome;
use crate::config::ConfigError;
use crate::error::{BoxError, CircuitOpen, HalfOpenFull};
use crate::events::{Channel, Subscription};
use crate::name::Name;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Metrics and events for one named breaker. Every handle is registered once, here; the
/// hot path only increments.
pub(crate) struct Observer {
    name: Name,
    state: Gauge,
    calls: [Counter; 5],
    rejected: Counter,
    /// Indexed `[from][to]` by state code; registered up front, so that every handle is
    /// bound to the recorder installed when the breaker was built, and only for the
    /// transitions that can happen ([`CircuitState::can_become`]).
    transitions: [[Counter; 6]; 6],
    /// Written by every rejection, from every thread: striped, so threads do not share it.
    rejected_total: StripedCounter,
    transitions_total: AtomicU64,
    /// Subscribers to transitions and rejections; read once per event, built only for them.
    events: Arc<Channel<CircuitEvent>>,
    /// Runs the automatic move to half-open, when configured.
    timer: Timer,
}

/// The task that moves an open breaker to half-open when its wait ends (with
/// `automatic_transition_to_half_open`): one per open period, holding only a weak
/// reference, aborted when a newer period replaces it or the breaker is dropped.
struct Timer {
    breaker: OnceLock<Weak<Shared>>,
    origin: Instant,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Timer {
    fn schedule(&self, generation: u64, until: u64) {
        let (Some(breaker), Ok(runtime)) =
            (self.breaker.get(), tokio::runtime::Handle::try_current())
        else {
            return; // no runtime here: the next call makes the move
        };
        let breaker = breaker.clone();
        let at = self.origin + Duration::from_nanos(until);
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(shared) = breaker.upgrade() {
                shared.machine.wait_elapsed(generation, shared.now());
            }
        });
        let previous = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    fn cancel(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

impl Observer {
    fn new(name: Name, origin: Instant) -> Self {
        // HELP text for the recorder in place now; a breaker is built once, so this is off
        // the hot path, and describing the same name again is harmless.
        metrics::describe_counter!(
            "resilience_circuit_calls_total",
            "Calls a circuit breaker let through, by breaker name and outcome."
        );
        metrics::describe_gauge!(
            "resilience_circuit_state",
            "Circuit breaker state by breaker name: 0 closed, 1 open, 2 half-open, 3 forced \
             open, 4 disabled, 5 metrics only."
        );
        metrics::describe_counter!(
            "resilience_circuit_transitions_total",
            "Circuit breaker state changes, by breaker name and from and to states."
        );
        metrics::describe_counter!(
            "resilience_circuit_rejected_total",
            "Calls a circuit breaker rejected without calling the service, by breaker name."
        );
        let label = name.to_string();
        let calls = CallKind::ALL.map(|kind| {
            metrics::counter!(
                "resilience_circuit_calls_total",
                "name" => label.clone(),
                "outcome" => kind.as_str()
            )
        });
        let state = metrics::gauge!("resilience_circuit_state", "name" => label.clone());
        state.set(f64::from(CircuitState::Closed.code()));
        let transitions = CircuitState::ALL.map(|from| {
            CircuitState::ALL.map(|to| {
                if !from.can_become(to) {
                    return Counter::noop();
                }
                metrics::counter!(
                    "resilience_circuit_transitions_total",
                    "name" => label.clone(),
                    "from" => from.as_str(),
                    "to" => to.as_str()
                )
            })
        });
        Self {
            state,
            calls,
            transitions,
            rejected: metrics::counter!("resilience_circuit_rejected_total", "name" => label),
            rejected_total: StripedCounter::default(),
            transitions_total: AtomicU64::new(0),
            events: Arc::default(),
            timer: Timer {
                breaker: OnceLock::new(),
                origin,
                task: Mutex::new(None),
            },
            name,
        }
    }

    /// Marks every series as updated without changing a value; see [`keyed`](crate::keyed).
    fn touch(&self) {
        self.state.increment(0.0);
        self.calls.iter().for_each(|c| c.increment(0));
        self.transitions
            .iter()
            .flatten()
            .for_each(|c| c.increment(0));
        self.rejected.increment(0);
    }

    fn on_reject(&self, rejected: Rejected) {
        self.rejected_total.add(1);
        self.rejected.increment(1);
        let reason = match rejected {
            Rejected::Open { .. } => "open",
            Rejected::ForcedOpen => "forced_open",
            Rejected::HalfOpenFull => "half_open_full",
        };
        tracing::debug!(target: "resilience", name = %self.name, reason, "circuit breaker rejected a call");
        self.events.emit(|| CircuitEvent::Rejected {
            reason: rejected.into(),
            at: Instant::now(),
        });
    }
}

impl Hooks for Observer {
    fn on_transition(&self, from: CircuitState, to: CircuitState) {
        self.transitions_total.fetch_add(1, Relaxed);
        self.state.set(f64::from(to.code()));
        self.transitions[usize::from(from.code())][usize::from(to.code())].increment(1);
        tracing::info!(
            target: "resilience",
            name = %self.name,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker state changed"
        );
        self.events.emit(|| CircuitEvent::StateChanged {
            from,
            to,
            at: Instant::now(),
        });
    }

    #[inline]
    fn on_call(&self, kind: CallKind) {
        self.calls[kind as usize].increment(1);
    }

    fn on_open(&self, generation: u64, until: u64) {
        self.timer.schedule(generation, until);
    }

    fn on_threshold(&self, exceeded: bool) {
        if exceeded {
            tracing::warn!(
                target: "resilience",
                name = %self.name,
                state = "metrics_only",
                "circuit breaker would open: a threshold is reached"
            );
        } else {
            tracing::info!(
                target: "resilience",
                name = %self.name,
                state = "metrics_only",
                "circuit breaker back under its thresholds"
            );
        }
        self.events.emit(|| CircuitEvent::ThresholdCrossed {
            exceeded,
            at: Instant::now(),
        });
    }
}

/// One breaker: the state machine, its clock origin and its observer.
pub(crate) struct Shared {
    pub(crate) machine: StateMachine<Observer>,
    /// The config in force; held while a reconfiguration is applied, so they serialise.
    config: Mutex<CircuitBreakerConfig>,
    origin: Instant,
    name: Name,
}

impl Shared {
    pub(crate) fn new(name: Name, config: CircuitBreakerConfig) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        let origin = Instant::now();
        let machine = StateMachine::new(
            config.params(),
            config.build_window(),
            Observer::new(name.clone(), origin),
            0,
        );
        let shared = Arc::new(Self {
            machine,
            config: Mutex::new(config),
            origin,
            name,
        });
        // A weak reference for the timer: it must not keep the breaker alive.
        let _ = shared
            .machine
            .hooks
            .timer
            .breaker
            .set(Arc::downgrade(&shared));
        Ok(shared)
    }

    /// Nanoseconds since the breaker was built, on tokio's (pausable) clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        super::config::nanos(self.origin.elapsed())
    }
}

fn lock_config(
    config: &Mutex<CircuitBreakerConfig>,
) -> std::sync::MutexGuard<'_, CircuitBreakerConfig> {
    config.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.machine.hooks.timer.cancel();
    }
}

/// A per-thread view of a [`Shared`] breaker: what services, permits and response futures
/// hold, so the reference count every call takes is not on a line every thread writes.
pub(crate) type Local = ThreadView<Shared>;

impl Local {
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<RawPermit, Rejected> {
        let shared = &*self.shared;
        shared.machine.try_acquire(|| shared.now())
    }

    /// Counts a rejection and builds the error the caller sees.
    #[inline]
    pub(crate) fn reject(&self, rejected: Rejected) -> BoxError {
        self.shared.machine.hooks.on_reject(rejected);
        match rejected {
            Rejected::Open { retry_after } => Box::new(CircuitOpen::new(
                self.shared.name.clone(),
                Duration::from_nanos(retry_after),
            )),
            Rejected::ForcedOpen => {
                Box::new(CircuitOpen::new(self.shared.name.clone(), Duration::ZERO))
            }
            Rejected::HalfOpenFull => Box::new(HalfOpenFull::new(self.shared.name.clone())),
        }
    }
}

/// A cloneable handle on one breaker, for health checks, dashboards, operators and callers
/// outside a tower stack.
///
/// Get one from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle) (or
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle)); it stays valid after the
/// service is boxed or moved into a router.
///
/// ```
/// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
/// use resilience_layers::Outcome;
///
/// let layer = CircuitBreakerLayer::new("users", CircuitBreakerConfig::default()).unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.state(), CircuitState::Closed);
///
/// // Outside tower: ask for a permit, make the call, report how it went.
/// let permit = handle.try_acquire().expect("closed circuits admit calls");
/// permit.record(Outcome::Success);
/// assert_eq!(handle.snapshot().calls, 1);
///
/// // Operators can take the dependency out of service and put it back.
/// handle.force_open();
/// assert!(handle.try_acquire().is_err());
/// handle.reset();
/// assert_eq!(handle.state(), CircuitState::Closed);
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    local: Arc<Local>,
}

impl CircuitBreakerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            local: Local::new(shared),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.local.shared
    }

    /// The breaker's name, as in its metrics and events.
    pub fn name(&self) -> &str {
        &self.local.shared.name
    }

    /// The configuration in force: the one the breaker was built with, or the last one
    /// [`reconfigure`](Self::reconfigure) applied.
    pub fn config(&self) -> CircuitBreakerConfig {
        lock_config(&self.local.shared.config).clone()
    }

    /// Replaces the configuration of the running breaker without losing its state.
    ///
    /// `config` is [validated](CircuitBreakerConfig::validate) first, with the same
    /// field-path errors as when building; an invalid one changes nothing. A valid one keeps
    /// the state (an open circuit stays open until its current wait ends, a half-open one
    /// keeps its probes, forced and manual states stay), the counters and the subscriptions:
    ///
    /// - thresholds, `minimum_calls`, slow-call and consecutive-failure settings apply from
    ///   the next recorded call;
    /// - `wait_in_open`, `wait_multiplier` and `max_wait_in_open` apply from the next open
    ///   period;
    /// - a resized count window keeps the most recent outcomes that fit; a window changed to
    ///   or from a time window, or a time window's geometry changed, starts empty (in flight
    ///   calls then record into the new window). The old window's memory is kept until the
    ///   breaker is dropped, as a call on another thread may still be writing to it;
    /// - a lowered `permitted_calls_in_half_open` that the probes already reported decides
    ///   the half-open period at once;
    /// - turning `automatic_transition_to_half_open` on while open starts the timer.
    ///
    /// A call racing the reconfiguration may see some settings old and some new.
    ///
    /// ```
    /// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};
    /// use resilience_layers::Outcome;
    ///
    /// let handle = CircuitBreakerLayer::new("db", CircuitBreakerConfig::default()).unwrap().handle();
    /// handle.try_acquire().unwrap().record(Outcome::Failure);
    ///
    /// let mut config = handle.config();
    /// config.window = SlidingWindow::Count { size: 0 };
    /// assert_eq!(handle.reconfigure(config.clone()).unwrap_err().field(), "window.size");
    ///
    /// config.window = SlidingWindow::Count { size: 10 };
    /// handle.reconfigure(config).unwrap();
    /// assert_eq!(handle.snapshot().failures, 1); // the window's outcomes carried over
    /// ```
    pub fn reconfigure(&self, config: CircuitBreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let shared = &*self.local.shared;
        let mut current = lock_config(&shared.config);
        let window = (config.window != current.window).then(|| config.build_window());
        shared
            .machine
            .reconfigure(config.params(), window, shared.now());
        tracing::info!(
            target: "resilience",
            name = %shared.name,
            window_replaced = config.window != current.window,
            "circuit breaker reconfigured"
        );
        *current = config;
        Ok(())
    }

    /// The current state. An open circuit whose wait is over still reads as open until the
    /// next call moves it to half-open, unless `automatic_transition_to_half_open` is on; the
    /// [`snapshot`](Self::snapshot) tells the two apart with `retry_after_ms == Some(0)`.
    pub fn state(&self) -> CircuitState {
        self.local.shared.machine.state()
    }

    /// What the breaker is doing now, for `/resilience`-style endpoints and dashboards.
    ///
    /// An open circuit whose wait has elapsed reports `state: open` with
    /// `retry_after_ms: Some(0)`: a probe is due and the next call will be admitted as one
    /// (with `automatic_transition_to_half_open`, it reports `half_open` instead).
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
    /// use resilience_layers::Outcome;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config = CircuitBreakerConfig { wait_in_open: Duration::from_secs(5), ..Default::default() };
    /// let handle = CircuitBreakerLayer::new("db", config).unwrap().handle();
    /// while handle.state() == CircuitState::Closed {
    ///     handle.try_acquire().unwrap().record(Outcome::Failure);
    /// }
    /// assert_eq!(handle.snapshot().retry_after_ms, Some(5_000));
    /// tokio::time::advance(Duration::from_secs(5)).await;
    /// let snapshot = handle.snapshot();
    /// assert_eq!((snapshot.state, snapshot.retry_after_ms), (CircuitState::Open, Some(0)));
    /// // The next call is the probe.
    /// assert_eq!(handle.try_acquire().unwrap().state(), CircuitState::HalfOpen);
    /// # }
    /// ```
    pub fn snapshot(&self) -> CircuitSnapshot {
        let shared = &*self.local.shared;
        let view = shared.machine.view(shared.now());
        let hooks = &shared.machine.hooks;
        CircuitSnapshot::new(
            &shared.name,
            view,
            hooks.rejected_total.sum(),
            hooks.transitions_total.load(Relaxed),
        )
    }

    /// Subscribes to the breaker's state transitions and rejections (and, in metrics-only
    /// mode, its threshold crossings), in the order they happen; see
    /// [`events`](crate::events) for delivery and cost (none while nobody subscribes).
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilience_layers::Outcome;
    /// use resilience_layers::circuit_breaker::{
    ///     CircuitBreakerConfig, CircuitBreakerLayer, CircuitEvent, CircuitState,
    /// };
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config = CircuitBreakerConfig { minimum_calls: 1, ..Default::default() };
    /// let handle = CircuitBreakerLayer::new("users", config).unwrap().handle();
    /// let mut events = handle.subscribe();
    /// tokio::spawn(async move {
    ///     while let Ok(event) = events.recv().await {
    ///         if let CircuitEvent::StateChanged { to: CircuitState::Open, .. } = event {
    ///             // page someone, shed optional work, ...
    ///         }
    ///     }
    /// });
    /// handle.try_acquire().unwrap().record(Outcome::Failure);
    /// # }
    /// ```
    pub fn subscribe(&self) -> Subscription<CircuitEvent> {
        self.local.shared.machine.hooks.events.subscribe()
    }

    /// The breaker's name as it holds it, for tests of what is freed.
    #[cfg(all(test, not(resilience_loom)))]
    pub(crate) fn name_for_tests(&self) -> &Name {
        &self.local.shared.name
    }

    /// Marks the breaker's metric series as updated; see [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        self.local.shared.machine.hooks.touch();
    }

    /// Rejects every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.set(CircuitState::ForcedOpen);
    }

    /// Lets every call through and records nothing until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.set(CircuitState::Disabled);
    }

    /// Records calls and emits their metrics but never rejects, until
    /// [`reset`](Self::reset): a way to try thresholds out on live traffic.
    pub fn metrics_only(&self) {
        self.set(CircuitState::MetricsOnly);
    }

    /// Back to Closed with an empty window, from any state.
    pub fn reset(&self) {
        self.set(CircuitState::Closed);
    }

    fn set(&self, to: CircuitState) {
        let shared = &*self.local.shared;
        shared.machine.set(to, shared.now());
    }

    /// Asks to make one call, for callers that are not tower services (an HTTP client
    /// middleware, for example). The error is the same `BoxError` the service returns:
    /// [`CircuitOpen`] or [`HalfOpenFull`].
    pub fn try_acquire(&self) -> Result<CallPermit, BoxError> {
        match self.local.try_acquire() {
            Ok(raw) => Ok(CallPermit::new(self.local.clone(), raw)),
            Err(rejected) => Err(self.local.reject(rejected)),
        }
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

/// Permission to make one call through a breaker.
///
/// Report how the call went with [`record`](Self::record). Dropping a permit without
/// recording (the caller gave up, the future was cancelled) records nothing and, in
/// half-open, gives the probe slot back.
///
/// ```
/// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
/// use resilience_layers::Outcome;
///
/// let handle = CircuitBreakerLayer::new("db", CircuitBreakerConfig::default()).unwrap().handle();
/// let permit = handle.try_acquire().unwrap();
/// let result: Result<(), &str> = Err("connection refused");
/// permit.record(if result.is_ok() { Outcome::Success } else { Outcome::Failure });
/// assert_eq!(handle.snapshot().failures, 1);
/// ```
#[must_use = "a permit records nothing unless `record` is called"]
pub struct CallPermit {
    local: Arc<Local>,
    raw: RawPermit,
    done: bool,
}

impl CallPermit {
    pub(crate) fn new(local: Arc<Local>, raw: RawPermit) -> Self {
        Self {
            local,
            raw,
            done: false,
        }
    }

    /// Records the outcome of the call. Its duration (for slow-call detection) is measured
    /// from when the permit was issued, and only if slow-call detection is configured.
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        let shared = &*self.local.shared;
        shared.machine.record(self.raw, outcome, || shared.now());
    }

    /// The state the breaker was in when this permit was issued.
    pub fn state(&self) -> CircuitState {
        self.raw.state
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if !self.done {
            self.local.shared.machine.release(&self.raw);
        }
    }
}

impl fmt::Debug for CallPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("breaker", &self.local.shared.name)
            .field("state", &self.raw.state)
            .finish()
    }
}
