use std::{sync::Arc, time::Duration};

use tower::Layer;

use super::AttemptTimeout;
use crate::{
    config::{ConfigError, check_positive},
    deadline::{TimeoutHandle, TimeoutKind},
};

/// Applies an [`AttemptTimeout`] to services.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::timeout::AttemptTimeoutLayer;
///
/// let layer = AttemptTimeoutLayer::new("users", Duration::from_millis(500)).unwrap();
/// assert_eq!(layer.timeout(), Duration::from_millis(500));
/// assert!(AttemptTimeoutLayer::new("users", Duration::ZERO).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct AttemptTimeoutLayer {
    handle: TimeoutHandle,
}

impl AttemptTimeoutLayer {
    /// Each attempt gets `timeout`; `name` labels the `resilience_timeouts_total` series and
    /// the snapshot. Zero is a [`ConfigError`] on the field `timeout`.
    pub fn new(name: impl Into<Arc<str>>, timeout: Duration) -> Result<Self, ConfigError> {
        check_positive("timeout", timeout)?;
        Ok(Self {
            handle: TimeoutHandle::new(name.into(), TimeoutKind::Attempt, timeout),
        })
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.handle.limit()
    }

    /// Its name, limit and count of attempts that timed out.
    pub fn handle(&self) -> TimeoutHandle {
        self.handle.clone()
    }

    /// Marks its series as updated; see [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        self.handle.counter().increment(0);
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout::with_counter(inner, self.timeout(), self.handle.counter().clone())
    }
}
