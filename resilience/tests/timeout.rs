//! Attempt timeouts and total deadlines under a paused clock.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use resilience_layers::{
    Error,
    deadline::{Deadline, DeadlineLayer, DeadlineService, current_deadline},
    timeout::{AttemptTimeout, AttemptTimeoutLayer},
};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn sleeper() -> impl Service<u64, Response = u64, Error = std::io::Error, Future: Send> + Clone {
    service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    })
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_fires_exactly_at_the_timeout() {
    let mut svc = AttemptTimeout::new(sleeper(), Duration::from_millis(100));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(1_000));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = assert_ready!(fut.poll()).unwrap_err();
    match Error::from_boxed(err) {
        Error::Timeout(e) => assert_eq!(e.timeout(), Duration::from_millis(100)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_passes_fast_results_and_inner_errors() {
    let mut svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new("t", Duration::from_millis(100)).unwrap())
        .service(sleeper());
    assert_eq!(svc.ready().await.unwrap().call(99).await.unwrap(), 99);
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 0);

    let mut failing = AttemptTimeout::new(
        service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("boom")) }),
        Duration::from_secs(1),
    );
    let err = failing.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::Inner(_)));
}

#[test]
fn zero_durations_are_refused_by_name() {
    assert_eq!(
        AttemptTimeoutLayer::new("test", Duration::ZERO)
            .unwrap_err()
            .field(),
        "timeout"
    );
    assert_eq!(
        DeadlineLayer::new("test", Duration::ZERO)
            .unwrap_err()
            .field(),
        "deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_the_whole_call() {
    let mut svc = DeadlineService::new(sleeper(), Duration::from_secs(1));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(5_000));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    match Error::from_boxed(assert_ready!(fut.poll()).unwrap_err()) {
        Error::DeadlineExceeded(e) => assert_eq!(e.budget(), Duration::from_secs(1)),
        other => panic!("expected deadline exceeded, got {other:?}"),
    }
    assert_eq!(svc.ready().await.unwrap().call(10).await.unwrap(), 10);
}

/// Records the deadline seen at `call` and at each poll of the response future.
#[derive(Clone, Default)]
struct Spy {
    at_call: Arc<Mutex<Vec<Option<Deadline>>>>,
    at_poll: Arc<Mutex<Vec<Option<Deadline>>>>,
}

impl Spy {
    fn service(&self) -> impl Service<(), Response = (), Error = std::io::Error> + Clone {
        let spy = self.clone();
        service_fn(move |()| {
            spy.at_call.lock().unwrap().push(current_deadline());
            let at_poll = spy.at_poll.clone();
            async move {
                at_poll.lock().unwrap().push(current_deadline());
                tokio::time::sleep(Duration::from_millis(10)).await;
                at_poll.lock().unwrap().push(current_deadline());
                Ok(())
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn inner_layers_see_the_deadline_at_call_and_while_polled() {
    let spy = Spy::default();
    let start = Instant::now();
    let mut svc = DeadlineService::new(spy.service(), Duration::from_secs(2));
    svc.ready().await.unwrap().call(()).await.unwrap();

    let want = Some(Deadline::at(start + Duration::from_secs(2)));
    assert_eq!(*spy.at_call.lock().unwrap(), [want]);
    assert_eq!(*spy.at_poll.lock().unwrap(), [want, want]);
    // Outside the call there is none.
    assert_eq!(current_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn a_nested_deadline_keeps_the_earlier_one() {
    let start = Instant::now();
    let spy = Spy::default();
    let mut outer_short = ServiceBuilder::new()
        .layer(DeadlineLayer::new("test", Duration::from_secs(1)).unwrap())
        .layer(DeadlineLayer::new("test", Duration::from_secs(5)).unwrap())
        .service(spy.service());
    outer_short.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(
        spy.at_call.lock().unwrap()[0],
        Some(Deadline::at(start + Duration::from_secs(1)))
    );

    let spy = Spy::default();
    let now = Instant::now();
    let mut inner_short = ServiceBuilder::new()
        .layer(DeadlineLayer::new("test", Duration::from_secs(5)).unwrap())
        .layer(DeadlineLayer::new("test", Duration::from_secs(1)).unwrap())
        .service(spy.service());
    inner_short.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(
        spy.at_call.lock().unwrap()[0],
        Some(Deadline::at(now + Duration::from_secs(1)))
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_inherited_deadline_never_reaches_inner() {
    let spy = Spy::default();
    let mut svc = DeadlineService::new(spy.service(), Duration::from_secs(5));
    let past = Deadline::after(Duration::from_millis(10));
    tokio::time::advance(Duration::from_millis(20)).await;
    let mut fut = task::spawn(past.scope(async { svc.ready().await.unwrap().call(()).await }));
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::DeadlineExceeded(_)));
    assert!(spy.at_call.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn deadline_scope_works_outside_tower() {
    let d = Deadline::after(Duration::from_secs(3));
    let mut fut = task::spawn(d.scope(async {
        let first = current_deadline();
        tokio::time::sleep(Duration::from_secs(1)).await;
        (first, current_deadline().map(|d| d.remaining()))
    }));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_secs(1)).await;
    let (first, remaining) = assert_ready!(fut.poll());
    assert_eq!(first, Some(d));
    assert_eq!(remaining, Some(Duration::from_secs(2)));
    assert_eq!(d.sync_scope(current_deadline), Some(d));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_inside_a_deadline_fires_first_when_shorter() {
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new("test", Duration::from_secs(1)).unwrap())
        .layer(AttemptTimeoutLayer::new("test", Duration::from_millis(200)).unwrap())
        .service(sleeper());
    let mut fut = task::spawn(svc.ready().await.unwrap().call(500));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(matches!(
        Error::from_boxed(assert_ready!(fut.poll()).unwrap_err()),
        Error::Timeout(_)
    ));
    let mut ok = task::spawn(svc.ready().await.unwrap().call(150));
    assert_pending!(ok.poll());
    tokio::time::advance(Duration::from_millis(150)).await;
    assert_eq!(assert_ready_ok!(ok.poll()), 150);
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn check<S: Service<u64, Future: Send + Sync + 'static> + Send + Sync + 'static>(_: S) {}
    check(AttemptTimeout::new(sleeper_sync(), Duration::from_secs(1)));
    check(DeadlineService::new(sleeper_sync(), Duration::from_secs(1)));
}

fn sleeper_sync()
-> impl Service<u64, Response = u64, Error = std::io::Error, Future: Send + Sync> + Send + Sync + Clone
{
    service_fn(|ms: u64| std::future::ready(Ok::<_, std::io::Error>(ms)))
}

#[tokio::test(start_paused = true)]
async fn the_deadline_clock_starts_when_first_needed() {
    // A call that nobody polls yet has not started its clock...
    let mut svc = DeadlineService::new(sleeper(), Duration::from_secs(1));
    let fut = svc.ready().await.unwrap().call(5_000);
    tokio::time::advance(Duration::from_millis(300)).await;
    // ...it starts at the first poll that finds the inner future not ready.
    let mut fut = task::spawn(fut);
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(assert_ready!(fut.poll()).is_err());
}

#[tokio::test(start_paused = true)]
async fn the_deadline_follows_the_task_not_the_thread() {
    let d = Deadline::after(Duration::from_secs(3));
    let probe = || async {
        let mut seen = vec![current_deadline()];
        tokio::time::sleep(Duration::from_millis(1)).await;
        seen.push(current_deadline());
        seen
    };
    // Interleave a future with a deadline and one without on the same thread.
    let mut with = task::spawn(d.scope(probe()));
    let mut without = task::spawn(probe());
    assert_pending!(with.poll());
    assert_pending!(without.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(assert_ready!(without.poll()), [None, None]);
    assert_eq!(assert_ready!(with.poll()), [Some(d), Some(d)]);

    // A panic inside the scope does not leave the deadline behind.
    let caught = std::panic::catch_unwind(|| d.sync_scope(|| panic!("boom")));
    assert!(caught.is_err());
    assert_eq!(current_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_keeps_its_old_paths_under_timeout() {
    // `timeout::` named the deadline's items before it had a module of its own; they are the
    // same items, so code written against the old paths mixes with the new.
    let old: resilience_layers::timeout::Deadline = Deadline::after(Duration::from_secs(1));
    let seen: Option<Deadline> = old
        .scope(async { resilience_layers::timeout::current_deadline() })
        .await;
    assert_eq!(seen, Some(old));
    let layer: DeadlineLayer =
        resilience_layers::timeout::DeadlineLayer::new("test", Duration::from_secs(1)).unwrap();
    let svc: resilience_layers::timeout::DeadlineService<_> = layer.layer(sleeper());
    let future: resilience_layers::timeout::future::DeadlineFuture<_> =
        DeadlineService::clone(&svc).call(5);
    assert_eq!(future.await.unwrap(), 5);
    let scoped: resilience_layers::timeout::WithDeadline<std::future::Ready<()>> =
        old.scope(std::future::ready(()));
    scoped.await;
}

/// Each limit counts into its own handle under the name it was given, and the stack's
/// snapshot shows both: two timeouts named alike no longer share one anonymous series.
#[tokio::test(start_paused = true)]
async fn each_timeout_counts_into_its_own_named_snapshot() {
    use resilience_layers::{deadline::TimeoutKind, stack::StackConfig};

    let config: StackConfig =
        toml::from_str("deadline = \"1s\"\nattempt_timeout = \"200ms\"").unwrap();
    let layer = config.into_layer("users").unwrap();
    let svc = layer.layer(sleeper());
    // A slow call: the attempt timeout fires, the deadline does not.
    assert!(matches!(
        Error::from_boxed(svc.clone().oneshot(5_000).await.unwrap_err()),
        Error::Timeout(_)
    ));
    // A fast one: neither fires.
    assert_eq!(svc.clone().oneshot(10).await.unwrap(), 10);
    let timeouts = layer.snapshot().timeouts;
    let counted: Vec<_> = timeouts
        .iter()
        .map(|t| (t.name.as_str(), t.kind, t.limit, t.timeouts_total))
        .collect();
    assert_eq!(
        counted,
        [
            ("users", TimeoutKind::Deadline, Duration::from_secs(1), 0),
            ("users", TimeoutKind::Attempt, Duration::from_millis(200), 1),
        ]
    );

    // The deadline alone, past its budget: only its own count moves.
    let deadline = DeadlineLayer::new("orders", Duration::from_millis(300)).unwrap();
    let err = deadline.layer(sleeper()).oneshot(1_000).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::DeadlineExceeded(_)));
    assert_eq!(deadline.handle().snapshot().timeouts_total, 1);
    assert_eq!(layer.deadline().unwrap().snapshot().timeouts_total, 0);
}
