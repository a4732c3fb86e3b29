//! The user cache (issue 15): a recently verified user needs no user-service round trip, and
//! while user-service is down an order for a recently verified user is still accepted; an
//! unseen user still gets the unavailable behaviour, and a user that does not exist is never
//! cached as existing.

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use order_service::{
    DegradedMode, app,
    config::default_user_cache,
    store,
    users::{Lookup, LookupError},
};
use resilience_layers::cache::CacheConfig;
use service_kit::testing::{assert_problem, call};
use support::*;

fn order(key: &str, user_id: i64) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(order_body(user_id, "s")))
        .unwrap()
}

/// Calls the breaker of the (only) user-service instance has recorded: real round trips.
fn upstream_calls(state: &order_service::AppState) -> u64 {
    state
        .users
        .snapshot()
        .breakers
        .iter()
        .map(|b| b.calls)
        .sum()
}

#[tokio::test]
async fn a_second_order_for_the_same_user_makes_no_user_service_call() {
    let users = UserInstance::start().await;
    let uid = users.user("a@x.io").await;
    let state = order_state(vec![users.url()], DegradedMode::Fail).await;
    let app = app(state.clone());
    let first = call(&app, order("c-1", uid)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let calls = upstream_calls(&state);
    assert!(calls >= 1);
    for i in 2..5 {
        let r = call(&app, order(&format!("c-{i}"), uid)).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body["status"], "confirmed");
    }
    assert_eq!(
        upstream_calls(&state),
        calls,
        "no round trip for a cached user"
    );
    let cache = state.users.cache_snapshot().unwrap();
    assert_eq!((cache.misses_total, cache.hits_total), (1, 3));
    // And `/resilience` reports it.
    let report = call(&app, service_kit::testing::get("/resilience"))
        .await
        .body;
    assert_eq!(report["user_cache"]["hits_total"], 3, "{report}");

    // With USER_CACHE=off every order asks user-service.
    let off = order_state_with(
        service_kit::store::testing::sqlite(&store::MIGRATIONS).await,
        vec![users.url()],
        DegradedMode::Fail,
        Some(fast_stack()),
        None,
    );
    let off_app = app_of(&off);
    for i in 0..2 {
        call(&off_app, order(&format!("o-{i}"), uid)).await;
    }
    assert_eq!(upstream_calls(&off), 2);
    assert!(off.users.cache_snapshot().is_none());
}

fn app_of(state: &order_service::AppState) -> axum::Router {
    app(state.clone())
}

#[tokio::test]
async fn while_user_service_is_down_recently_verified_users_are_still_accepted() {
    let mut users = UserInstance::start().await;
    let known = users.user("known@x.io").await;
    let unseen = users.user("unseen@x.io").await;
    // Fresh for a moment only, so the answer during the outage is a stale one.
    let cache = CacheConfig {
        ttl: Duration::from_millis(1),
        stale_if_error: Duration::from_secs(3600),
        ..default_user_cache()
    };
    let state = order_state_with(
        service_kit::store::testing::sqlite(&store::MIGRATIONS).await,
        vec![users.url()],
        DegradedMode::Fail,
        Some(fast_stack()),
        Some(cache),
    );
    let app = app(state.clone());
    assert_eq!(
        call(&app, order("k-0", known)).await.status,
        StatusCode::CREATED
    );
    // A user that does not exist: 422, and not stored (asked again next time).
    assert_problem(&call(&app, order("k-nf-1", known + 1000)).await, 422);
    assert_problem(&call(&app, order("k-nf-2", known + 1000)).await, 422);
    assert_eq!(state.users.cache_snapshot().unwrap().misses_total, 3);

    users.stop().await;
    tokio::time::sleep(Duration::from_millis(5)).await; // past the 1 ms freshness
    for i in 1..4 {
        let r = call(&app, order(&format!("k-{i}"), known)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["status"], "confirmed");
    }
    assert_eq!(state.users.cache_snapshot().unwrap().stale_total, 3);
    // An unseen user, and a user known not to exist: the unavailable behaviour (503).
    let r = call(&app, order("k-unseen", unseen)).await;
    assert_problem(&r, 503);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert_problem(&call(&app, order("k-nf-3", known + 1000)).await, 503);
    // Four orders stored, each once; replaying a key stores nothing new.
    assert_eq!(store::count(&state.store).await.unwrap(), 4);
    assert_eq!(
        call(&app, order("k-1", known)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(store::count(&state.store).await.unwrap(), 4);
}

#[tokio::test]
async fn a_user_found_missing_is_never_served_stale_as_existing() {
    let mut users = UserInstance::start().await;
    let uid = users.user("gone@x.io").await;
    let cache = CacheConfig {
        ttl: Duration::from_millis(1),
        ..default_user_cache()
    };
    let state = order_state_with(
        service_kit::store::testing::sqlite(&store::MIGRATIONS).await,
        vec![users.url()],
        DegradedMode::Fail,
        Some(fast_stack()),
        Some(cache),
    );
    assert_eq!(state.users.lookup(uid, None).await, Ok(Lookup::Found));
    sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(uid)
        .execute(users.store.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(state.users.lookup(uid, None).await, Ok(Lookup::NotFound));
    // user-service goes down: the stored `Found` was dropped, so there is nothing stale.
    users.stop().await;
    assert!(matches!(
        state.users.lookup(uid, None).await,
        Err(LookupError::Unavailable(_))
    ));
    assert_eq!(state.users.cache_snapshot().unwrap().stale_total, 0);
}
