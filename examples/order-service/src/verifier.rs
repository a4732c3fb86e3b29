//! Settles `pending` orders (accepted in degraded mode) once user-service answers again.
//!
//! Every `PENDING_RECHECK_MS` it looks for pending orders and asks about each user in turn:
//! found -> `confirmed`, not found -> `rejected`, no answer -> stop and try next round.
//! The lookups go through the same client, so while a circuit is open a round costs one
//! immediate rejection, and the first round after the breaker's wait is its probe.

use std::time::Duration;

use tokio::task::JoinHandle;

use service_kit::store::now_ms;

use crate::{AppState, OrderStatus, store, users::Lookup};

/// Orders looked at per round.
const BATCH: i64 = 50;

/// One round; returns how many orders were settled.
pub async fn verify_pending_once(state: &AppState) -> Result<usize, sqlx::Error> {
    let pending = store::pending(&state.store, BATCH).await?;
    let mut settled = 0;
    for order in pending {
        let status = match state.users.lookup(order.user_id, None).await {
            Ok(Lookup::Found) => OrderStatus::Confirmed,
            Ok(Lookup::NotFound) => OrderStatus::Rejected,
            Err(e) => {
                tracing::debug!(reason = %e, "user-service gave no answer; pending orders wait");
                break;
            }
        };
        if store::settle(&state.store, order.id, status, now_ms()).await? {
            settled += 1;
            metrics::counter!("orders_settled_total", "status" => status.as_str()).increment(1);
            tracing::info!(
                order_id = order.id,
                user_id = order.user_id,
                status = status.as_str(),
                "pending order settled"
            );
        }
    }
    Ok(settled)
}

/// Runs [`verify_pending_once`] every `every` until the task is aborted.
pub fn spawn(state: AppState, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = verify_pending_once(&state).await {
                tracing::warn!(error = %e, "verifying pending orders failed; will retry");
            }
        }
    })
}
