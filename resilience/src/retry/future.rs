//! The wait between attempts.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Sleep;

/// The backoff wait [`RetryPolicy`](super::RetryPolicy) hands to tower before a retry; a
/// zero delay completes without touching the timer.
///
/// The timer is boxed: tower keeps this inside every call's future, and a retry that really
/// waits can afford one allocation, while the first attempt should not carry a 100-byte
/// `Sleep` around.
#[derive(Debug)]
pub struct Delay {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Delay {
    pub(super) fn new(delay: Duration) -> Self {
        Self {
            sleep: (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay))),
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}
