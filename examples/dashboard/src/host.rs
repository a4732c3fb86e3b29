//! Answering only to the dashboard's own names: a guard against DNS rebinding.
//!
//! The dashboard is read in a browser, and its feed has no credentials. A page on another
//! site can point its own name at 127.0.0.1 (DNS rebinding): the browser then sends that
//! page's requests to the dashboard as same-origin and lets the page read the answers. What
//! it cannot change is the `Host` header, which still carries the other site's name. So
//! every request whose `Host` (or, in HTTP/2, `:authority`) is not on the list
//! ([`AllowedHosts`], `DASHBOARD_ALLOWED_HOSTS`) gets a 421 problem and nothing else.
//!
//! A request that names no host at all passes: no browser sends one (HTTP/1.1 requires the
//! header), so it cannot be a rebound page.

use std::{net::SocketAddr, sync::Arc};

use axum::http::header;
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use service_kit::problem::Problem;

/// The `Host` values the dashboard answers to: names, each with a port or, when the entry
/// has none, on any port. Names compare without regard to case.
///
/// ```
/// use dashboard::host::AllowedHosts;
///
/// let hosts = AllowedHosts::for_addr("127.0.0.1:8080".parse().unwrap());
/// assert!(hosts.allows("localhost:8080"));
/// assert!(hosts.allows("127.0.0.1:8080"));
/// assert!(!hosts.allows("evil.example:8080"));
/// assert!(!hosts.allows("localhost:9090"));
///
/// let hosts = AllowedHosts::parse("dash.internal, localhost:8080").unwrap();
/// assert!(hosts.allows("DASH.internal:1234"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowedHosts {
    /// The default for a dashboard bound to `addr`: `addr` itself, and `localhost` and
    /// `127.0.0.1` on its port.
    pub fn for_addr(addr: SocketAddr) -> Self {
        let port = Some(addr.port());
        let own = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let mut entries = vec![(own, port)];
        for name in ["localhost", "127.0.0.1"] {
            if entries.iter().all(|(n, _)| n != name) {
                entries.push((name.to_owned(), port));
            }
        }
        Self { entries }
    }

    /// A comma-separated list of `name` or `name:port` entries (`[::1]:8080` for IPv6).
    pub fn parse(list: &str) -> Result<Self, String> {
        let entries = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| split(e).ok_or_else(|| format!("`{e}` is not a host or host:port")))
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() {
            return Err("no host in the list".into());
        }
        Ok(Self { entries })
    }

    /// Whether a request whose `Host` is `host` may be answered (a `Host` without a port
    /// means port 80).
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split(host) else {
            return false;
        };
        let port = port.unwrap_or(80);
        self.entries
            .iter()
            .any(|(n, p)| *n == name && p.is_none_or(|p| p == port))
    }
}

/// `name[:port]` into the lower-case name and the port; `None` when malformed.
fn split(host: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        (format!("[{v6}]"), after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (host.to_owned(), None),
        }
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':');
    if name.is_empty() || !name.bytes().all(valid) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((name.to_ascii_lowercase(), port))
}

/// Middleware: 421 for a request naming a host not in the state's [`AllowedHosts`].
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    let header = req.headers().get(header::HOST).map(|v| v.to_str());
    let authority = req.uri().authority().map(|a| a.as_str());
    let refused = match header {
        Some(Ok(host)) => !allowed.allows(host),
        Some(Err(_)) => true,
        None => false,
    } || authority.is_some_and(|a| !allowed.allows(a));
    if refused {
        return Problem::misdirected(
            "this server does not answer to that host name (see DASHBOARD_ALLOWED_HOSTS)",
        )
        .into_response();
    }
    next.run(req).await
}
