use std::{
    hash::Hash,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tower::{Service, ServiceExt};

use super::{
    CacheHandle, CachePolicy, Freshness, Served,
    future::ResponseFuture,
    handle::{Count, InFlight, Published, Shared},
    state::Entry,
};
use crate::{BoxError, Classify, Outcome, error};

/// A response cache with stale-if-error and request coalescing; see the
/// [module docs](super).
///
/// `poll_ready` is always ready: each call that reaches the inner service goes through a
/// clone of it (`oneshot`), so a request answered from the cache never holds the inner
/// service's readiness (a bulkhead permit, a rate limiter's token).
pub struct Cache<S, Key, Response, KeyFn, Policy, Classifier> {
    inner: S,
    handle: CacheHandle<Key, Response>,
    key: KeyFn,
    policy: Policy,
    classifier: Classifier,
}

impl<S, Key, Response, KeyFn, Policy, Classifier>
    Cache<S, Key, Response, KeyFn, Policy, Classifier>
{
    /// Wraps `inner` with the cache behind `handle`.
    pub fn new(
        inner: S,
        handle: CacheHandle<Key, Response>,
        key: KeyFn,
        policy: Policy,
        classifier: Classifier,
    ) -> Self {
        Self {
            inner,
            handle,
            key,
            policy,
            classifier,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, Key, Response, KeyFn: Clone, Policy: Clone, Classifier: Clone> Clone
    for Cache<S, Key, Response, KeyFn, Policy, Classifier>
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            handle: self.handle.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, Key, Response, KeyFn, Policy, Classifier> std::fmt::Debug
    for Cache<S, Key, Response, KeyFn, Policy, Classifier>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<S, Req, Key, KeyFn, Policy, Classifier> Service<Req>
    for Cache<S, Key, S::Response, KeyFn, Policy, Classifier>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Response: Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    Req: Send + 'static,
    Key: Hash + Eq + Clone + Send + Sync + 'static,
    KeyFn: Fn(&Req) -> Option<Key>,
    Policy: CachePolicy<S::Response> + Clone + Send + Sync + 'static,
    Classifier: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let inner = self.inner.clone();
        let key = (self.key)(&req);
        let Some(key) = key else {
            return ResponseFuture {
                inner: Box::pin(async move { inner.oneshot(req).await.map_err(Into::into) }),
            };
        };
        let call = Lookup {
            shared: self.handle.shared.clone(),
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
        };
        ResponseFuture {
            inner: Box::pin(call.run(inner, key, req)),
        }
    }
}

/// What one request's future needs of its cache.
struct Lookup<Key, Response, Policy, Classifier> {
    shared: Arc<Shared<Key, Response>>,
    policy: Policy,
    classifier: Classifier,
}

/// The in-flight registration of the request that makes the call for its key. Dropping it
/// (the call done, or the request given up) ends the registration, so waiters never wait
/// for a call nobody makes.
struct Leader<'a, Key: Hash + Eq, Response> {
    shared: &'a Shared<Key, Response>,
    key: Key,
    tx: watch::Sender<Option<Published<Response>>>,
}

impl<Key: Hash + Eq, Response> Drop for Leader<'_, Key, Response> {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.remove(&self.key);
    }
}

enum Role<'a, Key: Hash + Eq, Response> {
    Leader(Leader<'a, Key, Response>),
    Waiter(InFlight<Response>),
}

impl<Key, Response, Policy, Classifier> Lookup<Key, Response, Policy, Classifier>
where
    Key: Hash + Eq + Clone + Send + Sync + 'static,
    Response: Clone + Send + Sync + 'static,
    Policy: CachePolicy<Response>,
    Classifier: Classify<Response, BoxError>,
{
    async fn run<S, Req>(self, inner: S, key: Key, req: Req) -> Result<Response, BoxError>
    where
        S: Service<Req, Response = Response>,
        S::Error: Into<BoxError>,
    {
        let shared = &*self.shared;
        if let Some(answer) = self.fresh(&key).await {
            return Ok(answer);
        }
        let leader = match self.join(&key) {
            Role::Leader(leader) => {
                // A call for this key may have finished between the lookup and the join.
                if let Some(answer) = self.fresh(&key).await {
                    leader
                        .tx
                        .send_replace(Some(Published::Value(answer.clone())));
                    return Ok(answer);
                }
                Some(leader)
            }
            Role::Waiter(mut rx) => {
                if let Ok(published) = rx.wait_for(Option::is_some).await {
                    if let Some(Published::Value(response)) = published.clone() {
                        let mut response = response;
                        shared.count(Count::Coalesced);
                        let status = super::CacheStatus {
                            served: Served::Coalesced,
                            age: Duration::ZERO,
                            lifetime: shared.config.ttl,
                        };
                        self.policy.mark(&mut response, &status);
                        return Ok(response);
                    }
                }
                // The leader had nothing to share: this request makes its own call.
                None
            }
        };
        shared.count(Count::Miss);
        let result = inner.oneshot(req).await.map_err(Into::into);
        let outcome = self.classifier.classify(result.as_ref());
        let failed = outcome.is_failure() || result.as_ref().is_err_and(is_refusal);
        let published = match (&result, outcome) {
            (Ok(response), Outcome::Success) => self.store(&key, response).await,
            _ => Published::Nothing,
        };
        if let Some(leader) = &leader {
            leader.tx.send_replace(Some(published));
        }
        drop(leader);
        if failed {
            if let Some(answer) = self.stale(&key).await {
                return Ok(answer);
            }
        }
        result
    }

    fn join(&self, key: &Key) -> Role<'_, Key, Response> {
        let mut map = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(key) {
            return Role::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Role::Leader(Leader {
            shared: &self.shared,
            key: key.clone(),
            tx,
        })
    }

    async fn fresh(&self, key: &Key) -> Option<Response> {
        let entry = self.shared.store.get(key).await?;
        let now = Instant::now();
        entry
            .is_fresh(now)
            .then(|| self.answer(&entry, Served::Hit, now))
    }

    async fn stale(&self, key: &Key) -> Option<Response> {
        let entry = self.shared.store.get(key).await?;
        let now = Instant::now();
        if !entry.is_servable_stale(now) {
            return None;
        }
        let answer = self.answer(&entry, Served::Stale, now);
        tracing::debug!(
            target: "resilience",
            cache = %self.shared.name,
            age_ms = now.saturating_duration_since(entry.stored).as_millis() as u64,
            "call failed; stale answer served"
        );
        Some(answer)
    }

    fn answer(&self, entry: &Entry<Response>, served: Served, now: Instant) -> Response {
        self.shared.count(served.into());
        let mut response = entry.response.clone();
        self.policy.mark(&mut response, &entry.status(served, now));
        response
    }

    async fn store(&self, key: &Key, response: &Response) -> Published<Response> {
        let config = &self.shared.config;
        let lifetime = match self.policy.freshness(response) {
            Freshness::NoStore => return Published::Nothing,
            Freshness::Default => config.ttl,
            Freshness::For(d) => d.min(config.ttl),
        };
        let bytes = self.policy.weigh(response);
        if bytes > config.max_bytes {
            return Published::Nothing;
        }
        let weight = u32::try_from(bytes.max(config.min_weight())).unwrap_or(u32::MAX);
        let entry = Entry {
            response: response.clone(),
            stored: Instant::now(),
            lifetime,
            stale_if_error: config.stale_if_error,
            bytes,
            weight,
        };
        self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.shared.store.insert(key.clone(), Arc::new(entry)).await;
        self.shared.update_gauges();
        if lifetime.is_zero() {
            // Kept for stale-if-error only: not an answer to share as fresh.
            return Published::Nothing;
        }
        Published::Value(response.clone())
    }
}

/// The stack's own refusals (a rejection, an attempt timeout, a deadline), anywhere in the
/// error's chain: failures to answer stale whatever the classifier says of them.
fn is_refusal(err: &BoxError) -> bool {
    let err: &(dyn std::error::Error + 'static) = &**err;
    error::is_rejection(err)
        || error::is_timeout(err)
        || error::chain(err).any(|e| e.is::<error::DeadlineExceeded>())
}
