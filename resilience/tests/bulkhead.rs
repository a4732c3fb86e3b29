//! Bulkhead behaviour: limits, bounded waits, permit release, clones, snapshots.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use resilience_layers::{
    Error,
    bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer},
};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

/// An inner service that counts calls and whose responses take `delay`.
#[derive(Clone)]
struct Slow {
    calls: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    delay: Duration,
}

impl Slow {
    fn new(delay: Duration) -> Self {
        Self {
            calls: Arc::default(),
            polls: Arc::default(),
            delay,
        }
    }
}

impl Service<u32> for Slow {
    type Response = u32;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<u32, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(req)
        })
    }
}

fn layer(max_concurrent: usize, max_wait: Duration) -> BulkheadLayer {
    BulkheadLayer::new(
        "test",
        BulkheadConfig {
            max_concurrent,
            max_wait,
            adaptive: None,
        },
    )
    .unwrap()
}

fn is_bulkhead_full(err: resilience_layers::BoxError) -> bool {
    matches!(Error::from_boxed(err), Error::BulkheadFull(e) if e.name() == "test")
}

#[tokio::test(start_paused = true)]
async fn rejects_beyond_the_limit_without_calling_inner() {
    let layer = layer(2, Duration::ZERO);
    let inner = Slow::new(Duration::from_secs(1));
    let mut svc = layer.layer(inner.clone());

    let a = task::spawn(svc.ready().await.unwrap().call(1));
    let b = task::spawn(svc.ready().await.unwrap().call(2));
    let polls_before = inner.polls.load(Ordering::SeqCst);
    // poll_ready says ready (LoadShed style) and the call fails at once.
    let mut c = task::spawn(svc.ready().await.unwrap().call(3));
    let err = assert_ready!(c.poll()).unwrap_err();
    assert!(is_bulkhead_full(err));
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        2,
        "the rejected call never reached inner"
    );
    assert_eq!(
        inner.polls.load(Ordering::SeqCst),
        polls_before,
        "inner not polled when rejecting"
    );

    let snap = layer.handle().snapshot();
    assert_eq!((snap.in_use, snap.waiting, snap.rejected_total), (2, 0, 1));
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn permit_is_released_on_completion_and_on_drop() {
    let layer = layer(1, Duration::ZERO);
    let mut svc = layer.layer(Slow::new(Duration::from_millis(100)));
    let handle = layer.handle();

    // Completion frees the permit even while the finished future is still alive.
    let mut fut = task::spawn(svc.ready().await.unwrap().call(1));
    assert_pending!(fut.poll());
    assert_eq!(handle.snapshot().in_use, 1);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(assert_ready_ok!(fut.poll()), 1);
    assert_eq!(handle.snapshot().in_use, 0);

    // Dropping an unfinished future frees it too.
    let fut = svc.ready().await.unwrap().call(2);
    assert_eq!(handle.snapshot().in_use, 1);
    drop(fut);
    assert_eq!(handle.snapshot().in_use, 0);
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert_eq!(handle.snapshot().rejected_total, 0);
}

#[tokio::test(start_paused = true)]
async fn waits_up_to_max_wait_then_rejects() {
    let layer = layer(1, Duration::from_millis(100));
    let mut svc = layer.layer(Slow::new(Duration::from_secs(10)));
    let handle = layer.handle();
    let held = svc.ready().await.unwrap().call(1);

    let mut waiter = svc.clone();
    let mut ready = task::spawn(async move {
        waiter.ready().await.unwrap();
        waiter.call(2).await
    });
    assert_pending!(ready.poll());
    assert_eq!(handle.snapshot().waiting, 1);
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(ready.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = assert_ready!(ready.poll()).unwrap_err();
    assert!(is_bulkhead_full(err));
    let snap = handle.snapshot();
    assert_eq!((snap.in_use, snap.waiting, snap.rejected_total), (1, 0, 1));

    // The abandoned wait left the queue: the freed permit is really free.
    drop(held);
    assert_eq!(handle.snapshot().in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_a_permit_freed_within_max_wait() {
    let layer = layer(1, Duration::from_millis(100));
    let mut svc = layer.layer(Slow::new(Duration::from_millis(30)));
    let held = task::spawn(svc.ready().await.unwrap().call(1));

    let mut waiter = svc.clone();
    let mut second = task::spawn(async move {
        waiter.ready().await.unwrap();
        waiter.call(2).await
    });
    assert_pending!(second.poll());
    drop(held);
    assert!(second.is_woken());
    // Got the permit, now runs its own 30 ms.
    assert_pending!(second.poll());
    tokio::time::advance(Duration::from_millis(30)).await;
    assert_eq!(assert_ready_ok!(second.poll()), 2);
    assert_eq!(layer.handle().snapshot().rejected_total, 0);
}

#[tokio::test(start_paused = true)]
async fn clones_do_not_inherit_a_permit_or_a_rejection() {
    let layer = layer(1, Duration::ZERO);
    let mut svc = layer.layer(Slow::new(Duration::from_secs(1)));

    // `svc` holds the only permit (ready, not yet called); a clone must not share it.
    assert_ready_ok!(task::spawn(()).enter(|cx, _| svc.poll_ready(cx)));
    let mut clone = svc.clone();
    assert_ready_ok!(task::spawn(()).enter(|cx, _| clone.poll_ready(cx)));
    let err = clone.call(9).await.unwrap_err();
    assert!(
        is_bulkhead_full(err),
        "the clone had to find the bulkhead full"
    );

    // Now make `svc` carry a pending rejection: ready while the only permit is held.
    let held = svc.call(1);
    assert_ready_ok!(task::spawn(()).enter(|cx, _| svc.poll_ready(cx)));
    drop(held);
    // `svc` will reject its next call; a fresh clone will not.
    let mut fresh = svc.clone();
    assert_eq!(fresh.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert!(is_bulkhead_full(svc.call(3).await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn services_from_one_layer_share_permits() {
    let layer = layer(1, Duration::ZERO);
    let mut a = layer.layer(Slow::new(Duration::from_secs(1)));
    let mut b = Bulkhead::new(Slow::new(Duration::from_secs(1)), layer.handle());
    let held = a.ready().await.unwrap().call(1);
    assert!(is_bulkhead_full(
        b.ready().await.unwrap().call(2).await.unwrap_err()
    ));
    drop(held);
    assert!(b.ready().await.unwrap().call(3).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn handle_acquire_honours_max_wait() {
    let layer = layer(1, Duration::from_millis(50));
    let handle = layer.handle();
    let permit = handle.acquire().await.unwrap();

    let h = handle.clone();
    let mut waiting = task::spawn(async move { h.acquire().await });
    assert_pending!(waiting.poll());
    assert_eq!(handle.snapshot().waiting, 1);
    tokio::time::advance(Duration::from_millis(50)).await;
    assert!(is_bulkhead_full(assert_ready!(waiting.poll()).unwrap_err()));
    assert_eq!(handle.snapshot().waiting, 0);

    let h = handle.clone();
    let mut waiting = task::spawn(async move { h.acquire().await });
    assert_pending!(waiting.poll());
    drop(permit);
    let second = assert_ready!(waiting.poll()).unwrap();
    assert_eq!(handle.snapshot().in_use, 1);
    drop(second);
    assert_eq!(handle.snapshot().in_use, 0);
    assert_eq!(handle.snapshot().rejected_total, 1);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_as_themselves() {
    let layer = layer(1, Duration::ZERO);
    let mut svc = layer.layer(tower::service_fn(|_: ()| async {
        Err::<(), _>(std::io::Error::other("boom"))
    }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::Inner(e) if e.to_string() == "boom"));
    assert_eq!(layer.handle().snapshot().in_use, 0);
}

#[test]
fn invalid_config_is_refused() {
    let err = BulkheadLayer::new(
        "x",
        BulkheadConfig {
            max_concurrent: 0,
            max_wait: Duration::ZERO,
            adaptive: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
}

#[tokio::test(start_paused = true)]
async fn a_permit_freed_before_the_next_poll_cancels_a_pending_rejection() {
    let layer = layer(1, Duration::ZERO);
    let mut svc = layer.layer(Slow::new(Duration::from_millis(10)));
    let held = svc.ready().await.unwrap().call(1);
    // Ready-to-reject while the permit is held...
    assert_ready_ok!(task::spawn(()).enter(|cx, _| svc.poll_ready(cx)));
    drop(held);
    // ...but polled again after it was freed, the service takes the permit instead.
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert_eq!(layer.handle().snapshot().rejected_total, 0);
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    let svc = layer(1, Duration::from_millis(1)).layer(Slow::new(Duration::ZERO));
    send_sync(&svc);
    let handle = svc.handle();
    send_sync(&handle);
    fn future_is_send<S: Service<u32, Future: Send + 'static>>(_: &S) {}
    future_is_send(&svc);
    fn acquire_is_send<F: Future + Send>(_: F) {}
    acquire_is_send(handle.acquire());
}
