//! Keeping the threads that share one layer off each other's cache lines.
//!
//! Clones of a service share one breaker, one retry budget, one set of counters, and tower
//! moves them between threads freely. Anything every call *writes* in that shared state is a
//! cache line bouncing between cores: with two threads it cost more than the whole call on
//! one. Two tools keep those writes per thread:
//!
//! - [`ThreadView`]: an `Arc` per thread in front of the shared state, for the reference count
//!   a call takes (a permit, a cloned policy): the count is bumped on a line only the running
//!   thread writes.
//! - [`StripedCounter`]: a total that each thread adds to on its own stripe, summed when read
//!   (rejections, requests for snapshots).

use std::{
    ops::Deref,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

/// A number unique to the running thread among live threads: the address of a thread-local.
/// One `lea` on the platforms that matter; no `ThreadId` (an `Arc` behind a lazy TLS slot).
#[inline]
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|token| std::ptr::from_ref(token) as usize)
}

/// One thread's view of shared state `T`.
///
/// Holders that take a reference on every call (a breaker's permits and response futures, a
/// retry policy that tower clones per request) hold an `Arc` to this rather than to `T`, so the
/// count they bump lives on a cache line that one thread writes (hence the alignment: two
/// threads' counts must not share a line either). Clones of a holder share its view (cloning
/// must not allocate), and a holder used on another thread than its view's makes itself a
/// new one first ([`ThreadView::for_this_thread`]), once per move. A thread id reused after a
/// thread exits only makes two threads share a view: slower, never wrong.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct ThreadView<T> {
    /// The state every view of it shares.
    pub(crate) shared: Arc<T>,
    /// The thread this view was made for ([`thread_token`]).
    owner: usize,
}

impl<T> ThreadView<T> {
    /// A view of `shared` for the running thread.
    pub(crate) fn new(shared: Arc<T>) -> Arc<Self> {
        Arc::new(Self {
            shared,
            owner: thread_token(),
        })
    }

    /// Makes `view` one owned by the running thread, if it is not one already.
    #[inline]
    pub(crate) fn for_this_thread(view: &mut Arc<Self>) {
        if view.owner != thread_token() {
            Self::remake(view);
        }
    }

    /// Out of line: it drops the old view, whose drop code (that of `T`, when it was the
    /// last view) would otherwise make every caller too big to inline the check.
    #[cold]
    #[inline(never)]
    fn remake(view: &mut Arc<Self>) {
        *view = Self::new(view.shared.clone());
    }
}

impl<T> Deref for ThreadView<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.shared
    }
}

/// Stripes per counter: threads beyond this share stripes (still exact, just contended).
const STRIPES: usize = 8;

/// Keeps a value on cache lines of its own (128 bytes: two lines, as adjacent-line
/// prefetchers pair them), so that writes to it do not slow down readers of its neighbours.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// An exact counter with a stripe per thread (up to [`STRIPES`]).
#[derive(Debug, Default)]
pub(crate) struct StripedCounter {
    stripes: [Padded<AtomicU64>; STRIPES],
}

/// The running thread's stripe: threads are numbered round robin as they first count.
#[inline]
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    INDEX.with(|index| *index)
}

impl StripedCounter {
    /// Adds `n` on the running thread's stripe, and returns that stripe's new value (what
    /// this thread, and any thread sharing its stripe, added so far).
    #[inline]
    pub(crate) fn add(&self, n: u64) -> u64 {
        self.stripes[stripe_index()]
            .0
            .fetch_add(n, Relaxed)
            .wrapping_add(n)
    }

    /// The total: exact once the adding threads are done, and never more than was added.
    pub(crate) fn sum(&self) -> u64 {
        self.stripes.iter().fold(0u64, |total, stripe| {
            total.wrapping_add(stripe.0.load(Relaxed))
        })
    }
}

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sums_what_every_thread_added() {
        let counter = StripedCounter::default();
        std::thread::scope(|scope| {
            for _ in 0..(STRIPES + 3) {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                });
            }
        });
        counter.add(5);
        assert_eq!(counter.sum(), (STRIPES as u64 + 3) * 1000 + 5);
    }

    #[test]
    fn a_view_is_remade_only_on_another_thread() {
        let mut view = ThreadView::new(Arc::new(7));
        let first = Arc::as_ptr(&view);
        ThreadView::for_this_thread(&mut view);
        assert_eq!(Arc::as_ptr(&view), first, "same thread: kept");
        let moved = std::thread::spawn(move || {
            ThreadView::for_this_thread(&mut view);
            view
        })
        .join()
        .unwrap();
        assert_ne!(
            Arc::as_ptr(&moved),
            first,
            "another thread: a view of its own"
        );
        assert_eq!(**moved, 7, "of the same state");
    }

    #[test]
    fn each_stripe_is_on_its_own_lines() {
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<StripedCounter>(), 128 * STRIPES);
    }
}
