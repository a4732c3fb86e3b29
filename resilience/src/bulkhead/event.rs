//! What a bulkhead tells its subscribers.

use tokio::time::Instant;

/// One thing a bulkhead did, as its [`subscribe`](super::BulkheadHandle::subscribe)
/// subscriptions see it.
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadEvent, BulkheadLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = BulkheadConfig { max_concurrent: 1, ..Default::default() };
/// let handle = BulkheadLayer::new("db", config).unwrap().handle();
/// let mut events = handle.subscribe();
/// let _held = handle.acquire().await.unwrap();
/// assert!(handle.acquire().await.is_err());
/// assert!(matches!(events.recv().await.unwrap(), BulkheadEvent::Rejected { max_concurrent: 1, .. }));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call found every permit taken and was turned away (at once, or after `max_wait`).
    Rejected {
        /// The limit in force.
        max_concurrent: usize,
        /// When.
        at: Instant,
    },
}

impl BulkheadEvent {
    /// When it happened, on tokio's clock.
    pub fn at(&self) -> Instant {
        match self {
            BulkheadEvent::Rejected { at, .. } => *at,
        }
    }
}
