//! What counts as a success, a failure, or neither.
//!
//! One [`Classify`] value decides for both the circuit breaker (does this call count against
//! the failure rate?) and retry (is this call worth another attempt?), so the two can never
//! disagree about what a failure is. The answer is an [`Outcome`], not a `bool`, because some
//! results should not count at all: a cancelled request, a `404` that is the caller's
//! problem, a validation error. Those are [`Outcome::Ignored`]: they leave the breaker's
//! window untouched and free any probe slot they held.
//!
//! Closures `Fn(Result<&T, &E>) -> Outcome` are classifiers, and [`ErrorsAreFailures`] (the
//! default) treats every `Err` as a failure and every `Ok` as a success.
//!
//! ```
//! use resilience_layers::classify::{Classify, Outcome};
//!
//! // Errors whose message says "not found" are the caller's problem, not the dependency's.
//! let classifier = |result: Result<&u32, &std::io::Error>| match result {
//!     Ok(_) => Outcome::Success,
//!     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
//!     Err(_) => Outcome::Failure,
//! };
//! let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
//! assert_eq!(classifier.classify(Err(&not_found)), Outcome::Ignored);
//! assert_eq!(classifier.classify(Ok(&7)), Outcome::Success);
//! ```

/// How one call turned out, from the point of view of the dependency's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed: counts against the failure rate and may be retried.
    Failure,
    /// Says nothing about the dependency's health: not recorded, not retried.
    Ignored,
}

impl Outcome {
    /// True for [`Outcome::Failure`].
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented for closures `Fn(Result<&T, &E>) -> Outcome`; see the [module docs](self).
///
/// `E` is the error type *as the layer sees it*. Inside a
/// [`ResilienceLayer`](crate::stack::ResilienceLayer), and behind any layer of this crate,
/// errors arrive boxed: a classifier for the stack takes `Result<&Response, &BoxError>`
/// ([`BoxError`](crate::BoxError)), not the inner service's own error type, and finds that
/// with `downcast_ref`:
///
/// ```
/// use resilience_layers::{BoxError, Outcome};
///
/// let classifier = |result: Result<&u32, &BoxError>| match result {
///     Ok(_) => Outcome::Success,
///     Err(e) => match e.downcast_ref::<std::io::Error>() {
///         Some(io) if io.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
///         _ => Outcome::Failure,
///     },
/// };
/// # let _ = resilience_layers::stack::StackConfig::default().into_layer("x").unwrap().with_classifier(classifier);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify a `Result<&{T}, &{E}>`",
    label = "not a `Classify<{T}, {E}>`",
    note = "in a `ResilienceLayer`, and behind any layer of this crate, errors arrive boxed: a classifier takes `Result<&Response, &resilience_layers::BoxError>`, not the inner service's own error type",
    note = "a closure classifier is `|result: Result<&Response, &BoxError>| -> Outcome`; reach the inner error with `err.downcast_ref::<YourError>()`"
)]
pub trait Classify<T, E> {
    /// Classifies one result.
    fn classify(&self, result: Result<&T, &E>) -> Outcome;

    /// Whether another attempt could turn out differently: retry asks this, the breaker asks
    /// [`classify`](Self::classify).
    ///
    /// Only a failure is worth retrying, and by default every failure is. Override it for
    /// failures that are permanent: they count against the dependency's health but would
    /// fail the same way again (HTTP `501 Not Implemented`, for
    /// [`HttpClassifier`](crate::http::HttpClassifier)).
    ///
    /// ```
    /// use resilience_layers::classify::{Classify, ErrorsAreFailures};
    ///
    /// assert!(Classify::<(), &str>::is_retryable(&ErrorsAreFailures, Err(&"boom")));
    /// assert!(!Classify::<(), &str>::is_retryable(&ErrorsAreFailures, Ok(&())));
    /// ```
    #[inline]
    fn is_retryable(&self, result: Result<&T, &E>) -> bool {
        self.classify(result).is_failure()
    }
}

impl<F, T, E> Classify<T, E> for F
where
    F: Fn(Result<&T, &E>) -> Outcome,
{
    fn classify(&self, result: Result<&T, &E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Err` is a failure, every `Ok` a success.
///
/// ```
/// use resilience_layers::classify::{Classify, ErrorsAreFailures, Outcome};
///
/// let c = ErrorsAreFailures;
/// assert_eq!(Classify::<(), &str>::classify(&c, Err(&"boom")), Outcome::Failure);
/// assert_eq!(Classify::<(), &str>::classify(&c, Ok(&())), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<T, E> Classify<T, E> for ErrorsAreFailures {
    #[inline]
    fn classify(&self, result: Result<&T, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classifier_maps_results() {
        let c = ErrorsAreFailures;
        assert_eq!(Classify::<u8, ()>::classify(&c, Ok(&1)), Outcome::Success);
        assert_eq!(Classify::<u8, ()>::classify(&c, Err(&())), Outcome::Failure);
    }

    #[test]
    fn closures_classify_and_can_ignore() {
        let c = |r: Result<&u16, &()>| match r {
            Ok(&s) if s >= 500 => Outcome::Failure,
            Ok(&404) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        assert_eq!(c.classify(Ok(&503)), Outcome::Failure);
        assert_eq!(c.classify(Ok(&404)), Outcome::Ignored);
        assert_eq!(c.classify(Ok(&200)), Outcome::Success);
        assert!(c.classify(Err(&())).is_failure());
    }
}
