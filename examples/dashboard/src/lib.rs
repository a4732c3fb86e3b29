//! A live dashboard for the example services: one embedded page and a feed.
//!
//! The server polls the configured services about once a second
//! ([`poll::Poller`]), serialises what it saw once, and pushes that document to
//! every open page over server-sent events (`GET /events`). The page (HTML, CSS
//! and JS compiled into the binary, no CDN) draws it. `GET /api/state` returns
//! the same document for scripts.
//!
//! Only the configured addresses are polled: no URL from a request is ever
//! fetched, so the dashboard cannot be turned into a proxy. It answers only
//! to its own host names ([`host`], against DNS rebinding), and serves
//! `/health/live`, `/metrics` and its 404/405 problems through the same
//! [`service_kit::finish`] as the services.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use dashboard::{AppState, Config, app};
//!
//! let config = Config::from_env()?;
//! let (state, _poller) = AppState::polling(&config);
//! let listener = tokio::net::TcpListener::bind(config.addr).await?;
//! // The binary serves through `service_kit::serve::serve` (timeouts, connection cap, drain).
//! axum::serve(listener, app(state)).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod host;
pub mod poll;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::watch;

pub use host::AllowedHosts;
pub use poll::{Poller, ServiceConfig, Snapshot};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Everything the dashboard reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`DASHBOARD_ADDR`, default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// Services to poll: every `USER_SERVICE_URLS` entry, then every order-service replica in
    /// `ORDER_SERVICE_URLS` (comma-separated; else the one `ORDER_SERVICE_URL`).
    pub services: Vec<ServiceConfig>,
    /// Time between polls (`DASHBOARD_POLL_MS`, default 1000).
    pub interval: Duration,
    /// The `Host` values answered (`DASHBOARD_ALLOWED_HOSTS`, comma-separated `name` or
    /// `name:port`; default the bind address, `localhost` and `127.0.0.1` on its port).
    pub allowed_hosts: AllowedHosts,
}

impl Config {
    /// Reads the configuration from environment variables, with loopback defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Config::from_env`], reading variables through `var` (for tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let addr = var("DASHBOARD_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
            .parse()?;
        let users = var("USER_SERVICE_URLS").unwrap_or_else(|| "http://127.0.0.1:5001".into());
        let users: Vec<&str> = users
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let mut services = Vec::new();
        for (i, url) in users.iter().enumerate() {
            let name = if users.len() == 1 {
                "user-service".to_owned()
            } else {
                format!("user-service-{}", i + 1)
            };
            services.push(ServiceConfig::new(name, check_url(url)?));
        }
        let orders = var("ORDER_SERVICE_URLS")
            .or_else(|| var("ORDER_SERVICE_URL"))
            .unwrap_or_else(|| "http://127.0.0.1:5002".into());
        let orders = orders.split(',').map(str::trim).filter(|u| !u.is_empty());
        for (i, url) in orders.enumerate() {
            // The names run.sh gives the replicas: order-service, order-service-2, ...
            let name = match i {
                0 => "order-service".to_owned(),
                _ => format!("order-service-{}", i + 1),
            };
            services.push(ServiceConfig::new(name, check_url(url)?));
        }
        let interval = match var("DASHBOARD_POLL_MS") {
            Some(ms) => Duration::from_millis(ms.parse::<u64>()?.max(100)),
            None => Duration::from_secs(1),
        };
        let allowed_hosts = match var("DASHBOARD_ALLOWED_HOSTS") {
            Some(list) => AllowedHosts::parse(&list)
                .map_err(|e| anyhow::anyhow!("DASHBOARD_ALLOWED_HOSTS: {e}"))?,
            None => AllowedHosts::for_addr(addr),
        };
        Ok(Config {
            addr,
            services,
            interval,
            allowed_hosts,
        })
    }
}

fn check_url(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url)?;
    anyhow::ensure!(
        parsed.scheme() == "http" && parsed.host().is_some(),
        "service URL must be http://host:port, got {url}"
    );
    Ok(url.to_owned())
}

/// Shared by every handler: the latest feed document.
#[derive(Debug, Clone)]
pub struct AppState {
    feed: watch::Receiver<Arc<str>>,
    allowed_hosts: Arc<AllowedHosts>,
}

impl AppState {
    /// State that serves whatever is sent on `feed` (tests drive it by hand), answering to
    /// the default hosts of `127.0.0.1:8080`.
    pub fn new(feed: watch::Receiver<Arc<str>>) -> Self {
        let default = SocketAddr::from(([127, 0, 0, 1], 8080));
        AppState {
            feed,
            allowed_hosts: Arc::new(AllowedHosts::for_addr(default)),
        }
    }

    /// The same state answering to `hosts` instead.
    #[must_use]
    pub fn with_allowed_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.allowed_hosts = Arc::new(hosts);
        self
    }

    /// State fed by a background task polling `config.services` every `config.interval`.
    pub fn polling(config: &Config) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(encode(&Snapshot::default()));
        let mut poller = Poller::new(
            config.services.clone(),
            config.interval.mul_f32(0.8).max(Duration::from_millis(200)),
        );
        let interval = config.interval;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let snapshot = poller.poll().await;
                tx.send_replace(encode(&snapshot));
            }
        });
        (
            AppState::new(rx).with_allowed_hosts(config.allowed_hosts.clone()),
            task,
        )
    }
}

/// Serialises a snapshot once per tick; every page gets the same bytes.
pub fn encode(snapshot: &Snapshot) -> Arc<str> {
    serde_json::to_string(snapshot)
        .expect("snapshots always serialise")
        .into()
}

/// Largest request body: the dashboard takes none.
const BODY_LIMIT: usize = 16 * 1024;

/// The dashboard's routes: `/`, its assets, `/events`, `/api/state`, `/health/ready`, and
/// what [`service_kit::finish`] adds (`/health/live`, `/metrics`, problems, request
/// context); all behind the [`host`] check, so a request for another host gets nothing else.
pub fn app(state: AppState) -> Router {
    let hosts = state.allowed_hosts.clone();
    let routes = Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/events", get(events))
        .route("/api/state", get(api_state))
        .route("/health/ready", get(health))
        .with_state(state);
    service_kit::finish(routes, BODY_LIMIT).layer(axum::middleware::from_fn_with_state(
        hosts,
        host::check_host,
    ))
}

/// The page may only load its own assets and talk to its own origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn api_state(State(state): State<AppState>) -> Response {
    let body = state.feed.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((state.feed, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let doc = rx.borrow_and_update().clone();
        let event = Event::default().event("snapshot").data(&*doc);
        Some((Ok(event), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/health+json")],
        r#"{"status":"pass"}"#,
    )
}
