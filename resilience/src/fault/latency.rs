//! Per-request latency hooks.

use std::time::Duration;

/// The longest latency a request may ask for, so a typo cannot park a server task for hours.
pub const MAX_REQUEST_LATENCY: Duration = Duration::from_secs(30);

/// Extra latency a single request asks for (on top of the handle's), for demos and tests.
///
/// `()` asks for none; closures `Fn(&Req) -> Option<Duration>` are hooks too; with the `http`
/// feature, `http::SimulateLatencyHeader` reads `X-Simulate-Latency`.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::fault::RequestLatency;
///
/// let hook = |ms: &u64| Some(Duration::from_millis(*ms));
/// assert_eq!(hook.request_latency(&20), Some(Duration::from_millis(20)));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot read a latency from a `{Req}`",
    label = "not a `RequestLatency<{Req}>`",
    note = "a latency hook is `()` (none), a closure `|req: &{Req}| -> Option<Duration>`, or `SimulateLatencyHeader` for an `http::Request` (feature `http`)"
)]
pub trait RequestLatency<Req> {
    /// The latency `req` asks for, if any.
    fn request_latency(&self, req: &Req) -> Option<Duration>;
}

impl<Req> RequestLatency<Req> for () {
    #[inline]
    fn request_latency(&self, _: &Req) -> Option<Duration> {
        None
    }
}

impl<F, Req> RequestLatency<Req> for F
where
    F: Fn(&Req) -> Option<Duration>,
{
    fn request_latency(&self, req: &Req) -> Option<Duration> {
        self(req)
    }
}

/// Parses `250ms`, `1.5s`-style humantime strings or bare milliseconds; capped; `None` for
/// garbage or zero.
pub fn parse_latency(value: &str) -> Option<Duration> {
    let value = value.trim();
    let latency = match value.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => humantime::parse_duration(value).ok()?,
    };
    (!latency.is_zero()).then(|| latency.min(MAX_REQUEST_LATENCY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms_caps_and_ignores_garbage() {
        assert_eq!(parse_latency("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_latency(" 250ms "), Some(Duration::from_millis(250)));
        assert_eq!(parse_latency("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_latency("1h"), Some(MAX_REQUEST_LATENCY));
        assert_eq!(parse_latency("99999999999999999999"), None);
        assert_eq!(parse_latency("soon"), None);
        assert_eq!(parse_latency("-5"), None);
        assert_eq!(parse_latency("0"), None);
        assert_eq!(parse_latency(""), None);
    }
}
