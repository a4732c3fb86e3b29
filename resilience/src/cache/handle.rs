//! The state every clone of one cache shares: the store, the calls in flight, the counters.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::{Counter, Gauge};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{CacheConfig, Served, state::Entry};
use crate::{cache_lines::StripedCounter, config::ConfigError};

/// What a leading call shares with the requests that waited for it.
#[derive(Debug, Clone)]
pub(crate) enum Published<Response> {
    /// A stored success: every waiter answers it.
    Value(Response),
    /// Nothing to share (an error, a `no-store` answer): each waiter decides on its own.
    Nothing,
}

pub(crate) type InFlight<Response> = watch::Receiver<Option<Published<Response>>>;

/// A cloneable handle on one cache: its name, a [`snapshot`](Self::snapshot), and
/// invalidation.
///
/// ```
/// use resilience_layers::cache::{CacheConfig, CacheLayer};
///
/// let layer = CacheLayer::<u32, String, _>::new("users", CacheConfig::default(), |id: &u32| Some(*id)).unwrap();
/// let snapshot = layer.handle().snapshot();
/// assert_eq!((snapshot.name.as_str(), snapshot.entries, snapshot.hits_total), ("users", 0, 0));
/// ```
pub struct CacheHandle<Key, Response> {
    pub(super) shared: Arc<Shared<Key, Response>>,
}

impl<Key, Response> Clone for CacheHandle<Key, Response> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<Key, Response> std::fmt::Debug for CacheHandle<Key, Response> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

pub(super) struct Shared<Key, Response> {
    pub(super) name: Arc<str>,
    pub(super) config: CacheConfig,
    pub(super) store: moka::future::Cache<Key, Arc<Entry<Response>>>,
    pub(super) in_flight: Mutex<HashMap<Key, InFlight<Response>>>,
    /// The weigher's bytes of the entries stored (without the per-entry floor).
    pub(super) bytes: Arc<AtomicU64>,
    /// Written by every request: a stripe per thread, so that hits on two threads do not
    /// share a cache line.
    counts: [StripedCounter; 4],
    counters: [Counter; 4],
    entries_gauge: Gauge,
    bytes_gauge: Gauge,
}

/// Indexes of `counts` and `counters`, in the order of the `result` label's closed set.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    Hit = 0,
    Miss = 1,
    Stale = 2,
    Coalesced = 3,
}

impl From<Served> for Count {
    fn from(served: Served) -> Self {
        match served {
            Served::Hit => Count::Hit,
            Served::Stale => Count::Stale,
            Served::Coalesced => Count::Coalesced,
        }
    }
}

/// A cache's figures at an instant, for dashboards and `GET /resilience`.
///
/// ```
/// use resilience_layers::cache::{CacheConfig, CacheLayer};
///
/// let layer = CacheLayer::<u32, u32, _>::new("ids", CacheConfig::default(), |id: &u32| Some(*id)).unwrap();
/// let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
/// assert_eq!(json["max_entries"], 10_000);
/// assert_eq!(json["stale_total"], 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSnapshot {
    /// The cache's name.
    pub name: String,
    /// Entries stored (moka's count, exact after pending maintenance has run).
    pub entries: u64,
    /// Bytes stored, as the weigher counts them.
    pub bytes: u64,
    /// The configured bound on entries.
    pub max_entries: u64,
    /// The configured bound on bytes.
    pub max_bytes: u64,
    /// Fresh answers served without a call.
    pub hits_total: u64,
    /// Requests that made their own call.
    pub misses_total: u64,
    /// Stale answers served because the call failed.
    pub stale_total: u64,
    /// Requests answered by a concurrent call for the same key.
    pub coalesced_total: u64,
}

impl<Key, Response> CacheHandle<Key, Response>
where
    Key: Hash + Eq + Send + Sync + 'static,
    Response: Send + Sync + 'static,
{
    pub(super) fn new(name: impl Into<Arc<str>>, config: CacheConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let bytes = Arc::new(AtomicU64::new(0));
        let evicted = bytes.clone();
        let store = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &Key, entry: &Arc<Entry<Response>>| entry.weight)
            // An upper bound for memory only, on moka's own clock: what may be served is
            // decided on tokio's clock from the entry's own times.
            .time_to_live(config.keep())
            .eviction_listener(move |_key, entry: Arc<Entry<Response>>, _cause| {
                evicted.fetch_sub(entry.bytes, Ordering::Relaxed);
            })
            .build();
        metrics::describe_counter!(
            "resilience_cache_requests_total",
            "Requests through a cache, by result: hit, miss, stale, coalesced."
        );
        metrics::describe_gauge!("resilience_cache_entries", "Entries stored in a cache.");
        metrics::describe_gauge!("resilience_cache_bytes", "Bytes stored in a cache.");
        let label = name.to_string();
        let counter = |result: &'static str| metrics::counter!("resilience_cache_requests_total", "name" => label.clone(), "result" => result);
        Ok(Self {
            shared: Arc::new(Shared {
                counters: [
                    counter("hit"),
                    counter("miss"),
                    counter("stale"),
                    counter("coalesced"),
                ],
                counts: Default::default(),
                entries_gauge: metrics::gauge!("resilience_cache_entries", "name" => label.clone()),
                bytes_gauge: metrics::gauge!("resilience_cache_bytes", "name" => label),
                name,
                config,
                store,
                in_flight: Mutex::new(HashMap::new()),
                bytes,
            }),
        })
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// Drops the stored answer for `key`, if any.
    pub async fn invalidate(&self, key: &Key) {
        self.shared.store.invalidate(key).await;
        self.shared.update_gauges();
    }

    /// Runs moka's pending maintenance (evictions to the bounds, expiry), which otherwise
    /// happens in batches as the cache is used: after it, the snapshot's figures are exact.
    pub async fn run_pending_tasks(&self) {
        self.shared.store.run_pending_tasks().await;
        self.shared.update_gauges();
    }

    /// The cache's figures now.
    pub fn snapshot(&self) -> CacheSnapshot {
        let count = |c: Count| self.shared.counts[c as usize].sum();
        CacheSnapshot {
            name: self.shared.name.to_string(),
            entries: self.shared.store.entry_count(),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            max_entries: self.shared.config.max_entries,
            max_bytes: self.shared.config.max_bytes,
            hits_total: count(Count::Hit),
            misses_total: count(Count::Miss),
            stale_total: count(Count::Stale),
            coalesced_total: count(Count::Coalesced),
        }
    }

    /// The weighted size moka holds (each entry at least `max_bytes / max_entries`): never
    /// above `max_bytes` once maintenance has run.
    pub fn weighted_size(&self) -> u64 {
        self.shared.store.weighted_size()
    }
}

impl<Key, Response> Shared<Key, Response>
where
    Key: Hash + Eq + Send + Sync + 'static,
    Response: Send + Sync + 'static,
{
    pub(super) fn count(&self, c: Count) {
        self.counts[c as usize].add(1);
        self.counters[c as usize].increment(1);
    }

    pub(super) fn update_gauges(&self) {
        self.entries_gauge.set(self.store.entry_count() as f64);
        self.bytes_gauge
            .set(self.bytes.load(Ordering::Relaxed) as f64);
    }
}
