//! End to end over real sockets: order-service and user-service both served on port 0 in this
//! process, user-service stopped and restarted under the order flow.
//!
//! The stack is configured with short waits (breaker opens after 3 failures in a row, waits
//! 500 ms; attempts time out after 400 ms) so the whole test takes a few seconds.

mod support;

use std::time::Duration;

use order_service::{DegradedMode, store};
use reqwest::StatusCode;
use serde_json::Value;
use service_kit::store::testing;
use support::*;
use tokio::time::Instant;

struct OrderService {
    base: String,
    state: order_service::AppState,
    client: reqwest::Client,
}

impl OrderService {
    async fn start(urls: Vec<reqwest::Url>) -> Self {
        let store = testing::sqlite(&order_service::store::MIGRATIONS).await;
        // Without the user cache (USER_CACHE=off): these tests follow every lookup to
        // user-service and its breakers; tests/user_cache.rs covers the cache in front.
        let state = order_state_with(store, urls, DegradedMode::Fail, Some(fast_stack()), None);
        Self {
            base: serve_order(state.clone()).await,
            state,
            client: reqwest::Client::new(),
        }
    }

    async fn order(
        &self,
        key: &str,
        user_id: i64,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value, Duration) {
        let started = Instant::now();
        let resp = self
            .client
            .post(format!("{}/orders", self.base))
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(order_body(user_id, "e2e"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap();
        (status, headers, body, started.elapsed())
    }

    async fn report(&self) -> Value {
        self.client
            .get(format!("{}/resilience", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn breaker_state(&self) -> (String, Option<u64>) {
        let r = self.report().await;
        let b = &r["breakers"][0];
        (
            b["state"].as_str().unwrap().to_owned(),
            b["retry_after_ms"].as_u64(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_user_service_going_away_and_coming_back() {
    let mut users = UserInstance::start().await;
    let uid = users.user("e2e@x.io").await;
    let orders = OrderService::start(vec![users.url()]).await;

    // 1. An order succeeds.
    let (status, _, first, _) = orders.order("e2e-1", uid).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "confirmed");

    // 2. A replayed key returns the same order; the store holds exactly one.
    let (status, headers, again, _) = orders.order("e2e-1", uid).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again, first);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(store::count(&orders.state.store).await.unwrap(), 1);

    // 3. user-service stops: every order is refused with 503 + Retry-After and nothing stored;
    //    once the breaker is open each answer comes well under the 400 ms attempt timeout.
    users.stop().await;
    let mut n = 0;
    loop {
        n += 1;
        let (status, headers, body, _) = orders.order(&format!("down-{n}"), uid).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(headers.contains_key("retry-after"));
        if orders.breaker_state().await.0 == "open" {
            break;
        }
        assert!(n < 10, "breaker never opened");
    }
    for i in 0..20 {
        let (status, headers, _, took) = orders.order(&format!("open-{i}"), uid).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let secs: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=1).contains(&secs), "Retry-After {secs}");
        assert!(took < Duration::from_millis(150), "answer took {took:?}");
    }
    assert_eq!(store::count(&orders.state.store).await.unwrap(), 1);

    // 4. user-service comes back: after the breaker's wait, the next order is the probe and
    //    succeeds, and so do the ones after it.
    users.restart().await;
    let (_, retry_after_ms) = orders.breaker_state().await;
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(retry_after_ms.unwrap_or(500) + 20)).await;
    let (status, _, body, _) = orders.order("back-1", uid).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        back.elapsed() < Duration::from_millis(500 + 1000),
        "took {:?}",
        back.elapsed()
    );
    assert_eq!(orders.breaker_state().await.0, "closed");
    for i in 0..5 {
        let (status, _, _, _) = orders.order(&format!("back-more-{i}"), uid).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(store::count(&orders.state.store).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_user_services_and_one_stopped_no_order_fails() {
    let mut a = UserInstance::start().await;
    // Both instances serve the same user store, as two processes on one database would.
    let b = UserInstance::start_on(a.store.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let uid = a.user("two@x.io").await;
    let orders = OrderService::start(vec![a.url(), b.url()]).await;

    for i in 0..10 {
        let (status, _, body, _) = orders.order(&format!("both-{i}"), uid).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Calls were balanced: both breakers saw traffic.
    let report = orders.report().await;
    let calls: Vec<u64> = report["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["calls"].as_u64().unwrap())
        .collect();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| *c >= 3), "round robin: {calls:?}");

    a.stop().await;
    for i in 0..40 {
        let (status, _, body, _) = orders.order(&format!("one-{i}"), uid).await;
        assert_eq!(status, StatusCode::CREATED, "order {i} failed: {body}");
    }
    // The dead instance was ejected by its own breaker; the live one stayed closed.
    let report = orders.report().await;
    let dead = format!("user-service@{}", a.addr);
    for br in report["breakers"].as_array().unwrap() {
        if br["name"] == dead.as_str() {
            assert_ne!(br["state"], "closed", "{br}");
        } else {
            assert_eq!(br["state"], "closed", "{br}");
        }
    }
    assert_eq!(store::count(&orders.state.store).await.unwrap(), 50);
}
