//! Guarding the admin routes (fault injection) with a bearer token from the environment.
//!
//! With no `ADMIN_TOKEN` configured the admin routes answer 404 as if they did not exist, so
//! a default deployment exposes no way to inject faults.
//!
//! Guessing is slowed per client ([`FailedAuths`]): after [`MAX_FAILURES`] wrong tokens within
//! [`FAILURE_WINDOW`], a client gets 429 with `Retry-After` until the window ends, whatever
//! token it sends, so a locked-out guesser learns nothing from its guesses. Successes are
//! never limited and never counted. The price: clients that share an address share a
//! window, so on loopback a guesser also locks the operator out for up to ten seconds.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, header};
use tokio::time::Instant;

use crate::problem::Problem;

/// Wrong tokens a client may send within [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES: u32 = 5;
/// The window [`MAX_FAILURES`] is counted over, from a client's first failure in it.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// Clients whose failures are tracked one by one; past that, and for a request without a
/// peer address, failures count in one window shared by all such clients.
pub const TRACKED_CLIENTS: usize = 1024;

/// Checks `Authorization: Bearer <token>` against the configured token.
///
/// ```
/// use http::HeaderMap;
/// use service_kit::admin::authorize;
///
/// let mut h = HeaderMap::new();
/// assert_eq!(authorize(&h, None).unwrap_err().status(), 404);
/// assert_eq!(authorize(&h, Some("s3cret-token")).unwrap_err().status(), 401);
/// h.insert("authorization", "Bearer s3cret-token".parse().unwrap());
/// assert!(authorize(&h, Some("s3cret-token")).is_ok());
/// ```
pub fn authorize(headers: &HeaderMap, token: Option<&str>) -> Result<(), Response> {
    let Some(expected) = token else {
        return Err(
            Problem::not_found("admin routes are disabled (no ADMIN_TOKEN configured)")
                .into_response(),
        );
    };
    if carries_token(headers, expected) {
        return Ok(());
    }
    let mut resp =
        Problem::unauthorized("a valid `Authorization: Bearer <ADMIN_TOKEN>` is required")
            .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(resp)
}

/// Whether `headers` carry `Authorization: Bearer <expected>`: [`authorize`]'s check, without
/// building the refusal, for callers that only honour something when it holds.
pub(crate) fn carries_token(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
}

/// What [`require_token`] needs: the configured token and the failed attempts so far.
/// Clones share the failures.
///
/// ```
/// use axum::{Router, middleware, routing::get};
/// use service_kit::admin::{AdminGuard, require_token};
///
/// let guard = AdminGuard::new(Some("s3cret-token".into()));
/// let admin: Router = Router::new().route(
///     "/admin/switch",
///     get(|| async { "on" }).route_layer(middleware::from_fn_with_state(guard, require_token)),
/// );
/// ```
#[derive(Clone)]
pub struct AdminGuard {
    token: Option<Arc<str>>,
    failures: Arc<FailedAuths>,
}

impl AdminGuard {
    /// A guard for `token` (`None`: admin routes disabled) with no failures recorded.
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.map(Arc::from),
            failures: Arc::default(),
        }
    }
}

/// Never prints the token.
impl std::fmt::Debug for AdminGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminGuard")
            .field("enabled", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// Middleware guarding admin routes with [`authorize`], limited per client as the module
/// describes. It runs before the handler's extractors, so a caller without the token learns
/// nothing from how a body would have been parsed. Add it with `route_layer`, so a wrong
/// method is still 405.
///
/// The client is the peer address from [`ConnectInfo<SocketAddr>`] (serve with
/// [`crate::serve::serve`], which inserts it into every request); without it (a router called with
/// `oneshot`) every request counts as the same unknown client.
pub async fn require_token(State(guard): State<AdminGuard>, req: Request, next: Next) -> Response {
    // With no token configured every request is the same 404: nothing to guess or count.
    let limited = guard.token.is_some();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| client_key(peer.ip()));
    let now = Instant::now();
    if let Some(wait) = guard.failures.locked_for(client, now).filter(|_| limited) {
        return Problem::too_many_requests(
            "too many failed admin authentications from this client; retry later",
            wait,
        )
        .into_response();
    }
    match authorize(req.headers(), guard.token.as_deref()) {
        Ok(()) => next.run(req).await,
        Err(refused) => {
            if limited {
                guard.failures.record_failure(client, now);
            }
            refused
        }
    }
}

/// The address failures are counted under: IPv4 as it is, IPv6 by its /64 (one host can
/// hold a whole /64, so counting single addresses would not limit it).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Failed admin authentications per client, in a table of at most [`TRACKED_CLIENTS`]
/// entries (a client's entry goes once its window is over and the table needs room).
///
/// Only admin requests touch it, and the lock is held for a lookup, never across an
/// `.await`, so a plain mutex is enough and the business routes never see it.
#[derive(Debug, Default)]
pub struct FailedAuths {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    clients: HashMap<IpAddr, Window>,
    /// Unknown peers, and clients that found the table full of live windows.
    shared: Option<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.start) < FAILURE_WINDOW
    }
}

impl Table {
    /// The window `client` counts in: its own, or the shared one for an unknown peer and
    /// when the table is full of live windows. A client with no window yet gets one only
    /// when `insert` (a failure); a lookup leaves the table as it is.
    fn window(
        &mut self,
        client: Option<IpAddr>,
        now: Instant,
        insert: bool,
    ) -> Option<&mut Window> {
        let fresh = Window {
            start: now,
            failures: 0,
        };
        let Some(ip) = client else {
            return Some(self.shared.get_or_insert(fresh));
        };
        if !self.clients.contains_key(&ip) && self.clients.len() >= TRACKED_CLIENTS {
            self.clients.retain(|_, w| w.live(now));
            if self.clients.len() >= TRACKED_CLIENTS {
                return Some(self.shared.get_or_insert(fresh));
            }
        }
        if insert {
            Some(self.clients.entry(ip).or_insert(fresh))
        } else {
            self.clients.get_mut(&ip)
        }
    }
}

impl FailedAuths {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `client` must still wait, when it has used up its failures.
    fn locked_for(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let mut table = self.table();
        let w = table.window(client, now, false)?;
        (w.live(now) && w.failures >= MAX_FAILURES)
            .then(|| FAILURE_WINDOW.saturating_sub(now.duration_since(w.start)))
    }

    /// Counts one failure of `client`, in a new window when its last one is over.
    fn record_failure(&self, client: Option<IpAddr>, now: Instant) {
        let mut table = self.table();
        if let Some(w) = table.window(client, now, true) {
            if !w.live(now) {
                *w = Window {
                    start: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// Clients tracked one by one now (at most [`TRACKED_CLIENTS`]).
    pub fn tracked(&self) -> usize {
        self.table().clients.len()
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use axum::{Router, extract::ConnectInfo, middleware, routing::get};
    use http::{Request, StatusCode};

    use super::*;
    use crate::testing::call;

    const TOKEN: &str = "s3cret-token";

    fn guarded() -> Router {
        Router::new().route(
            "/admin",
            get(|| async { "ok" }).route_layer(middleware::from_fn_with_state(
                AdminGuard::new(Some(TOKEN.to_owned())),
                require_token,
            )),
        )
    }

    fn attempt(token: &str, peer: Option<[u8; 4]>) -> Request<axum::body::Body> {
        let mut req = Request::get("/admin")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        if let Some(ip) = peer {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        }
        req
    }

    /// Five wrong guesses in ten seconds, then 429 with `Retry-After` for the rest of the
    /// window, right token or not (a locked-out client learns nothing from its guesses);
    /// the window over, the right token works again.
    #[tokio::test(start_paused = true)]
    async fn failed_authentications_are_limited_per_client() {
        let app = guarded();
        let me = Some([127, 0, 0, 1]);
        for _ in 0..5 {
            assert_eq!(
                call(&app, attempt("guess", me)).await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        for token in ["guess", TOKEN] {
            let r = call(&app, attempt(token, me)).await;
            crate::testing::assert_problem(&r, 429);
            assert_eq!(r.headers[header::RETRY_AFTER], "7");
        }
        // Another client is not held up by this one.
        let other = Some([127, 0, 0, 2]);
        assert_eq!(
            call(&app, attempt("guess", other)).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, attempt(TOKEN, other)).await.status,
            StatusCode::OK
        );

        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(call(&app, attempt(TOKEN, me)).await.status, StatusCode::OK);
        assert_eq!(
            call(&app, attempt("guess", me)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    /// Successes are never limited and never count; without a peer address (no
    /// `ConnectInfo`, as under `oneshot`) failures still count, in one shared bucket.
    #[tokio::test(start_paused = true)]
    async fn successes_do_not_count_and_an_unknown_peer_is_still_limited() {
        let app = guarded();
        for _ in 0..50 {
            assert_eq!(
                call(&app, attempt(TOKEN, None)).await.status,
                StatusCode::OK
            );
        }
        for _ in 0..5 {
            assert_eq!(
                call(&app, attempt("guess", None)).await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            call(&app, attempt("guess", None)).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    /// The table never holds more than its size: clients past it share one window (so
    /// rotating addresses buys no extra guesses), and a full table of finished windows
    /// makes room for new clients.
    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_overflow_is_still_limited() {
        let failures = FailedAuths::default();
        let ip = |i: usize| Some(IpAddr::from(u32::try_from(i).unwrap().to_be_bytes()));
        let now = Instant::now();
        for i in 0..TRACKED_CLIENTS {
            failures.record_failure(ip(i), now);
        }
        assert_eq!(failures.tracked(), TRACKED_CLIENTS);
        for i in TRACKED_CLIENTS..TRACKED_CLIENTS + MAX_FAILURES as usize {
            assert_eq!(failures.locked_for(ip(i), now), None);
            failures.record_failure(ip(i), now);
        }
        assert_eq!(failures.tracked(), TRACKED_CLIENTS);
        let newcomer = ip(TRACKED_CLIENTS + 500);
        assert_eq!(failures.locked_for(newcomer, now), Some(FAILURE_WINDOW));
        assert_eq!(
            failures.locked_for(ip(0), now),
            None,
            "tracked clients keep their own"
        );

        tokio::time::advance(FAILURE_WINDOW).await;
        let later = Instant::now();
        assert_eq!(failures.locked_for(newcomer, later), None);
        failures.record_failure(newcomer, later);
        assert_eq!(failures.tracked(), 1, "finished windows made room");
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([127, 0, 0, 1]));
    }
}
