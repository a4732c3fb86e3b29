//! Tower layers that keep a service standing when its dependencies do not.
//!
//! (crate docs with one complete example: written once the layers exist)
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
pub mod config;
pub mod error;

pub use classify::{Classify, ErrorsAreFailures, Outcome};
pub use config::ConfigError;
pub use error::{BoxError, Error};
