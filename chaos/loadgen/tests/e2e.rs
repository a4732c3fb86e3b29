//! The whole load generator against an in-process order/user service on port 0: a
//! correct one passes the check, one that stores an order again on a retried key fails it,
//! and orders spread over two replicas of one store pass while one replica is down for a
//! while. Real sockets and one-second runs; nothing asserts on timing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chaos_loadgen::args::Args;
use chaos_loadgen::{report, run};
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    /// Replays a key's first answer (correct) or stores it again (the bug).
    idempotent: bool,
    users: u64,
    orders: Vec<Value>,
    keys: HashMap<String, Value>,
    posts: u64,
    /// `POST /orders` answered by each front (replica).
    posts_by_front: [u64; 2],
}

type Shared = Arc<Mutex<Fake>>;

/// One replica: its index, over the store all replicas share.
#[derive(Clone)]
struct Front {
    shared: Shared,
    index: usize,
}

async fn create_user(State(s): State<Front>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut f = s.shared.lock().unwrap();
    f.users += 1;
    (
        StatusCode::CREATED,
        Json(json!({"id": f.users, "name": body["name"]})),
    )
}

async fn create_order(
    State(s): State<Front>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    let mut f = s.shared.lock().unwrap();
    f.posts += 1;
    f.posts_by_front[s.index] += 1;
    if f.idempotent
        && let Some(order) = f.keys.get(&key)
    {
        return (StatusCode::OK, Json(order.clone()));
    }
    let order = json!({
        "id": f.orders.len() + 1,
        "user_id": body["user_id"],
        "product_id": body["product_id"],
        "status": "confirmed",
    });
    f.orders.push(order.clone());
    f.keys.insert(key, order.clone());
    // Every 7th request: stored, but the answer is a 500 (the client cannot know) - it retries.
    if f.posts % 7 == 0 {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
    }
    (StatusCode::CREATED, Json(order))
}

async fn list_orders(
    State(s): State<Front>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let f = s.shared.lock().unwrap();
    let user: u64 = q["user_id"].parse().unwrap();
    let mine: Vec<Value> = f
        .orders
        .iter()
        .filter(|o| o["user_id"].as_u64() == Some(user))
        .cloned()
        .collect();
    Json(json!({"items": mine, "next_cursor": null}))
}

async fn serve(idempotent: bool) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Fake {
        idempotent,
        ..Fake::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let front = Front {
        shared: state.clone(),
        index: 0,
    };
    tokio::spawn(async move { axum::serve(listener, router(front)).await.unwrap() });
    (url, state)
}

fn router(front: Front) -> Router {
    Router::new()
        .route("/health/ready", get(|| async { Json(json!({"status": "pass"})) }))
        .route("/users", post(create_user))
        .route("/orders", post(create_order).get(list_orders))
        .route(
            "/resilience",
            get(|| async {
                Json(json!({"breakers": [{"name": "user-service", "state": "closed", "rejected_total": 0}],
                            "retries": [{"name": "user-service", "requests_total": 0, "retries_total": 0}]}))
            }),
        )
        .route("/metrics", get(|| async { "" }))
        .with_state(front)
}

fn args(url: &str) -> Args {
    Args {
        user_url: url.to_owned(),
        order_urls: vec![url.to_owned()],
        duration: Duration::from_secs(1),
        rate: 60.0,
        concurrency: 4,
        users: 3,
        heal_timeout: Duration::from_secs(10),
        progress: 0,
        ..Args::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_service_passes_and_unknown_answers_are_retried() {
    let (url, state) = serve(true).await;
    let a = args(&url);
    let out = run::run(&a).await.unwrap();
    let s = report::summarize(&a, &out, Vec::new());
    assert!(s.passed, "{}", report::table(&s));
    assert!(s.keys > 20, "a second at 60/s places dozens of orders");
    // Some answers were 500s (unknown); retrying the same key resolved every one of them.
    assert!(s.attempts.unknown > 0);
    assert_eq!(s.invariants.acked, s.keys);
    assert_eq!(s.invariants.stored, state.lock().unwrap().orders.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_stores_a_retried_key_twice_fails_the_check() {
    let (url, _state) = serve(false).await;
    let a = args(&url);
    let out = run::run(&a).await.unwrap();
    let s = report::summarize(&a, &out, Vec::new());
    assert!(!s.passed);
    assert!(s.invariants.duplicated > 0, "{}", report::table(&s));
    assert_eq!(s.invariants.acked_lost, 0);
    assert!(report::table(&s).contains("=>  FAIL"));
}

/// Two replicas over one store, the second stopped for a while mid-run (its port refuses
/// connections) and started again: keys go to both, the attempts it refused are retried on
/// the other, and every key ends acknowledged once, as `chaos/replicas.sh` expects of the
/// real services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_spread_over_two_replicas_survive_one_going_away() {
    let (url_a, state) = serve(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr_b = listener.local_addr().unwrap();
    let front_b = Front {
        shared: state.clone(),
        index: 1,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let first_b = tokio::spawn(
        axum::serve(listener, router(front_b.clone()))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    let mut a = args(&url_a);
    a.order_urls = vec![url_a.clone(), format!("http://{addr_b}")];
    a.duration = Duration::from_millis(1500);
    let load = tokio::spawn({
        let a = a.clone();
        async move { run::run(&a).await.unwrap() }
    });
    // Let the load start on both, then take b away for half a second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _ = stop_tx.send(());
    first_b.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = tokio::net::TcpListener::bind(addr_b).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router(front_b)).await.unwrap() });

    let out = load.await.unwrap();
    let s = report::summarize(&a, &out, Vec::new());
    assert!(s.passed, "{}", report::table(&s));
    assert!(s.attempts.refused > 0, "b refused while it was away");
    assert_eq!(s.invariants.acked, s.keys);
    let f = state.lock().unwrap();
    assert!(
        f.posts_by_front.iter().all(|&n| n > 0),
        "{:?}",
        f.posts_by_front
    );
    assert_eq!(s.invariants.stored, f.orders.len());
}
