//! The bounded map of keys to their pieces.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::KeyedConfig;

/// What a registry holds per key: something whose metric series can be marked as updated.
pub(crate) trait Touch {
    /// Marks every metric series as updated, without changing a value.
    fn touch_metrics(&self);
}

/// Values by key, bounded: at most `max_keys` made by traffic (pinned ones on top), idle ones
/// swept out, the least recently used evicted when a new key finds the map full.
///
/// Every lookup takes one lock. A lookup sweeps the idle keys out when the oldest may have
/// become idle, and at most once per eighth of `idle`, so an unused key goes between `idle`
/// and `idle` and an eighth after its last use, given traffic to any key
/// ([`sweep`](Self::sweep) does it on demand). A sweep, and an eviction when full, scan the
/// map: `max_keys` is meant for hundreds or thousands of keys, not millions.
pub(crate) struct Registry<K, V> {
    config: KeyedConfig,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Entries not pinned: those `max_keys` bounds.
    unpinned: usize,
    /// No entry can be idle before then (`None`: no entry that could be).
    next_sweep: Option<Instant>,
}

struct Entry<V> {
    value: V,
    last_used: Instant,
    /// When its metric series were last marked as updated.
    touched: Instant,
    pinned: bool,
}

impl<K: Hash + Eq + Clone, V: Touch> Registry<K, V> {
    /// `config` must already be valid.
    pub(crate) fn new(config: KeyedConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                unpinned: 0,
                next_sweep: None,
            }),
        }
    }

    pub(crate) fn config(&self) -> KeyedConfig {
        self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the value for `key`, made by `make` when the key is new.
    ///
    /// A live key's metric series are marked as updated at most once per half `idle`, so that
    /// an exporter that drops series idle for longer than `idle` drops only evicted keys'.
    pub(crate) fn with<T>(
        &self,
        key: &K,
        make: impl FnOnce(&K) -> V,
        f: impl FnOnce(&V) -> T,
    ) -> T {
        let now = Instant::now();
        let half = self.config.idle / 2;
        let mut inner = self.lock();
        if inner.next_sweep.is_some_and(|at| now >= at) {
            inner.sweep(now, self.config.idle);
        }
        if let Some(entry) = inner.entries.get_mut(key) {
            entry.last_used = now;
            if now.saturating_duration_since(entry.touched) >= half {
                entry.value.touch_metrics();
                entry.touched = now;
            }
            return f(&entry.value);
        }
        if inner.unpinned >= self.config.max_keys {
            inner.sweep(now, self.config.idle);
        }
        if inner.unpinned >= self.config.max_keys {
            inner.evict_least_recently_used();
        }
        let value = make(key);
        let out = f(&value);
        inner.unpinned += 1;
        inner
            .entries
            .insert(key.clone(), Entry::new(value, now, false));
        let expires = now + self.config.idle;
        inner.next_sweep = Some(inner.next_sweep.map_or(expires, |at| at.min(expires)));
        out
    }

    /// The value for `key`, made by `make` if new, and kept from now on: never evicted, and
    /// not counted against `max_keys`.
    pub(crate) fn pin<T>(&self, key: K, make: impl FnOnce(&K) -> V, f: impl FnOnce(&V) -> T) -> T {
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(entry) = inner.entries.get_mut(&key) {
            if !entry.pinned {
                entry.pinned = true;
                inner.unpinned -= 1;
            }
            entry.last_used = now;
            return f(&entry.value);
        }
        let value = make(&key);
        let out = f(&value);
        inner.entries.insert(key, Entry::new(value, now, true));
        out
    }

    /// The value for `key`, if held (not a use: the key's idle time runs on).
    pub(crate) fn get(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        self.lock().entries.get(key).map(|e| e.value.clone())
    }

    /// Evicts every key unused for `idle` now; returns how many went.
    pub(crate) fn sweep(&self) -> usize {
        self.lock().sweep(Instant::now(), self.config.idle)
    }

    /// Removes `key` (pinned or not); true if it was there.
    pub(crate) fn remove(&self, key: &K) -> bool {
        let mut inner = self.lock();
        match inner.entries.remove(key) {
            Some(entry) => {
                if !entry.pinned {
                    inner.unpinned -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// `f` of every entry, in no particular order.
    pub(crate) fn map<T>(&self, mut f: impl FnMut(&K, &V) -> T) -> Vec<T> {
        self.lock()
            .entries
            .iter()
            .map(|(k, e)| f(k, &e.value))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl<V> Entry<V> {
    fn new(value: V, now: Instant, pinned: bool) -> Self {
        Self {
            value,
            last_used: now,
            touched: now,
            pinned,
        }
    }
}

impl<K: Hash + Eq, V> Inner<K, V> {
    fn sweep(&mut self, now: Instant, idle: Duration) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.pinned || now.saturating_duration_since(e.last_used) < idle);
        let evicted = before - self.entries.len();
        // When the oldest left could be idle, but not sooner than an eighth of `idle` from
        // now: keys in steady use must not make every lookup scan the map.
        let oldest = self
            .entries
            .values()
            .filter(|e| !e.pinned)
            .map(|e| e.last_used)
            .min();
        self.next_sweep = oldest.map(|at| (at + idle).max(now + idle / 8));
        if evicted > 0 {
            self.unpinned -= evicted;
            tracing::debug!(target: "resilience", evicted, "idle keys evicted");
        }
        evicted
    }

    fn evict_least_recently_used(&mut self) {
        // Borrowing the key out of the scan would hold `entries` borrowed; find the time,
        // then remove the entry that has it.
        let Some(oldest) = self
            .entries
            .values()
            .filter(|e| !e.pinned)
            .map(|e| e.last_used)
            .min()
        else {
            return;
        };
        let mut gone = false;
        self.entries.retain(|_, e| {
            let evict = !gone && !e.pinned && e.last_used == oldest;
            gone |= evict;
            !evict
        });
        if gone {
            self.unpinned -= 1;
            tracing::debug!(target: "resilience", "full: least recently used key evicted");
        }
    }
}

impl<K, V> std::fmt::Debug for Registry<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Registry")
            .field("config", &self.config)
            .field("keys", &inner.entries.len())
            .finish()
    }
}
