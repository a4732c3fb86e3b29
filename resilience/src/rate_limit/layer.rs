use std::sync::Arc;

use tower::Layer;

use super::{RateLimit, RateLimitConfig, RateLimitHandle};
use crate::config::ConfigError;

/// Applies a [`RateLimit`] to services; every service made by one layer shares its limiter.
///
/// ```
/// use resilience_layers::rate_limit::{RateLimitConfig, RateLimitLayer};
///
/// let layer = RateLimitLayer::new("search", RateLimitConfig::default()).unwrap();
/// assert_eq!(layer.handle().name(), "search");
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    handle: RateLimitHandle,
}

impl RateLimitLayer {
    /// Validates `config` and builds the shared limiter (a full bucket). Like a bulkhead's,
    /// the name is kept once per process for its lifetime.
    pub fn new(name: impl Into<Arc<str>>, config: RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            handle: RateLimitHandle::new(name, config)?,
        })
    }

    /// A handle on the shared limiter: snapshots, and permits for callers outside tower.
    pub fn handle(&self) -> RateLimitHandle {
        self.handle.clone()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.handle.clone())
    }
}
