//! The service: finds the request's key, runs the request through that key's stack.

use std::{
    fmt,
    hash::Hash,
    sync::Arc,
    task::{Context, Poll},
};

use tower::{Layer, Service, ServiceExt};

use super::{future::ResponseFuture, layer::KeyedStacks};
use crate::{error::BoxError, stack::Resilience};

/// The service a [`KeyedLayer`](super::KeyedLayer) builds.
///
/// Each call computes the request's key, finds (or makes) that key's stack, and runs the
/// request through it around a clone of the inner service. It is always ready: which stack,
/// and so which bulkhead or breaker, a request meets is known only from the request, so the
/// readiness of the key's stack and of the clone is driven inside the call's future
/// (tower's `oneshot`).
pub struct Keyed<S, Key, KeyFn, Classifier, RetryAfterHook, CloneRequestHook> {
    inner: S,
    stacks: Arc<KeyedStacks<Key, Classifier, RetryAfterHook, CloneRequestHook>>,
    key_fn: KeyFn,
}

impl<S, K, F, C, A, R> Keyed<S, K, F, C, A, R> {
    pub(super) fn new(inner: S, stacks: Arc<KeyedStacks<K, C, A, R>>, key_fn: F) -> Self {
        Self {
            inner,
            stacks,
            key_fn,
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

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F: Clone, C, A, R> Clone for Keyed<S, K, F, C, A, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            stacks: self.stacks.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<S, K, F, C, A, R> fmt::Debug for Keyed<S, K, F, C, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("stacks", &self.stacks)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, A, R, Req> Service<Req> for Keyed<S, K, F, C, A, R>
where
    S: Clone,
    K: Hash + Eq + Clone + fmt::Display,
    F: Fn(&Req) -> K,
    C: Clone,
    A: Clone,
    R: Clone,
    Resilience<S, C, A, R>: Service<Req, Error = BoxError>,
{
    type Response = <Resilience<S, C, A, R> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<Resilience<S, C, A, R>, Req>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key_fn)(&req);
        let inner = &self.inner;
        let service = self.stacks.with(&key, |stack| stack.layer(inner.clone()));
        ResponseFuture::new(service.oneshot(req))
    }
}
