//! The atomics and lock the state machine uses: std's normally, loom's under
//! `--cfg resilience_loom` so the model checker can explore every interleaving.

#[cfg(resilience_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, Ordering},
};
#[cfg(not(resilience_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, Ordering},
};

/// Locks `mutex`, ignoring poisoning: the guarded data is plain numbers that are always
/// left consistent, so a panic elsewhere cannot leave it half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Keeps a value on cache lines of its own (128 bytes: two lines, as adjacent-line
/// prefetchers pair them), so that writes to it do not slow down readers of its neighbours.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
