//! Tower layers that keep a service standing when its dependencies do not.
//!
//! (crate docs with one complete example: written once the layers exist)
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bulkhead;
pub mod circuit_breaker;
pub mod classify;
pub mod config;
pub mod error;
pub mod fault;
pub mod retry;
pub mod stack;
pub mod timeout;
#[cfg(feature = "http")]
pub mod http;

pub use classify::{Classify, ErrorsAreFailures, Outcome};
pub use config::ConfigError;
pub use error::{BoxError, Error};
