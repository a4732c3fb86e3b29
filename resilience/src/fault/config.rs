use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::{FaultHandle, handle::error_threshold};
use crate::config::ConfigError;

/// The faults a stack starts with: the `[fault]` section of a
/// [`StackConfig`](crate::stack::StackConfig). Both can be changed while running through the
/// stack's [`FaultHandle`] (`ResilienceLayer::fault`).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::fault::FaultConfig;
///
/// let config: FaultConfig = toml::from_str("latency = \"50ms\"\nerror_rate = 0.1").unwrap();
/// assert_eq!(config.latency, Duration::from_millis(50));
/// let handle = config.into_handle("users").unwrap();
/// assert_eq!(handle.name(), "users");
/// assert_eq!(handle.error_rate(), 0.1);
/// let bad: FaultConfig = toml::from_str("error_rate = 1.5").unwrap();
/// assert_eq!(bad.validate().unwrap_err().field(), "error_rate");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Latency added to every call (default none).
    #[serde(with = "crate::config::duration")]
    pub latency: Duration,
    /// The fraction of calls failed with [`InjectedFault`](super::InjectedFault), 0 to 1
    /// (default 0).
    pub error_rate: f64,
}

impl FaultConfig {
    /// Checks the error rate is a fraction; the error names `error_rate`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        error_threshold(self.error_rate).map(drop)
    }

    /// A handle named `name`, set to these faults.
    pub fn into_handle(&self, name: impl Into<Arc<str>>) -> Result<FaultHandle, ConfigError> {
        let handle = FaultHandle::new(name);
        handle.set_error_rate(self.error_rate)?;
        handle.set_latency(self.latency);
        Ok(handle)
    }
}
