//! Shared by the order-service tests: real user-service instances on loopback (port 0, or a
//! fixed port to restart on), and order-service state with short waits.
#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use order_service::{AppState, Config, DegradedMode, store::MIGRATIONS};
use reqwest::Url;
use resilience_layers::stack::StackConfig;
use service_kit::{
    config::Env,
    store::{Store, testing},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A user-service running in this process.
pub struct UserInstance {
    pub addr: SocketAddr,
    pub store: Store,
    /// The instance's fault switch.
    pub faults: resilience_layers::fault::FaultHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl UserInstance {
    /// Starts on a new port with a fresh store.
    pub async fn start() -> Self {
        let store = testing::sqlite(&user_service::store::MIGRATIONS).await;
        Self::start_on(store, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on a new port with a fresh store, configured by `env` (`MIN_DEADLINE_MS`...).
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let store = testing::sqlite(&user_service::store::MIGRATIONS).await;
        Self::start_configured(store, "127.0.0.1:0".parse().unwrap(), env).await
    }

    /// Starts over `store` (shared with other instances) on `addr`.
    pub async fn start_on(store: Store, addr: SocketAddr) -> Self {
        Self::start_configured(store, addr, &[]).await
    }

    async fn start_configured(store: Store, addr: SocketAddr, env: &[(&str, &str)]) -> Self {
        let config = user_service::Config::from_env(Env::from_pairs(env.iter().copied())).unwrap();
        let state = user_service::AppState::new(store.clone(), &config);
        let faults = state.faults.clone();
        let listener = bind_retrying(addr).await;
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let app = user_service::app(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            store,
            faults,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops it: the listener closes and every connection ends.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Starts it again on the same address and store.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start_on(self.store.clone(), self.addr).await;
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    /// Creates a user straight in the store; returns its id.
    pub async fn user(&self, email: &str) -> i64 {
        user_service::store::insert(&self.store, "Test User", email, 1)
            .await
            .unwrap()
            .unwrap()
            .id
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}");
}

/// A stack with short waits so the tests take seconds: 1 s deadline, 400 ms attempts, one
/// retry, a breaker that opens after 3 failures in a row and waits 500 ms.
pub fn fast_stack() -> StackConfig {
    toml::from_str(
        r#"
        deadline = "1s"
        attempt_timeout = "400ms"
        [bulkhead]
        max_concurrent = 32
        max_wait = "100ms"
        [retry]
        max_attempts = 2
        [retry.backoff]
        base = "10ms"
        max = "50ms"
        [circuit_breaker]
        minimum_calls = 3
        consecutive_failures = 3
        wait_in_open = "500ms"
        permitted_calls_in_half_open = 1
        [circuit_breaker.window]
        kind = "count"
        size = 10
        "#,
    )
    .unwrap()
}

/// An address nothing listens on.
pub async fn dead_url() -> Url {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    Url::parse(&format!("http://{addr}/")).unwrap()
}

/// order-service state over a fresh SQLite store.
pub async fn order_state(urls: Vec<Url>, degraded: DegradedMode) -> AppState {
    let store = testing::sqlite(&MIGRATIONS).await;
    order_state_on(store, urls, degraded, Some(fast_stack()))
}

/// order-service state over `store`.
pub fn order_state_on(
    store: Store,
    urls: Vec<Url>,
    degraded: DegradedMode,
    stack: Option<StackConfig>,
) -> AppState {
    let cache = order_service::config::default_user_cache();
    order_state_with(store, urls, degraded, stack, Some(cache))
}

/// order-service state over `store`, with `user_cache` (`None`: `USER_CACHE=off`).
pub fn order_state_with(
    store: Store,
    urls: Vec<Url>,
    degraded: DegradedMode,
    stack: Option<StackConfig>,
    user_cache: Option<resilience_layers::cache::CacheConfig>,
) -> AppState {
    let mut config = Config::from_env(Env::from_pairs([("BODY_LIMIT_BYTES", "1024")])).unwrap();
    config.user_service_urls = urls;
    config.degraded = degraded;
    config.stack = stack;
    config.user_cache = user_cache;
    AppState::new(store, &config).unwrap()
}

/// Serves `state`'s router on a new loopback port; returns its base URL (`http://127.0.0.1:N`).
pub async fn serve_order(state: AppState) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = order_service::app(state);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// A `POST /orders` body.
pub fn order_body(user_id: i64, product: &str) -> String {
    format!(r#"{{"user_id":{user_id},"product_id":"{product}","quantity":2,"price":9.5}}"#)
}

/// The same database as `store`, connected again with every migration: its own pool, as
/// another process (a second replica) would have.
pub async fn reopen(store: &service_kit::store::Store) -> service_kit::store::Store {
    let url = match store.backend() {
        service_kit::store::Backend::Sqlite => {
            let row = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(store.pool())
                .await
                .unwrap();
            let file: String = sqlx::Row::try_get(&row, 0).unwrap();
            format!("sqlite://{file}")
        }
        service_kit::store::Backend::Postgres => {
            let row = sqlx::query("SELECT current_schema()::text")
                .fetch_one(store.pool())
                .await
                .unwrap();
            let schema: String = sqlx::Row::try_get(&row, 0).unwrap();
            let base = std::env::var("TEST_DATABASE_URL").unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
    };
    service_kit::store::Store::connect(&url, &MIGRATIONS)
        .await
        .unwrap()
}
