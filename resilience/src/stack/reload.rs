//! Replacing the configuration of a running stack.

use super::{ResilienceLayer, StackConfig};
use crate::{
    bulkhead::BulkheadHandle,
    circuit_breaker::CircuitBreakerHandle,
    config::{ConfigError, ConfigProblem},
    fault::FaultConfig,
    retry::RetryHandle,
    timeout::{AttemptTimeoutLayer, DeadlineLayer},
};

impl<C, A, R> ResilienceLayer<C, A, R> {
    /// The configuration in force: the one the layer was built from, with every
    /// [`reconfigure`](Self::reconfigure) since applied.
    pub fn config(&self) -> StackConfig {
        StackConfig {
            cache: self.cache.clone(),
            rate_limit: self.rate_limit().map(|h| h.config().clone()),
            fallback: self.fallback().map(|h| h.config().clone()),
            bulkhead: self.bulkhead().as_ref().map(BulkheadHandle::config),
            deadline: self.deadline.as_ref().map(DeadlineLayer::budget),
            retry: self.retry().as_ref().map(RetryHandle::config),
            hedge: self.hedge().map(|h| h.config().clone()),
            circuit_breaker: self
                .circuit_breaker()
                .as_ref()
                .map(CircuitBreakerHandle::config),
            attempt_timeout: self
                .attempt_timeout
                .as_ref()
                .map(AttemptTimeoutLayer::timeout),
            fault: self.fault().map(|h| FaultConfig {
                latency: h.latency(),
                error_rate: h.error_rate(),
            }),
        }
    }

    /// Replaces the configuration of the running stack without losing its state: the
    /// services already built from this layer (and their clones) follow at once.
    ///
    /// `config` is [validated](StackConfig::validate) as a whole first, with the same
    /// field-path errors as when building (`retry.max_attempts`,
    /// `circuit_breaker.window.size`), and then checked against what can change while
    /// running: a piece cannot be added or removed, and `rate_limit`, `fallback`, `deadline` and
    /// `attempt_timeout` cannot change (each error names the field, and says to restart). If anything is
    /// refused, nothing is applied. Otherwise each piece takes its new settings as its
    /// handle's `reconfigure` describes: the breaker keeps its state and window
    /// ([`CircuitBreakerHandle::reconfigure`]), the bulkhead honours permits in use
    /// ([`BulkheadHandle::reconfigure`]), the retry keeps its budget unless the budget's
    /// settings changed ([`RetryHandle::reconfigure`]).
    ///
    /// ```
    /// use resilience_layers::stack::StackConfig;
    ///
    /// let config: StackConfig = toml::from_str("[bulkhead]\nmax_concurrent = 8").unwrap();
    /// let layer = config.into_layer("users").unwrap();
    ///
    /// let wider: StackConfig = toml::from_str("[bulkhead]\nmax_concurrent = 16").unwrap();
    /// layer.reconfigure(wider.clone()).unwrap();
    /// assert_eq!(layer.bulkhead().unwrap().snapshot().max_concurrent, 16);
    ///
    /// let bad: StackConfig = toml::from_str("[bulkhead]\nmax_concurrent = 0").unwrap();
    /// assert_eq!(layer.reconfigure(bad).unwrap_err().field(), "bulkhead.max_concurrent");
    /// let more: StackConfig = toml::from_str("deadline = \"1s\"\n[bulkhead]\nmax_concurrent = 8").unwrap();
    /// assert_eq!(layer.reconfigure(more).unwrap_err().field(), "deadline");
    /// assert_eq!(layer.config(), wider); // neither was applied
    /// ```
    pub fn reconfigure(&self, config: StackConfig) -> Result<(), ConfigError> {
        config.validate()?;
        check_live_change(&self.config(), &config)?;
        if let (Some(handle), Some(c)) = (self.bulkhead(), config.bulkhead) {
            handle.reconfigure(c).map_err(|e| e.within("bulkhead"))?;
        }
        if let (Some(handle), Some(c)) = (self.retry(), config.retry) {
            handle.reconfigure(c).map_err(|e| e.within("retry"))?;
        }
        if let (Some(handle), Some(c)) = (self.circuit_breaker(), config.circuit_breaker) {
            handle
                .reconfigure(c)
                .map_err(|e| e.within("circuit_breaker"))?;
        }
        if let (Some(handle), Some(c)) = (self.fault(), config.fault) {
            // Validated above, so setting the rate cannot fail.
            handle
                .set_error_rate(c.error_rate)
                .map_err(|e| e.within("fault"))?;
            handle.set_latency(c.latency);
        }
        Ok(())
    }
}

/// Refuses a change from `running` to `new` that a running stack cannot make: a piece
/// added or removed, or a new `deadline` or `attempt_timeout` (their services hold the
/// duration). Both configs must be valid.
pub(crate) fn check_live_change(
    running: &StackConfig,
    new: &StackConfig,
) -> Result<(), ConfigError> {
    let restart = |field: &'static str, what: &'static str| {
        Err(ConfigError::new(
            field,
            ConfigProblem::Invalid(format!("{what} while running; restart to apply it").into()),
        ))
    };
    let pieces = [
        ("cache", running.cache.is_some(), new.cache.is_some()),
        (
            "fallback",
            running.fallback.is_some(),
            new.fallback.is_some(),
        ),
        (
            "rate_limit",
            running.rate_limit.is_some(),
            new.rate_limit.is_some(),
        ),
        (
            "bulkhead",
            running.bulkhead.is_some(),
            new.bulkhead.is_some(),
        ),
        ("retry", running.retry.is_some(), new.retry.is_some()),
        ("hedge", running.hedge.is_some(), new.hedge.is_some()),
        (
            "circuit_breaker",
            running.circuit_breaker.is_some(),
            new.circuit_breaker.is_some(),
        ),
        (
            "deadline",
            running.deadline.is_some(),
            new.deadline.is_some(),
        ),
        (
            "attempt_timeout",
            running.attempt_timeout.is_some(),
            new.attempt_timeout.is_some(),
        ),
        ("fault", running.fault.is_some(), new.fault.is_some()),
    ];
    for (field, was, is) in pieces {
        match (was, is) {
            (false, true) => return restart(field, "cannot be added"),
            (true, false) => return restart(field, "cannot be removed"),
            _ => {}
        }
    }
    if running.cache != new.cache {
        return restart("cache", "cannot change");
    }
    if running.fallback != new.fallback {
        return restart("fallback", "cannot change");
    }
    if running.rate_limit != new.rate_limit {
        return restart("rate_limit", "cannot change");
    }
    if running.hedge != new.hedge {
        return restart("hedge", "cannot change");
    }
    if running.hedge.is_some()
        && running.retry.as_ref().map(|r| r.budget) != new.retry.as_ref().map(|r| r.budget)
    {
        // The hedge holds the budget it was built with: a new one would split the two.
        return restart("retry.budget", "cannot change with a hedge");
    }
    if running.deadline != new.deadline {
        return restart("deadline", "cannot change");
    }
    if running.attempt_timeout != new.attempt_timeout {
        return restart("attempt_timeout", "cannot change");
    }
    Ok(())
}
