//! The counts every clone of one fallback shares.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use metrics::Counter;
use serde::{Deserialize, Serialize};

use super::{FallbackConfig, FallbackOutcome, config::OutcomeSet};
use crate::{config::ConfigError, error::BoxError};

/// A cloneable handle on one fallback: its name and a [`snapshot`](Self::snapshot).
///
/// ```
/// use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault};
///
/// let layer = FallbackLayer::new("prices", FallbackConfig::on([FallbackOutcome::Timeout]), |_: Fault<u32>| 0).unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.name(), "prices");
/// assert_eq!(handle.snapshot().served_total, 0);
/// ```
#[derive(Debug, Clone)]
pub struct FallbackHandle {
    pub(super) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Shared {
    name: Arc<str>,
    config: FallbackConfig,
    pub(super) on: OutcomeSet,
    served: [AtomicU64; 7],
    counters: [Counter; 7],
}

/// A fallback's figures, for dashboards and `GET /resilience`.
///
/// ```
/// use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault};
///
/// let config = FallbackConfig::on([FallbackOutcome::CircuitOpen]);
/// let snapshot = FallbackLayer::new("prices", config, |_: Fault<u32>| 0).unwrap().handle().snapshot();
/// assert_eq!(
///     serde_json::to_value(&snapshot).unwrap(),
///     serde_json::json!({"name": "prices", "on": ["circuit_open"], "served_total": 0, "served": {}}),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackSnapshot {
    /// The fallback's name.
    pub name: String,
    /// The outcomes it answers.
    pub on: Vec<String>,
    /// Answers served by the fallback since it was built.
    pub served_total: u64,
    /// Answers served, per outcome (outcomes never served are left out).
    pub served: std::collections::BTreeMap<String, u64>,
}

impl FallbackHandle {
    pub(super) fn new(
        name: impl Into<Arc<str>>,
        config: FallbackConfig,
    ) -> Result<Self, ConfigError> {
        let on = config.outcomes()?;
        let name = name.into();
        // HELP text, once per fallback built (off the hot path; describing again is harmless).
        metrics::describe_counter!(
            "resilience_fallback_total",
            "Answers a fallback served instead of an error, by fallback name and outcome."
        );
        let counters = FallbackOutcome::ALL.map(|o| {
            metrics::counter!(
                "resilience_fallback_total",
                "name" => name.to_string(),
                "outcome" => o.as_str(),
            )
        });
        Ok(Self {
            shared: Arc::new(Shared {
                name,
                config,
                on,
                served: Default::default(),
                counters,
            }),
        })
    }

    /// The fallback's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &FallbackConfig {
        &self.shared.config
    }

    /// True when `outcome` is one the fallback answers.
    pub fn answers(&self, outcome: FallbackOutcome) -> bool {
        self.shared.on.contains(outcome)
    }

    /// Answers served since the fallback was built, for `outcome`.
    pub fn served(&self, outcome: FallbackOutcome) -> u64 {
        self.shared.served[outcome.index()].load(Ordering::Relaxed)
    }

    /// The figures now.
    pub fn snapshot(&self) -> FallbackSnapshot {
        let served: std::collections::BTreeMap<String, u64> = FallbackOutcome::ALL
            .iter()
            .map(|&o| (o.as_str().to_owned(), self.served(o)))
            .filter(|(_, n)| *n > 0)
            .collect();
        FallbackSnapshot {
            name: self.shared.name.to_string(),
            on: self.shared.config.on.clone(),
            served_total: served.values().sum(),
            served,
        }
    }

    /// Marks every metric series as updated, for keyed layers' idle sweeps.
    pub(crate) fn touch_metrics(&self) {
        for c in &self.shared.counters {
            c.increment(0);
        }
    }
}

impl Shared {
    /// Counts one answer served for `outcome`, with its event.
    pub(super) fn served(&self, outcome: FallbackOutcome, cause: Option<&BoxError>) {
        self.served[outcome.index()].fetch_add(1, Ordering::Relaxed);
        self.counters[outcome.index()].increment(1);
        tracing::debug!(
            target: "resilience",
            fallback = %self.name,
            outcome = outcome.as_str(),
            error = cause.map(tracing::field::display),
            "answered by the fallback"
        );
    }
}
