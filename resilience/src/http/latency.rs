//! A request asking for its own latency, for demos and chaos tests: `X-Simulate-Latency`.

use std::time::Duration;

use http::{HeaderName, Request};

use crate::fault::{RequestLatency, parse_latency};

/// The header a request asks for extra latency with: `x-simulate-latency: 250ms` (or `1s`, or
/// a bare number of milliseconds).
pub const SIMULATE_LATENCY_HEADER: HeaderName = HeaderName::from_static("x-simulate-latency");

/// Reads [`SIMULATE_LATENCY_HEADER`] of an `http::Request` for a
/// [`FaultLayer`](crate::fault::FaultLayer): `250ms`, `1s` or a bare number of milliseconds
/// (`250`), capped at [`MAX_REQUEST_LATENCY`](crate::fault::MAX_REQUEST_LATENCY); anything
/// else is ignored.
///
/// Any client can send the header, and each delayed request holds a server task: on a server
/// reachable by others, honour it only for trusted callers (wrap it in a hook that checks
/// credentials first, as the example services do with their admin token).
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{fault::RequestLatency, http::{SIMULATE_LATENCY_HEADER, SimulateLatencyHeader}};
///
/// let req = http::Request::builder().header(SIMULATE_LATENCY_HEADER, "250ms").body(()).unwrap();
/// assert_eq!(SimulateLatencyHeader.request_latency(&req), Some(Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulateLatencyHeader;

impl SimulateLatencyHeader {
    /// The header's name, as a string: [`SIMULATE_LATENCY_HEADER`].
    pub const HEADER: &'static str = "x-simulate-latency";
}

impl<B> RequestLatency<Request<B>> for SimulateLatencyHeader {
    fn request_latency(&self, req: &Request<B>) -> Option<Duration> {
        parse_latency(req.headers().get(SIMULATE_LATENCY_HEADER)?.to_str().ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_two_spellings() {
        assert_eq!(
            SimulateLatencyHeader::HEADER,
            SIMULATE_LATENCY_HEADER.as_str()
        );
        let req = |v: &str| {
            Request::builder()
                .header(SIMULATE_LATENCY_HEADER, v)
                .body(())
                .unwrap()
        };
        assert_eq!(
            SimulateLatencyHeader.request_latency(&req("2s")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(SimulateLatencyHeader.request_latency(&req("soon")), None);
        let none = Request::new(());
        assert_eq!(SimulateLatencyHeader.request_latency(&none), None);
    }
}
