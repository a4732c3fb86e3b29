//! The future of [`Cache`](super::Cache).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use crate::BoxError;

/// The future [`Cache`](super::Cache) returns.
///
/// A cache answer needs an asynchronous store lookup, and a miss may wait for a concurrent
/// call: both are one boxed future. The cache sits at the stack's outside, once per logical
/// request, so this one allocation per request is not multiplied by retries.
pub struct ResponseFuture<Response> {
    pub(super) inner: Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>,
}

impl<Response> std::fmt::Debug for ResponseFuture<Response> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<Response> Future for ResponseFuture<Response> {
    type Output = Result<Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
