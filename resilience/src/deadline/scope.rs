//! Where inner layers find the deadline in force: a task-local set around calls and polls.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;

use tokio::time::Instant;

use super::Deadline;

// The deadline of the call being made or polled on this thread, if any.
//
// Set only while a deadline's `call` or one poll of its future runs, and restored after, so it
// follows the task, not the thread: a task-local in effect. tokio's `task_local!` works the
// same way; plain `Cell`s avoid its `RefCell` swap and cut the deadline layer's cost on an
// immediately-ready call several times over (`benches/layers.rs`).
thread_local! {
    /// A deadline whose clock has started.
    static FIXED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// With `FIXED` empty: the budget of a deadline whose clock has not started yet.
    static UNANCHORED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Reads the deadline in force. Two 16-byte cells rather than one 24-byte `Option<Lazy>`:
/// each is always read and written whole, which spares store-to-load forwarding stalls
/// (measured: 16 ns a call against 25 ns with one cell).
#[inline]
fn load() -> Option<Lazy> {
    match (FIXED.get(), UNANCHORED.get()) {
        (Some(at), _) => Some(Lazy::Fixed(Deadline::at(at))),
        (None, Some(budget)) => Some(Lazy::Unanchored { budget }),
        (None, None) => None,
    }
}

/// Sets the deadline in force.
#[inline]
fn store(lazy: Option<Lazy>) {
    let (fixed, unanchored) = match lazy {
        Some(Lazy::Fixed(deadline)) => (Some(deadline.instant()), None),
        Some(Lazy::Unanchored { budget }) => (None, Some(budget)),
        None => (None, None),
    };
    FIXED.set(fixed);
    UNANCHORED.set(unanchored);
}

/// The deadline in force for one call, anchored to the clock only when first needed.
///
/// Reading the clock costs more than everything else the deadline layer does on a call that
/// completes at once, so [`DeadlineService`](super::DeadlineService) starts its clock the
/// first time something needs it: an inner layer asking [`current_deadline`], or the first
/// poll of the inner future that is not ready. Both happen in the same synchronous stretch as
/// the `call` itself, which no timer could interrupt anyway.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lazy {
    /// A fixed instant.
    Fixed(Deadline),
    /// `budget` from the moment it is first needed.
    Unanchored { budget: Duration },
}

impl Lazy {
    /// The deadline, anchoring it now if that has not happened yet.
    pub(crate) fn resolve(&mut self) -> Deadline {
        match *self {
            Lazy::Fixed(deadline) => deadline,
            Lazy::Unanchored { budget } => {
                let deadline = Deadline::after(budget);
                *self = Lazy::Fixed(deadline);
                deadline
            }
        }
    }

    /// Runs `f` with this deadline in force; returns what `f` returned and the deadline as
    /// `f` left it (anchored if something inside asked for it).
    #[inline]
    pub(crate) fn enter<R>(self, f: impl FnOnce() -> R) -> (R, Lazy) {
        let scope = Scope::enter(self);
        let output = f();
        (output, scope.exit(self))
    }
}

/// A deadline in force until [`exit`](Self::exit) (or drop, if what runs inside panics),
/// after which the outer one is back: [`Lazy::enter`] without the closure and the tuple.
pub(crate) struct Scope(Option<Lazy>);

impl Scope {
    #[inline]
    pub(crate) fn enter(lazy: Lazy) -> Self {
        let outer = load();
        store(Some(lazy));
        Self(outer)
    }

    /// Ends the scope; returns `entered` as the code inside left it (anchored if something
    /// asked for it).
    #[inline]
    pub(crate) fn exit(self, entered: Lazy) -> Lazy {
        load().unwrap_or(entered)
    }
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        store(self.0);
    }
}

/// The deadline of the call being made or polled right now, if a
/// [`DeadlineLayer`](super::DeadlineLayer) (or [`Deadline::scope`]) is in force around it.
///
/// Works for any request type: the value lives in a task-local (a thread-local the deadline
/// layer sets around its inner service's `call` and around every poll of the inner future).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::deadline::{DeadlineLayer, current_deadline};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut svc = ServiceBuilder::new()
///     .layer(DeadlineLayer::new("users", Duration::from_secs(2)).unwrap())
///     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>(current_deadline()) }));
/// let seen = svc.ready().await.unwrap().call(()).await.unwrap().unwrap();
/// assert!(seen.remaining() <= Duration::from_secs(2));
/// # }
/// ```
#[inline]
pub fn current_deadline() -> Option<Deadline> {
    match load()? {
        Lazy::Fixed(deadline) => Some(deadline),
        mut lazy => {
            let deadline = lazy.resolve();
            store(Some(lazy));
            Some(deadline)
        }
    }
}

pin_project! {
    /// A future run with a [`Deadline`] visible to [`current_deadline`] inside it; made by
    /// [`Deadline::scope`]. It does not enforce the deadline: that is the deadline layer's job.
    #[derive(Debug)]
    pub struct WithDeadline<F> {
        #[pin]
        future: F,
        deadline: Deadline,
    }
}

impl<F: Future> Future for WithDeadline<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // An earlier deadline around this poll wins, as with nested deadline layers.
        this.deadline.sync_scope(|| this.future.poll(cx))
    }
}

/// A [`WithDeadline`] around `future`; [`Deadline::scope`] builds it.
pub(super) fn with_future<F: Future>(future: F, deadline: Deadline) -> WithDeadline<F> {
    WithDeadline { future, deadline }
}
