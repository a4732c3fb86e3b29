//! One circuit breaker per upstream host, in a bounded map.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use crate::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitSnapshot,
};
use crate::config::ConfigError;

/// Breakers keyed by `host:port`, so one failing upstream cannot open the circuit for a
/// healthy one behind the same client.
///
/// Bounded: at most `max_hosts` entries. Entries unused for `idle` are evicted when a new host
/// needs room (their state is stale anyway); if none is idle, the least recently used goes.
/// Hosts registered up front with [`pin`](Self::pin) are never evicted, so a health check
/// can always report them.
pub(crate) struct HostBreakers {
    prefix: Arc<str>,
    /// What new breakers are built with; locked after `hosts` when both are.
    config: Mutex<CircuitBreakerConfig>,
    max_hosts: usize,
    idle: Duration,
    hosts: Mutex<HashMap<Box<str>, Entry>>,
}

struct Entry {
    handle: CircuitBreakerHandle,
    last_used: Instant,
    pinned: bool,
}

impl HostBreakers {
    /// `config` must already be valid.
    pub(crate) fn new(
        prefix: Arc<str>,
        config: CircuitBreakerConfig,
        max_hosts: usize,
        idle: Duration,
    ) -> Self {
        Self {
            prefix,
            config: Mutex::new(config),
            max_hosts: max_hosts.max(1),
            idle,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The breaker for `authority` (`host:port`), created on first use.
    pub(crate) fn get(&self, authority: &str) -> Option<CircuitBreakerHandle> {
        self.entry(authority, false)
    }

    /// Like [`get`](Self::get), and the entry is never evicted.
    pub(crate) fn pin(&self, authority: &str) -> Option<CircuitBreakerHandle> {
        self.entry(authority, true)
    }

    fn entry(&self, authority: &str, pin: bool) -> Option<CircuitBreakerHandle> {
        let now = Instant::now();
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = hosts.get_mut(authority) {
            entry.last_used = now;
            entry.pinned |= pin;
            return Some(entry.handle.clone());
        }
        if hosts.len() >= self.max_hosts {
            self.evict(&mut hosts, now);
        }
        let name = format!("{}@{authority}", self.prefix);
        let config = self.config().clone();
        let handle = match CircuitBreakerLayer::new(name, config) {
            Ok(layer) => layer.handle(),
            Err(e) => {
                // Unreachable: the config was validated when the middleware was built.
                tracing::error!(target: "resilience", error = %e, "cannot build a breaker; calling without one");
                return None;
            }
        };
        hosts.insert(
            authority.into(),
            Entry {
                handle: handle.clone(),
                last_used: now,
                pinned: pin,
            },
        );
        Some(handle)
    }

    fn evict(&self, hosts: &mut HashMap<Box<str>, Entry>, now: Instant) {
        let before = hosts.len();
        hosts.retain(|_, e| e.pinned || now.saturating_duration_since(e.last_used) < self.idle);
        if hosts.len() < self.max_hosts {
            tracing::debug!(target: "resilience", name = %self.prefix, evicted = before - hosts.len(), "idle breakers evicted");
            return;
        }
        let oldest = hosts
            .iter()
            .filter(|(_, e)| !e.pinned)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            tracing::debug!(target: "resilience", name = %self.prefix, host = %key, "least recently used breaker evicted");
            hosts.remove(&key);
        }
    }

    /// Snapshots of every breaker held, sorted by name.
    pub(crate) fn snapshots(&self) -> Vec<CircuitSnapshot> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = hosts.values().map(|e| e.handle.snapshot()).collect();
        drop(hosts);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn config(&self) -> std::sync::MutexGuard<'_, CircuitBreakerConfig> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The config every breaker has (new ones are built with it).
    pub(crate) fn current_config(&self) -> CircuitBreakerConfig {
        self.config().clone()
    }

    /// Gives every breaker held, and every one built from now on, `config` (valid), each
    /// keeping its state.
    pub(crate) fn reconfigure(&self, config: &CircuitBreakerConfig) -> Result<(), ConfigError> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in hosts.values() {
            entry.handle.reconfigure(config.clone())?;
        }
        *self.config() = config.clone();
        Ok(())
    }

    /// The handles held, with their `host:port`.
    pub(crate) fn handles(&self) -> Vec<(String, CircuitBreakerHandle)> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = hosts
            .iter()
            .map(|(k, e)| (k.to_string(), e.handle.clone()))
            .collect();
        drop(hosts);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for HostBreakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBreakers")
            .field("prefix", &self.prefix)
            .field("max_hosts", &self.max_hosts)
            .field("idle", &self.idle)
            .field("hosts", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize) -> HostBreakers {
        HostBreakers::new(
            Arc::from("up"),
            CircuitBreakerConfig::default(),
            max,
            Duration::from_secs(60),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn same_host_same_breaker_and_names_carry_the_host() {
        let r = registry(4);
        let a = r.get("a:80").unwrap();
        let _b = r.get("b:80").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(a.name(), "up@a:80");
        r.get("a:80").unwrap();
        assert_eq!(r.len(), 2);
        let names: Vec<_> = r.snapshots().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["up@a:80", "up@b:80"]);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_idle_first_then_lru_and_pins_stay() {
        let r = registry(2);
        r.pin("pinned:1");
        r.get("a:1");
        tokio::time::advance(Duration::from_secs(61)).await;
        // Full: "a" is idle and goes; the pinned entry stays despite being idle too.
        r.get("b:1");
        let keys: Vec<_> = r.handles().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b:1", "pinned:1"]);
        // Full and nothing idle: the least recently used unpinned entry goes.
        tokio::time::advance(Duration::from_secs(1)).await;
        r.get("c:1");
        let keys: Vec<_> = r.handles().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["c:1", "pinned:1"]);
    }
}
