//! The layer: one config, one stack per key.

use std::{
    fmt,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tower::Layer;

use super::{
    Keyed, KeyedConfig,
    registry::{Registry, Touch},
};
use crate::{
    classify::ErrorsAreFailures,
    config::ConfigError,
    retry::Cloned,
    stack::{ResilienceLayer, StackConfig, StackSnapshot},
};

/// Per key, the stack [`StackConfig`] describes, in a bounded [`Registry`]: what a
/// [`KeyedLayer`] and the reqwest middleware's per-host breakers share.
pub(crate) struct KeyedStacks<Key, Classifier, RetryAfterHook, CloneRequestHook> {
    name: Arc<str>,
    /// What new keys are built with; replaced by [`reconfigure`](Self::reconfigure). Locked
    /// after the registry when both are (a key is made under the registry's lock).
    config: Mutex<StackConfig>,
    /// Serialises reconfigurations, so the last one applied is the one every key has.
    reconfiguring: Mutex<()>,
    classifier: Classifier,
    retry_after: RetryAfterHook,
    clone_request: CloneRequestHook,
    registry: Registry<Key, ResilienceLayer<Classifier, RetryAfterHook, CloneRequestHook>>,
}

impl<C, A, R> Touch for ResilienceLayer<C, A, R> {
    fn touch_metrics(&self) {
        ResilienceLayer::touch_metrics(self);
    }
}

impl<K> KeyedStacks<K, ErrorsAreFailures, (), Cloned>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// Validates both configs.
    pub(crate) fn new(
        name: Arc<str>,
        config: StackConfig,
        keyed: KeyedConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        keyed.validate().map_err(|e| e.within("keyed"))?;
        Ok(Self {
            name,
            config: Mutex::new(config),
            reconfiguring: Mutex::new(()),
            classifier: ErrorsAreFailures,
            retry_after: (),
            clone_request: Cloned,
            registry: Registry::new(keyed),
        })
    }
}

impl<K, C, A, R> KeyedStacks<K, C, A, R>
where
    K: Hash + Eq + Clone + fmt::Display,
    C: Clone,
    A: Clone,
    R: Clone,
{
    /// The same stacks with other hooks, and no keys yet.
    pub(crate) fn rehooked<C2, A2, R2>(
        &self,
        classifier: C2,
        retry_after: A2,
        clone_request: R2,
    ) -> KeyedStacks<K, C2, A2, R2> {
        KeyedStacks {
            name: self.name.clone(),
            config: Mutex::new(self.config()),
            reconfiguring: Mutex::new(()),
            classifier,
            retry_after,
            clone_request,
            registry: Registry::new(self.registry.config()),
        }
    }

    /// The config new keys get: the one built with, or the last one reconfigured to.
    pub(crate) fn config(&self) -> StackConfig {
        lock(&self.config).clone()
    }

    /// Replaces the config of every key's stack, and of keys made from now on, keeping each
    /// stack's state; checked as [`ResilienceLayer::reconfigure`] checks (nothing applied if
    /// refused).
    pub(crate) fn reconfigure(&self, config: &StackConfig) -> Result<(), ConfigError> {
        let _one_at_a_time = lock(&self.reconfiguring);
        config.validate()?;
        crate::stack::check_live_change(&self.config(), config)?;
        // New keys take the new config first; then every key already held (one made with the
        // old config is in the registry by the time its lock is ours) is moved to it.
        *lock(&self.config) = config.clone();
        self.registry
            .map(|_, stack| stack.reconfigure(config.clone()))
            .into_iter()
            .collect()
    }

    pub(crate) fn hooks(&self) -> (&C, &A, &R) {
        (&self.classifier, &self.retry_after, &self.clone_request)
    }

    /// The stack for a new key, named `<name>@<key>` (a name freed with the entry).
    fn make(&self, key: &K) -> ResilienceLayer<C, A, R> {
        let name: Arc<str> = format!("{}@{key}", self.name).into();
        ResilienceLayer::transient(&name, self.config())
            .expect("the config was validated when the keyed layer was built")
            .with_classifier(self.classifier.clone())
            .with_retry_after(self.retry_after.clone())
            .with_clone_request(self.clone_request.clone())
    }

    /// Runs `f` on the stack of `key`, made if the key is new.
    pub(crate) fn with<T>(&self, key: &K, f: impl FnOnce(&ResilienceLayer<C, A, R>) -> T) -> T {
        self.registry.with(key, |k| self.make(k), f)
    }

    /// The stack of `key`, kept from now on.
    pub(crate) fn pin(&self, key: K) -> ResilienceLayer<C, A, R> {
        self.registry.pin(key, |k| self.make(k), Clone::clone)
    }

    pub(crate) fn registry(&self) -> &Registry<K, ResilienceLayer<C, A, R>> {
        &self.registry
    }

    /// Every key's stack, sorted by key name.
    pub(crate) fn entries(&self) -> Vec<(K, ResilienceLayer<C, A, R>)> {
        let mut out = self.registry.map(|k, v| (k.clone(), v.clone()));
        out.sort_by_cached_key(|(k, _)| k.to_string());
        out
    }

    /// Every key's snapshots in one, sorted by name.
    pub(crate) fn snapshot(&self) -> StackSnapshot {
        let mut all = StackSnapshot::default();
        for s in self.registry.map(|_, v| v.snapshot()) {
            all.append(s);
        }
        all.sort_by_name();
        all
    }
}

impl<K, C, A, R> fmt::Debug for KeyedStacks<K, C, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStacks")
            .field("name", &self.name)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// One stack per key of the request, from one config, in a bounded registry; see the
/// [module docs](super).
///
/// `KeyFn` is a function of the request that returns its key (`Fn(&Req) -> Key`, `Key` being
/// `Hash + Eq + Clone + Display`: the key names its entry, `<name>@<key>`). The other type
/// parameters are the stack's hooks, as on [`ResilienceLayer`]: the classifier the breaker
/// and retry share, the retry's `Retry-After` reader, which requests may be sent again.
///
/// ```
/// use resilience_layers::{keyed::{KeyedConfig, KeyedLayer}, stack::StackConfig};
///
/// let config: StackConfig = toml::from_str("[circuit_breaker]\n[bulkhead]\nmax_concurrent = 4").unwrap();
/// let layer = KeyedLayer::new("tenants", config, KeyedConfig::default(), |tenant: &(u32, String)| tenant.0)
///     .unwrap();
/// assert_eq!(layer.len(), 0); // a stack is made for each key on its first request
/// ```
pub struct KeyedLayer<
    Key,
    KeyFn,
    Classifier = ErrorsAreFailures,
    RetryAfterHook = (),
    CloneRequestHook = Cloned,
> {
    pub(super) stacks: Arc<KeyedStacks<Key, Classifier, RetryAfterHook, CloneRequestHook>>,
    pub(super) key_fn: KeyFn,
}

impl<K, F> KeyedLayer<K, F>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// Validates both configs; `name` prefixes each key's name (`<name>@<key>`), which labels
    /// that key's metrics and snapshots. `key_fn` gives each request (`Req`) its key.
    pub fn new<Req>(
        name: impl Into<Arc<str>>,
        stack: StackConfig,
        keyed: KeyedConfig,
        key_fn: F,
    ) -> Result<Self, ConfigError>
    where
        F: Fn(&Req) -> K,
    {
        Ok(Self {
            stacks: Arc::new(KeyedStacks::new(name.into(), stack, keyed)?),
            key_fn,
        })
    }
}

impl<K, F, C, A, R> KeyedLayer<K, F, C, A, R>
where
    K: Hash + Eq + Clone + fmt::Display,
    C: Clone,
    A: Clone,
    R: Clone,
{
    /// Rebuilds with other hooks; keys made before are dropped, so set hooks before use.
    fn rehook<C2, A2, R2>(
        self,
        classifier: C2,
        retry_after: A2,
        clone_request: R2,
    ) -> KeyedLayer<K, F, C2, A2, R2> {
        KeyedLayer {
            stacks: Arc::new(self.stacks.rehooked(classifier, retry_after, clone_request)),
            key_fn: self.key_fn,
        }
    }

    /// Decides what counts as a failure, for every key's breaker and retry alike (as
    /// [`ResilienceLayer::with_classifier`]). Set hooks before the layer is used: keys made
    /// before are dropped.
    pub fn with_classifier<C2: Clone>(self, classifier: C2) -> KeyedLayer<K, F, C2, A, R> {
        let (_, a, r) = self.stacks.hooks();
        let (a, r) = (a.clone(), r.clone());
        self.rehook(classifier, a, r)
    }

    /// Reads a minimum next delay from each result (HTTP `Retry-After`), as
    /// [`ResilienceLayer::with_retry_after`].
    pub fn with_retry_after<A2: Clone>(self, retry_after: A2) -> KeyedLayer<K, F, C, A2, R> {
        let (c, _, r) = self.stacks.hooks();
        let (c, r) = (c.clone(), r.clone());
        self.rehook(c, retry_after, r)
    }

    /// Decides which requests may be sent again, as [`ResilienceLayer::with_clone_request`].
    pub fn with_clone_request<R2: Clone>(self, clone_request: R2) -> KeyedLayer<K, F, C, A, R2> {
        let (c, a, _) = self.stacks.hooks();
        let (c, a) = (c.clone(), a.clone());
        self.rehook(c, a, clone_request)
    }

    /// The stack config every key gets: the one built with, or the last one
    /// [`reconfigure`](Self::reconfigure) applied.
    pub fn config(&self) -> StackConfig {
        self.stacks.config()
    }

    /// Replaces the config of every key's stack, and of keys made from now on, keeping each
    /// stack's state (breaker windows, permits in use, retry budget); the same checks and
    /// field-path errors as [`ResilienceLayer::reconfigure`], nothing applied if refused.
    ///
    /// ```
    /// use resilience_layers::{keyed::{KeyedConfig, KeyedLayer}, stack::StackConfig};
    ///
    /// let config: StackConfig = toml::from_str("[bulkhead]\nmax_concurrent = 4").unwrap();
    /// let layer = KeyedLayer::new("tenants", config, KeyedConfig::default(), |t: &u32| *t).unwrap();
    /// let tenant_7 = layer.pin(7);
    /// let wider: StackConfig = toml::from_str("[bulkhead]\nmax_concurrent = 8").unwrap();
    /// layer.reconfigure(&wider).unwrap();
    /// assert_eq!(tenant_7.bulkhead().unwrap().snapshot().max_concurrent, 8);
    /// assert_eq!(layer.pin(8).bulkhead().unwrap().snapshot().max_concurrent, 8);
    /// let zero: StackConfig = toml::from_str("[bulkhead]\nmax_concurrent = 0").unwrap();
    /// assert_eq!(layer.reconfigure(&zero).unwrap_err().field(), "bulkhead.max_concurrent");
    /// assert_eq!(layer.config(), wider);
    /// ```
    pub fn reconfigure(&self, config: &StackConfig) -> Result<(), ConfigError> {
        self.stacks.reconfigure(config)
    }

    /// Makes the stack of `key` now and keeps it (never evicted, not counted against
    /// `max_keys`), so health checks and snapshots list it before its first request; returns
    /// it, for its handles.
    pub fn pin(&self, key: K) -> ResilienceLayer<C, A, R> {
        self.stacks.pin(key)
    }

    /// The stack of `key`, if it is held now.
    pub fn get(&self, key: &K) -> Option<ResilienceLayer<C, A, R>> {
        self.stacks.registry().get(key)
    }

    /// Every key held now, with its stack, sorted by key.
    pub fn entries(&self) -> Vec<(K, ResilienceLayer<C, A, R>)> {
        self.stacks.entries()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.stacks.registry().len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evicts every key unused for the configured `idle` now (lookups do it on their own
    /// when a key may have become idle; call this from a periodic task when traffic may stop
    /// altogether); returns how many went.
    pub fn evict_idle(&self) -> usize {
        self.stacks.registry().sweep()
    }

    /// Drops `key`'s stack now, pinned or not; true if it was held.
    pub fn remove(&self, key: &K) -> bool {
        self.stacks.registry().remove(key)
    }

    /// Every key's snapshots in one (`<name>@<key>` each), for `GET /resilience`.
    pub fn snapshot(&self) -> StackSnapshot {
        self.stacks.snapshot()
    }
}

impl<K, F: Clone, C, A, R> Clone for KeyedLayer<K, F, C, A, R> {
    fn clone(&self) -> Self {
        Self {
            stacks: self.stacks.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, F, C, A, R> fmt::Debug for KeyedLayer<K, F, C, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLayer")
            .field("stacks", &self.stacks)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone, C, A, R> Layer<S> for KeyedLayer<K, F, C, A, R> {
    type Service = Keyed<S, K, F, C, A, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Keyed::new(inner, self.stacks.clone(), self.key_fn.clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
