//! Load generator and order checker for chaos runs.
//!
//! `chaos-loadgen` creates a few users, then places orders against
//! order-service at a bounded rate, for a bounded time and a bounded count,
//! each order with its own `Idempotency-Key`, spread over every order-service replica given
//! (each retry of a key goes to the next replica, so replicas must share idempotency through
//! their store). Every attempt is recorded as
//! *ok* (an order id came back), *failed* (a definite answer: a 4xx or a 503,
//! or a connection that was refused so nothing was sent) or *unknown* (a
//! timeout, a reset connection, a 5xx that does not say whether the order was
//! stored). Unknown attempts are retried with the same key: the service must
//! replay its answer rather than store the order twice.
//!
//! After the run it heals the system (waits for every `/health/ready`),
//! resolves the remaining unknown keys by sending them again, reads every
//! order back per user and checks four invariants, which must all be zero:
//! acknowledged orders lost, orders duplicated, orders stored that nobody
//! attempted, and orders stored although their only answers were definite
//! failures. [`check`] is that pure check; [`figures`] turns the attempt log and
//! the chaos script's event log into the figures table.
#![deny(missing_docs)]

pub mod args;
pub mod check;
pub mod figures;
pub mod model;
pub mod report;
pub mod run;
