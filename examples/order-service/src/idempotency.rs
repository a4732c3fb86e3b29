//! Keys being handled right now, so a repeat that arrives while the first request is still
//! verifying the user gets 409 instead of a second lookup racing the first.
//!
//! This is only the fast path for one process; the store's unique key is what guarantees one
//! order per key across processes and restarts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

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
    keys: Mutex<HashMap<String, String>>,
}

/// Releases the key when dropped (on success, error, panic or a cancelled request alike).
#[derive(Debug)]
pub struct Guard {
    owner: Arc<InFlight>,
    key: String,
}

impl InFlight {
    /// Claims `key` for a request with `fingerprint`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use order_service::idempotency::{Busy, InFlight};
    ///
    /// let keys = Arc::new(InFlight::default());
    /// let guard = keys.begin("k1", "body-a").unwrap();
    /// assert_eq!(keys.begin("k1", "body-a").unwrap_err(), Busy::SameRequest);
    /// assert_eq!(keys.begin("k1", "body-b").unwrap_err(), Busy::DifferentRequest);
    /// drop(guard);
    /// assert!(keys.begin("k1", "body-b").is_ok());
    /// ```
    pub fn begin(self: &Arc<Self>, key: &str, fingerprint: &str) -> Result<Guard, Busy> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = keys.get(key) {
            return Err(if existing == fingerprint {
                Busy::SameRequest
            } else {
                Busy::DifferentRequest
            });
        }
        keys.insert(key.to_owned(), fingerprint.to_owned());
        Ok(Guard {
            owner: Arc::clone(self),
            key: key.to_owned(),
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
