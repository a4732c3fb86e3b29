//! The wait between attempts.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The backoff wait [`RetryPolicy`](super::RetryPolicy) hands to tower before a retry; a
    /// zero delay completes without touching the timer.
    #[derive(Debug)]
    pub struct Delay {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Delay {
    pub(super) fn new(delay: Duration) -> Self {
        Self {
            sleep: (!delay.is_zero()).then(|| tokio::time::sleep(delay)),
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}
