//! The rate limiter's response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

use crate::error::{BoxError, RateLimited};

pin_project! {
    /// The [`RateLimit`](super::RateLimit)'s future: the inner call, or an immediate
    /// rejection.
    ///
    /// ```
    /// use resilience_layers::rate_limit::{RateLimit, RateLimitConfig, RateLimitLayer, future::ResponseFuture};
    /// use tower::{Service, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let handle = RateLimitLayer::new("f", RateLimitConfig::default()).unwrap().handle();
    /// let mut svc = RateLimit::new(service_fn(|()| async { Ok::<_, std::io::Error>(1) }), handle);
    /// let future: ResponseFuture<_> = svc.ready().await.unwrap().call(());
    /// assert_eq!(future.await.unwrap(), 1);
    /// # }
    /// ```
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
        },
        Rejected {
            error: Option<RateLimited>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn called(future: F) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(super) fn rejected(error: RateLimited) -> Self {
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future.poll(cx).map_err(Into::into),
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error.into()))
            }
        }
    }
}
