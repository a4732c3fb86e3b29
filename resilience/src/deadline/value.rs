//! The deadline value: an instant on tokio's clock.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::{
    WithDeadline, current_deadline,
    scope::{Lazy, with_future},
};

/// The instant by which a whole call, retries included, must be done.
///
/// [`DeadlineLayer`](super::DeadlineLayer) makes its deadline visible to everything it wraps
/// through [`current_deadline`]; retry uses it to stop before the time is up, and the HTTP
/// client sends it downstream.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::deadline::Deadline;
///
/// let deadline = Deadline::after(Duration::from_secs(2));
/// assert!(deadline.remaining() <= Duration::from_secs(2));
/// assert!(!deadline.is_expired());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline `budget` from now (saturating at the far future).
    pub fn after(budget: Duration) -> Self {
        Self::after_from(Instant::now(), budget)
    }

    pub(crate) fn after_from(now: Instant, budget: Duration) -> Self {
        let at = now
            .checked_add(budget)
            // About thirty years: far enough to mean "never", near enough not to overflow.
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        Self { at }
    }

    /// A deadline at `instant`.
    #[inline]
    pub fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// When the time is up.
    #[inline]
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.at <= Instant::now()
    }

    /// The earlier of this deadline and `other`: a nested deadline can only shorten the time.
    #[must_use]
    pub fn min_with(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(other) if other < self => other,
            _ => self,
        }
    }

    /// Runs `future` with this deadline (or an earlier one already in force) visible to
    /// [`current_deadline`] inside it; for code outside tower, such as a server-side layer
    /// that read the caller's deadline from a header.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilience_layers::deadline::{Deadline, current_deadline};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let deadline = Deadline::after(Duration::from_secs(1));
    /// let seen = deadline.scope(async { current_deadline() }).await;
    /// assert_eq!(seen, Some(deadline));
    /// assert_eq!(current_deadline(), None);
    /// # }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> WithDeadline<F> {
        with_future(future, self)
    }

    /// Runs `f` with this deadline (or an earlier one already in force) visible to
    /// [`current_deadline`].
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let deadline = self.min_with(current_deadline());
        Lazy::Fixed(deadline).enter(f).0
    }
}
