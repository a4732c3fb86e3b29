//! What a breaker tells its subscribers.

use std::time::Duration;

use tokio::time::Instant;

use super::state::{CircuitState, Rejected};

/// One thing a circuit breaker did, as its
/// [`subscribe`](super::CircuitBreakerHandle::subscribe) subscriptions see it.
///
/// ```
/// use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitEvent, RejectReason};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handle = CircuitBreakerLayer::new("db", CircuitBreakerConfig::default()).unwrap().handle();
/// let mut events = handle.subscribe();
/// handle.force_open();
/// assert!(handle.try_acquire().is_err());
/// assert!(matches!(events.recv().await.unwrap(), CircuitEvent::StateChanged { .. }));
/// match events.recv().await.unwrap() {
///     CircuitEvent::Rejected { reason, .. } => assert_eq!(reason, RejectReason::ForcedOpen),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CircuitEvent {
    /// The breaker moved from one state to another (by itself, by its timer or by hand).
    StateChanged {
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
        /// When.
        at: Instant,
    },
    /// A call was turned away without reaching the service.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// When.
        at: Instant,
    },
    /// In metrics-only mode: the window reached a threshold (`exceeded`: the breaker would
    /// have opened) or fell back under them.
    ThresholdCrossed {
        /// True when a threshold is reached, false when back under.
        exceeded: bool,
        /// When.
        at: Instant,
    },
}

impl CircuitEvent {
    /// When it happened, on tokio's clock.
    pub fn at(&self) -> Instant {
        match self {
            CircuitEvent::StateChanged { at, .. }
            | CircuitEvent::Rejected { at, .. }
            | CircuitEvent::ThresholdCrossed { at, .. } => *at,
        }
    }
}

/// Why a breaker rejected a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Open; a probe is admitted after `retry_after`.
    Open {
        /// Time left until the next probe.
        retry_after: Duration,
    },
    /// Forced open by hand, until a reset.
    ForcedOpen,
    /// Half-open with every probe slot taken.
    HalfOpenFull,
}

impl From<Rejected> for RejectReason {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Open { retry_after } => RejectReason::Open {
                retry_after: Duration::from_nanos(retry_after),
            },
            Rejected::ForcedOpen => RejectReason::ForcedOpen,
            Rejected::HalfOpenFull => RejectReason::HalfOpenFull,
        }
    }
}
