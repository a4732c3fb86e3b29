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

pub(crate) use crate::cache_lines::Padded;
