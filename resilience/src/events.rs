//! Subscriptions: react to what a layer decides instead of polling its snapshot.
//!
//! Every handle has a `subscribe()` ([`CircuitBreakerHandle::subscribe`],
//! [`BulkheadHandle::subscribe`], [`RetryHandle::subscribe`]) that returns a
//! [`Subscription`]: a receiver of that layer's events (state transitions, rejections,
//! retries), in the order they happened, each stamped with tokio's clock.
//!
//! # Cost
//!
//! Nothing is built for nobody. While no subscription is alive, emitting an event is one
//! relaxed load of a counter that only subscribing and unsubscribing write, and a branch; no
//! event value is made, no clock is read, nothing is allocated. The channel itself (tokio's
//! [`broadcast`](tokio::sync::broadcast::channel), [`CAPACITY`] events) is allocated by the first
//! `subscribe()`, once per layer. Events are only ever emitted on decisions that are rare or
//! already off the fast path (a transition, a rejection, a retry), never on a call that simply
//! passes.
//!
//! # Delivery
//!
//! Each subscription sees every event emitted after it was made. Sending never waits for a
//! subscriber: one that falls more than [`CAPACITY`] events behind loses the oldest and is
//! told how many with [`RecvError::Lagged`] on its next `recv`. When the layer is dropped
//! (every service and handle of it), `recv` returns [`RecvError::Closed`].
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::Outcome;
//! use resilience_layers::circuit_breaker::{
//!     CircuitBreakerConfig, CircuitBreakerLayer, CircuitEvent, CircuitState,
//! };
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = CircuitBreakerConfig { minimum_calls: 2, ..Default::default() };
//! let handle = CircuitBreakerLayer::new("users", config).unwrap().handle();
//! let mut events = handle.subscribe();
//! for _ in 0..2 {
//!     handle.try_acquire().unwrap().record(Outcome::Failure);
//! }
//! let _ = handle.try_acquire(); // rejected: the circuit is open
//!
//! let event = events.recv().await.unwrap();
//! assert!(matches!(
//!     event,
//!     CircuitEvent::StateChanged { from: CircuitState::Closed, to: CircuitState::Open, .. }
//! ));
//! assert!(matches!(events.recv().await.unwrap(), CircuitEvent::Rejected { .. }));
//! # }
//! ```
//!
//! [`CircuitBreakerHandle::subscribe`]: crate::circuit_breaker::CircuitBreakerHandle::subscribe
//! [`BulkheadHandle::subscribe`]: crate::bulkhead::BulkheadHandle::subscribe
//! [`RetryHandle::subscribe`]: crate::retry::RetryHandle::subscribe

use std::{
    fmt,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
};

use tokio::sync::broadcast;

pub use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// How many events a subscription may fall behind before it loses the oldest.
pub const CAPACITY: usize = 256;

/// The events of one layer, to every live [`Subscription`].
pub(crate) struct Channel<E> {
    /// Live subscriptions: the only thing an emitter reads while nobody listens.
    listeners: AtomicUsize,
    /// Made by the first subscription.
    sender: OnceLock<broadcast::Sender<E>>,
}

impl<E> Default for Channel<E> {
    fn default() -> Self {
        Self {
            listeners: AtomicUsize::new(0),
            sender: OnceLock::new(),
        }
    }
}

impl<E> fmt::Debug for Channel<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("listeners", &self.listeners.load(Relaxed))
            .finish()
    }
}

impl<E: Clone> Channel<E> {
    /// Sends the event `make` builds, if anyone listens; `make` runs only then.
    #[inline]
    pub(crate) fn emit(&self, make: impl FnOnce() -> E) {
        if self.listeners.load(Relaxed) != 0 {
            self.send(make());
        }
    }

    #[cold]
    #[inline(never)]
    fn send(&self, event: E) {
        if let Some(sender) = self.sender.get() {
            // An error only means the last subscription went away meanwhile.
            let _ = sender.send(event);
        }
    }

    /// A new subscription to this channel (held by `owner`, so a subscription does not keep
    /// the layer alive: it sees `Closed` once the layer is gone).
    pub(crate) fn subscribe(self: &Arc<Self>) -> Subscription<E> {
        let sender = self.sender.get_or_init(|| broadcast::channel(CAPACITY).0);
        let receiver = sender.subscribe();
        // After the receiver exists, so an emitter that sees the count finds it.
        self.listeners.fetch_add(1, Relaxed);
        Subscription {
            receiver,
            channel: Arc::downgrade(self),
        }
    }
}

/// A receiver of one layer's events, from `subscribe()` on its handle; see the
/// [module docs](self).
///
/// Dropping it unsubscribes: once no subscription is left, the layer stops building events.
pub struct Subscription<E> {
    receiver: broadcast::Receiver<E>,
    channel: Weak<Channel<E>>,
}

impl<E: Clone> Subscription<E> {
    /// The next event, waiting for one; [`RecvError::Lagged`] when this subscription fell
    /// more than [`CAPACITY`] events behind (the next call returns the oldest kept), and
    /// [`RecvError::Closed`] when the layer is gone and every event was read.
    pub async fn recv(&mut self) -> Result<E, RecvError> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Result<E, TryRecvError> {
        self.receiver.try_recv()
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        if let Some(channel) = self.channel.upgrade() {
            channel.listeners.fetch_sub(1, Relaxed);
        }
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pending", &self.receiver.len())
            .finish()
    }
}

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_is_built_while_nobody_listens() {
        let channel = Arc::new(Channel::<u32>::default());
        channel.emit(|| unreachable!("no subscriber: the event must not be built"));
        assert!(channel.sender.get().is_none(), "no channel allocated");

        let mut sub = channel.subscribe();
        channel.emit(|| 1);
        channel.emit(|| 2);
        assert_eq!(sub.recv().await.unwrap(), 1);
        assert_eq!(sub.try_recv().unwrap(), 2);
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));

        drop(sub);
        channel.emit(|| unreachable!("the last subscriber left"));
    }

    #[tokio::test]
    async fn a_dropped_layer_closes_its_subscriptions() {
        let channel = Arc::new(Channel::<u32>::default());
        let mut sub = channel.subscribe();
        channel.emit(|| 7);
        drop(channel);
        assert_eq!(sub.recv().await.unwrap(), 7, "what was sent is still read");
        assert!(matches!(sub.recv().await, Err(RecvError::Closed)));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let channel = Arc::new(Channel::<usize>::default());
        let mut sub = channel.subscribe();
        for i in 0..CAPACITY + 3 {
            channel.emit(|| i);
        }
        assert!(matches!(sub.recv().await, Err(RecvError::Lagged(3))));
        assert_eq!(sub.recv().await.unwrap(), 3);
    }
}
