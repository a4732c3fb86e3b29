//! Idempotency keys: scoped per user, held while in flight, expired after a retention.
//!
//! A key belongs to the user an order is for (the body's `user_id`; per account once there
//! is authentication), as the IETF Idempotency-Key draft asks: the same key from two users is
//! two orders, and one client cannot block another's key.
//!
//! [`InFlight`] holds the scoped keys being handled right now, so a repeat that arrives while
//! the first request is still verifying the user gets 409 instead of a second lookup racing
//! the first. It is only the fast path for one process; the store's primary key
//! `(user_id, idempotency_key)` is what guarantees one order per key across processes and
//! restarts.
//!
//! [`Sweeper`] deletes key records older than `IDEMPOTENCY_RETENTION` (24 h by default) in
//! the background, a small batch per statement so writers are never held up for long. Once
//! a key's record is gone, a request with that key is new: it creates a new order. The
//! orders themselves stay.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use service_kit::store::{Store, now_ms};
use tokio::task::JoinHandle;

use crate::store;

/// A key as the store scopes it: the user it belongs to and the header's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopedKey {
    /// The user the order is for.
    pub user_id: i64,
    /// The `Idempotency-Key` header.
    pub key: String,
}

impl ScopedKey {
    /// `user_id`'s `key`.
    pub fn new(user_id: i64, key: impl Into<String>) -> Self {
        Self {
            user_id,
            key: key.into(),
        }
    }
}

/// Why a key could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The same request is in flight (409).
    SameRequest,
    /// A different request with this key is in flight (422).
    DifferentRequest,
}

/// The in-flight keys and their request fingerprints.
#[derive(Debug, Default)]
pub struct InFlight {
    keys: Mutex<HashMap<ScopedKey, String>>,
}

/// Releases the key when dropped (on success, error, panic or a cancelled request alike).
#[derive(Debug)]
pub struct Guard {
    owner: Arc<InFlight>,
    key: ScopedKey,
}

impl InFlight {
    /// Claims `key` for a request with `fingerprint`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use order_service::idempotency::{Busy, InFlight, ScopedKey};
    ///
    /// let keys = Arc::new(InFlight::default());
    /// let guard = keys.begin(&ScopedKey::new(1, "k1"), "body-a").unwrap();
    /// assert_eq!(keys.begin(&ScopedKey::new(1, "k1"), "body-a").unwrap_err(), Busy::SameRequest);
    /// assert_eq!(keys.begin(&ScopedKey::new(1, "k1"), "body-b").unwrap_err(), Busy::DifferentRequest);
    /// // Another user's key of the same name is another key.
    /// assert!(keys.begin(&ScopedKey::new(2, "k1"), "body-c").is_ok());
    /// drop(guard);
    /// assert!(keys.begin(&ScopedKey::new(1, "k1"), "body-b").is_ok());
    /// ```
    pub fn begin(self: &Arc<Self>, key: &ScopedKey, fingerprint: &str) -> Result<Guard, Busy> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = keys.get(key) {
            return Err(if existing == fingerprint {
                Busy::SameRequest
            } else {
                Busy::DifferentRequest
            });
        }
        keys.insert(key.clone(), fingerprint.to_owned());
        Ok(Guard {
            owner: Arc::clone(self),
            key: key.clone(),
        })
    }

    /// How many keys are in flight.
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.owner
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// How long key records are kept when `IDEMPOTENCY_RETENTION` is not set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Key records deleted per statement: small, so a sweep never holds SQLite's one writer for
/// long and orders being placed interleave with it.
pub const SWEEP_BATCH: i64 = 500;

/// Deletes key records older than a retention, in batches of [`SWEEP_BATCH`].
///
/// ```no_run
/// # async fn demo(store: service_kit::store::Store) -> Result<(), sqlx::Error> {
/// use std::time::Duration;
/// use order_service::idempotency::Sweeper;
///
/// let sweeper = Sweeper::new(store, Duration::from_secs(3600));
/// let swept = sweeper.sweep(service_kit::store::now_ms()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Sweeper {
    store: Store,
    retention: Duration,
}

impl Sweeper {
    /// A sweeper over `store` keeping records for `retention`.
    pub fn new(store: Store, retention: Duration) -> Self {
        Self { store, retention }
    }

    /// How often [`spawn`](Sweeper::spawn) sweeps: a quarter of the retention, between 1 s
    /// and 1 min, so a record outlives its retention by at most that.
    pub fn interval(&self) -> Duration {
        (self.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Deletes every record created more than the retention before `now_ms`, a batch per
    /// statement, yielding between batches; returns how many went.
    pub async fn sweep(&self, now_ms: i64) -> Result<u64, sqlx::Error> {
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms.saturating_sub(retention);
        let mut swept = 0;
        loop {
            let n = store::delete_expired(&self.store, before, SWEEP_BATCH).await?;
            swept += n;
            if n < SWEEP_BATCH.unsigned_abs() {
                return Ok(swept);
            }
            // Let queued writers (orders) have the writer before the next batch.
            tokio::task::yield_now().await;
        }
    }

    /// One round: sweep, then publish the table's size (`idempotency_keys_stored`) and the
    /// count swept (`idempotency_keys_expired_total`).
    pub async fn round(&self, now_ms: i64) -> Result<u64, sqlx::Error> {
        let swept = self.sweep(now_ms).await?;
        let stored = store::key_count(&self.store).await?;
        metrics::counter!("idempotency_keys_expired_total").increment(swept);
        metrics::gauge!("idempotency_keys_stored").set(stored as f64);
        if swept > 0 {
            tracing::info!(swept, stored, "expired idempotency keys deleted");
        }
        Ok(swept)
    }

    /// Runs [`round`](Sweeper::round) every [`interval`](Sweeper::interval) until the task
    /// is aborted; a failed round (store unavailable) is logged and tried again next time.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.round(now_ms()).await {
                    tracing::warn!(error = %e, "sweeping expired idempotency keys failed; will retry");
                }
            }
        })
    }
}
