use std::{sync::Arc, time::Duration};

use metrics::Counter;
use tower::Layer;

use super::AttemptTimeout;
use crate::{
    config::{ConfigError, check_positive},
    deadline::timeouts_counter,
};

/// Applies an [`AttemptTimeout`] to services.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::timeout::AttemptTimeoutLayer;
///
/// let layer = AttemptTimeoutLayer::new(Duration::from_millis(500)).unwrap().with_name("users");
/// assert_eq!(layer.timeout(), Duration::from_millis(500));
/// assert!(AttemptTimeoutLayer::new(Duration::ZERO).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct AttemptTimeoutLayer {
    timeout: Duration,
    counter: Counter,
}

impl AttemptTimeoutLayer {
    /// Each attempt gets `timeout`; zero is a [`ConfigError`] on the field `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        check_positive("timeout", timeout)?;
        Ok(Self {
            timeout,
            counter: timeouts_counter("default", "attempt"),
        })
    }

    /// Labels the `resilience_timeouts_total` metric with `name` (default `"default"`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.counter = timeouts_counter(&name.into(), "attempt");
        self
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Marks its series as updated; see [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        self.counter.increment(0);
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout::with_counter(inner, self.timeout, self.counter.clone())
    }
}
