//! A caller's deadline is the caller's business: a short one is answered 504 and never counts
//! against user-service's breaker; and a full bulkhead says it is order-service's own limit.

mod support;

use std::time::Duration;

use axum::{Router, body::Body};
use http::{Method, Request, StatusCode, header};
use order_service::{DegradedMode, app, default_stack, store};
use resilience_layers::{bulkhead::BulkheadConfig, circuit_breaker::CircuitState};
use service_kit::testing::{Reply, assert_problem, call};
use support::*;

const DEADLINE_EXCEEDED: &str = "urn:resilience:deadline-exceeded";

fn order(key: &str, user_id: i64, deadline_ms: Option<u64>) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key);
    if let Some(ms) = deadline_ms {
        b = b.header("x-request-deadline-ms", ms);
    }
    b.body(Body::from(order_body(user_id, "s"))).unwrap()
}

fn assert_deadline_exceeded(r: &Reply) {
    assert_problem(r, 504);
    assert_eq!(r.body["type"], DEADLINE_EXCEEDED, "{:?}", r.body);
}

/// Every user-service breaker is closed and has recorded no failure.
fn assert_breakers_untouched(state: &order_service::AppState) {
    let circuits = state.users.circuits();
    assert!(!circuits.is_empty());
    for c in circuits {
        assert_eq!(c.state, CircuitState::Closed, "{}", c.name);
    }
    for b in state.users.snapshot().breakers {
        assert_eq!(b.failures, 0, "{b:?}");
    }
}

/// User-service with a 1 ms latency, so its fault counter counts every call that reached it.
async fn counted_users(env: &[(&str, &str)]) -> UserInstance {
    let users = UserInstance::start_with(env).await;
    users.faults.set_latency(Duration::from_millis(1));
    users
}

async fn setup(users: &UserInstance) -> (order_service::AppState, Router) {
    let state = order_state(vec![users.url()], DegradedMode::Fail).await;
    let app = app(state.clone());
    (state, app)
}

/// The attack of issue 10: fifty orders with a 1 ms deadline.
#[tokio::test]
async fn fifty_one_ms_deadlines_leave_the_breaker_closed_and_the_next_order_is_201() {
    let users = counted_users(&[]).await;
    let uid = users.user("a@x.io").await;
    let (state, app) = setup(&users).await;
    for i in 0..50 {
        let r = call(&app, order(&format!("k-{i}"), uid, Some(1))).await;
        assert_deadline_exceeded(&r);
    }
    assert_eq!(
        users.faults.snapshot().delayed_total,
        0,
        "user-service never called"
    );
    assert_breakers_untouched(&state);
    let r = call(&app, order("k-normal", uid, None)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(store::count(&state.store).await.unwrap(), 1);
}

#[tokio::test]
async fn a_deadline_below_the_minimum_is_504_before_any_user_service_call() {
    let users = counted_users(&[]).await;
    let uid = users.user("a@x.io").await;
    let (_state, app) = setup(&users).await;
    // MIN_DEADLINE_MS is 10 by default.
    let r = call(&app, order("k-9", uid, Some(9))).await;
    assert_deadline_exceeded(&r);
    assert_eq!(
        users.faults.snapshot().delayed_total,
        0,
        "refused before the lookup"
    );
    // At the minimum, the order goes through to user-service.
    let r = call(&app, order("k-ok", uid, Some(5_000))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(users.faults.snapshot().delayed_total, 1);
}

/// User-service refuses the budget order-service passes on (its minimum is higher): the 504s
/// answer the caller's deadline, so the caller gets 504 and the breaker counts nothing.
#[tokio::test]
async fn user_service_refusing_the_callers_short_budget_is_504_and_not_a_failure() {
    let users = counted_users(&[("MIN_DEADLINE_MS", "300")]).await;
    let uid = users.user("a@x.io").await;
    let (state, app) = setup(&users).await;
    for i in 0..20 {
        let r = call(&app, order(&format!("k-{i}"), uid, Some(150))).await;
        assert_deadline_exceeded(&r);
    }
    assert_breakers_untouched(&state);
    assert_eq!(
        state.users.snapshot().retries[0].retries_total,
        0,
        "never retried"
    );
    // order-service's own 1 s deadline is enough for user-service.
    let r = call(&app, order("k-normal", uid, None)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[test]
fn the_default_stack_sheds_lookups_past_the_bulkhead_at_once() {
    let bulkhead = default_stack().bulkhead.unwrap();
    assert_eq!(
        bulkhead.max_wait,
        Duration::ZERO,
        "no queue in front of the limit"
    );
}

/// Item 7 of issue 10: a full bulkhead is order-service's own limit, not user-service failing.
#[tokio::test]
async fn a_full_bulkhead_is_503_naming_order_services_own_limit() {
    let users = UserInstance::start().await;
    let uid = users.user("a@x.io").await;
    // Slow, but within fast_stack's 400 ms attempt timeout.
    users.faults.set_latency(Duration::from_millis(300));
    let mut stack = fast_stack();
    stack.bulkhead = Some(BulkheadConfig {
        max_concurrent: 1,
        ..default_stack().bulkhead.unwrap()
    });
    // Without the user cache: it would coalesce the second lookup of the same user into the
    // first (one call, no second permit asked for), which is not what this test is about.
    let state = order_state_with(
        service_kit::store::testing::sqlite(&order_service::store::MIGRATIONS).await,
        vec![users.url()],
        DegradedMode::Accept,
        Some(stack),
        None,
    );
    let app = app(state.clone());
    let first = tokio::spawn({
        let app = app.clone();
        async move { call(&app, order("k-slow", uid, None)).await }
    });
    // Wait for the first lookup to hold the only permit.
    while users.faults.snapshot().delayed_total == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = call(&app, order("k-shed", uid, None)).await;
    assert!(
        !first.is_finished(),
        "shed while the first lookup still runs"
    );
    assert_problem(&r, 503);
    assert_eq!(
        r.body["type"], "urn:resilience:bulkhead-full",
        "{:?}",
        r.body
    );
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("order-service") && detail.contains("1 concurrent"),
        "{detail}"
    );
    assert!(!detail.contains("unavailable"), "{detail}");
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    // Even in accept mode an overload is not stored as a pending order.
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    assert_eq!(store::count(&state.store).await.unwrap(), 1);
    assert_breakers_untouched(&state);
}
