//! The bulkhead's response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use metrics::Gauge;
use tokio::sync::OwnedSemaphorePermit;

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
        // Counted up in `call`, down when the permit is released.
        in_use: Option<Gauge>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let KindProj::Called { permit, .. } = this.kind.project() {
                release(permit, this.in_use);
            }
        }
    }
}

/// Gives the permit back and counts the call out, once.
fn release(permit: &mut Option<OwnedSemaphorePermit>, in_use: &mut Option<Gauge>) {
    if permit.take().is_some()
        && let Some(gauge) = in_use.take()
    {
        gauge.decrement(1.0);
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<OwnedSemaphorePermit>,
        },
        Rejected {
            error: Option<BulkheadFull>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn called(future: F, permit: OwnedSemaphorePermit, in_use: Gauge) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
            in_use: Some(in_use),
        }
    }

    pub(super) fn rejected(error: BulkheadFull) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
            in_use: None,
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
                release(permit, this.in_use);
                Poll::Ready(output.map_err(Into::into))
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error.into()))
            }
        }
    }
}
