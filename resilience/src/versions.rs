//! A value that reconfigurations replace while calls read it without a lock.
//!
//! Calls read the current version on their path (a breaker's window, a retry budget); a
//! reconfiguration appends a new one. A call on another thread may still be using the old
//! version when the new one is published, so versions are never freed before the owner:
//! what such a late call writes into an old version is simply lost, and memory grows by one
//! version per replacement, which reloads make rarely (one that leaves a setting alone
//! replaces nothing). Reading costs one acquire load and a branch while nothing was ever
//! replaced. (No reference count per call: that would put a write every thread makes on one
//! cache line, and no `unsafe` either.)

use std::sync::OnceLock;

#[cfg(resilience_loom)]
use loom::sync::atomic::{AtomicUsize, Ordering::*};
#[cfg(not(resilience_loom))]
use std::sync::atomic::{AtomicUsize, Ordering::*};

#[derive(Debug)]
pub(crate) struct Versions<T> {
    /// Index of the current version: 0 is `first`, `i > 0` is entry `i` of `later`.
    current: AtomicUsize,
    first: T,
    /// Chunk `c` holds `2^c` versions, so index `i` is in chunk `log2(i)`: appending never
    /// moves a version, and chunks are allocated only by replacements.
    later: OnceLock<Box<[Chunk<T>; 32]>>,
}

type Chunk<T> = OnceLock<Box<[OnceLock<T>]>>;

impl<T> Versions<T> {
    pub(crate) fn new(first: T) -> Self {
        Self {
            current: AtomicUsize::new(0),
            first,
            later: OnceLock::new(),
        }
    }

    /// The current version.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        match self.current.load(Acquire) {
            0 => &self.first,
            i => self.later(i),
        }
    }

    #[cold]
    fn later(&self, i: usize) -> &T {
        let (chunk, offset) = place(i);
        self.later
            .get()
            .and_then(|chunks| chunks[chunk].get())
            .and_then(|versions| versions[offset].get())
            .expect("a version is published only once it is stored")
    }

    /// Makes `value` the current version. Callers serialise (each owner holds a lock).
    pub(crate) fn replace(&self, value: T) {
        let next = self.current.load(Acquire) + 1;
        let (chunk, offset) = place(next);
        let chunks = self
            .later
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        let versions =
            chunks[chunk].get_or_init(|| (0..1usize << chunk).map(|_| OnceLock::new()).collect());
        assert!(
            versions[offset].set(value).is_ok(),
            "version {next} stored twice"
        );
        self.current.store(next, Release);
    }

    /// How many versions are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.current.load(Acquire) + 1
    }
}

/// Chunk and offset of version `i >= 1`.
fn place(i: usize) -> (usize, usize) {
    let chunk = usize::BITS - 1 - i.leading_zeros();
    (chunk as usize, i - (1 << chunk))
}

#[cfg(all(test, not(resilience_loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_version_stays_where_it_was_put() {
        let v = Versions::new(0u32);
        let first = v.get();
        for i in 1..100 {
            v.replace(i);
            assert_eq!(*v.get(), i);
        }
        assert_eq!(*first, 0, "a reference to an old version stays valid");
        assert_eq!(v.held(), 100);
        assert_eq!(place(1), (0, 0));
        assert_eq!(place(2), (1, 0));
        assert_eq!(place(3), (1, 1));
        assert_eq!(place(4), (2, 0));
        assert_eq!(place(7), (2, 3));
    }
}
