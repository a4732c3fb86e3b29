//! What a hedge tells its subscribers.

use tokio::time::Instant;

/// One thing a hedge did, as its [`subscribe`](super::HedgeHandle::subscribe) subscriptions
/// see it.
///
/// ```
/// use resilience_layers::hedge::{HedgeEvent};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let event = HedgeEvent::Won { attempt: 2, at: Instant::now() };
/// assert!(event.at() <= Instant::now());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HedgeEvent {
    /// A hedge was sent while the earlier attempts are still in flight.
    Sent {
        /// The attempt's number (2 for the first hedge).
        attempt: u32,
        /// When.
        at: Instant,
    },
    /// A hedge answered first with a good answer; the other attempts were dropped.
    Won {
        /// The winning attempt's number.
        attempt: u32,
        /// When.
        at: Instant,
    },
    /// A hedge was not sent because the budget is spent.
    BudgetExhausted {
        /// When.
        at: Instant,
    },
}

impl HedgeEvent {
    /// When it happened, on tokio's clock.
    pub fn at(&self) -> Instant {
        match self {
            HedgeEvent::Sent { at, .. }
            | HedgeEvent::Won { at, .. }
            | HedgeEvent::BudgetExhausted { at } => *at,
        }
    }
}
