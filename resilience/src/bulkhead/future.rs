//! The bulkhead's response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::BulkheadPermit;
use crate::error::{BoxError, BulkheadFull};

pin_project! {
    /// The [`Bulkhead`](super::Bulkhead)'s future: the inner call holding its permit, or an
    /// immediate rejection.
    ///
    /// The permit is released as soon as the inner future completes, or when this is dropped.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // Released when the call completes, or when this future is dropped.
            permit: Option<BulkheadPermit>,
        },
        Rejected {
            error: Option<BulkheadFull>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn called(future: F, permit: BulkheadPermit) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(super) fn rejected(error: BulkheadFull) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future, permit } => {
                let output = ready!(future.poll(cx));
                drop(permit.take());
                Poll::Ready(output.map_err(Into::into))
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error.into()))
            }
        }
    }
}
