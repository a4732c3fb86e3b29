use std::sync::Arc;

use tower::Layer;

use super::{Bulkhead, BulkheadConfig, BulkheadHandle};
use crate::{config::ConfigError, name::Name};

/// Applies a [`Bulkhead`] to services; every service made by one layer shares its permits.
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
///
/// let layer = BulkheadLayer::new("users", BulkheadConfig::default()).unwrap();
/// assert_eq!(layer.handle().name(), "users");
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    handle: BulkheadHandle,
}

impl BulkheadLayer {
    /// Validates `config` and builds the shared semaphore. Like a breaker's, the name is kept
    /// once per process for its lifetime (rejection errors carry it without a reference count).
    pub fn new(name: impl Into<Arc<str>>, config: BulkheadConfig) -> Result<Self, ConfigError> {
        Self::named(Name::kept(&name.into()), config)
    }

    /// Like [`new`](Self::new), with a name of either kind (a keyed entry's is freed with it).
    pub(crate) fn named(name: Name, config: BulkheadConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            handle: BulkheadHandle::new(name, config)?,
        })
    }

    /// A handle on the shared permits: snapshots, and permits for callers outside tower.
    pub fn handle(&self) -> BulkheadHandle {
        self.handle.clone()
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.handle.clone())
    }
}
