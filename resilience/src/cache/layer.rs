use std::sync::Arc;

use tower::Layer;

use super::{Cache, CacheConfig, CacheHandle, DefaultPolicy};
use crate::{ErrorsAreFailures, config::ConfigError};

/// Applies a [`Cache`]: every service made by one layer shares its store.
///
/// `key` picks the cache key of a request, `None` for a request that must not be cached.
///
/// ```
/// use resilience_layers::cache::{CacheConfig, CacheLayer};
///
/// let layer = CacheLayer::<u32, String, _>::new("users", CacheConfig::default(), |id: &u32| Some(*id)).unwrap();
/// assert_eq!(layer.handle().name(), "users");
/// ```
pub struct CacheLayer<Key, Response, KeyFn, Policy = DefaultPolicy, Classifier = ErrorsAreFailures>
{
    handle: CacheHandle<Key, Response>,
    key: KeyFn,
    policy: Policy,
    classifier: Classifier,
}

impl<Key, Response, KeyFn> CacheLayer<Key, Response, KeyFn>
where
    Key: std::hash::Hash + Eq + Send + Sync + 'static,
    Response: Send + Sync + 'static,
{
    /// Validates `config` and builds the shared store.
    pub fn new(
        name: impl Into<Arc<str>>,
        config: CacheConfig,
        key: KeyFn,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            handle: CacheHandle::new(name, config)?,
            key,
            policy: DefaultPolicy,
            classifier: ErrorsAreFailures,
        })
    }
}

impl<Key, Response, KeyFn, Policy, Classifier>
    CacheLayer<Key, Response, KeyFn, Policy, Classifier>
{
    /// Weighs, stores and marks responses with `policy` ([`CachePolicy`](super::CachePolicy)).
    pub fn with_policy<P2>(self, policy: P2) -> CacheLayer<Key, Response, KeyFn, P2, Classifier> {
        CacheLayer {
            handle: self.handle,
            key: self.key,
            policy,
            classifier: self.classifier,
        }
    }

    /// Decides which results are failures (served stale when possible) and which successes
    /// (stored); ignored results are neither. Errors arrive as [`BoxError`](crate::BoxError).
    pub fn with_classifier<C2>(
        self,
        classifier: C2,
    ) -> CacheLayer<Key, Response, KeyFn, Policy, C2> {
        CacheLayer {
            handle: self.handle,
            key: self.key,
            policy: self.policy,
            classifier,
        }
    }

    /// A handle on the shared store: snapshots, invalidation.
    pub fn handle(&self) -> CacheHandle<Key, Response> {
        self.handle.clone()
    }
}

impl<Key, Response, KeyFn: Clone, Policy: Clone, Classifier: Clone> Clone
    for CacheLayer<Key, Response, KeyFn, Policy, Classifier>
{
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<Key, Response, KeyFn, Policy, Classifier> std::fmt::Debug
    for CacheLayer<Key, Response, KeyFn, Policy, Classifier>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<S, Key, Response, KeyFn: Clone, Policy: Clone, Classifier: Clone> Layer<S>
    for CacheLayer<Key, Response, KeyFn, Policy, Classifier>
{
    type Service = Cache<S, Key, Response, KeyFn, Policy, Classifier>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache::new(
            inner,
            self.handle.clone(),
            self.key.clone(),
            self.policy.clone(),
            self.classifier.clone(),
        )
    }
}
