//! Reading configuration from environment variables, collecting every mistake at once.
//!
//! A service that refuses to start should say everything that is wrong in one go, naming the
//! variable and the value, so [`Env`] keeps reading after a bad value and [`Env::finish`]
//! reports them all.

use std::{collections::HashMap, fmt, net::SocketAddr, str::FromStr, time::Duration};

/// A source of variables (the process environment, or a map in tests) plus collected errors.
///
/// ```
/// use service_kit::config::Env;
/// use std::time::Duration;
///
/// let mut env = Env::from_pairs([("PORT_ADDR", "127.0.0.1:80"), ("WAIT_MS", "soon")]);
/// let addr = env.addr("PORT_ADDR", "127.0.0.1:1");
/// let wait = env.duration_ms("WAIT_MS", Duration::from_millis(5));
/// assert_eq!(addr.port(), 80);
/// assert_eq!(wait, Duration::from_millis(5));
/// let err = env.finish().unwrap_err();
/// assert!(err.to_string().contains("WAIT_MS"));
/// ```
#[derive(Debug)]
pub struct Env {
    vars: HashMap<String, String>,
    errors: Vec<String>,
}

/// Everything wrong with the configuration.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
            errors: Vec::new(),
        }
    }

    /// Fixed pairs (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            errors: Vec::new(),
        }
    }

    /// Records an error about `key`.
    pub fn error(&mut self, key: &str, msg: impl fmt::Display) {
        self.errors.push(format!("{key}: {msg}"));
    }

    /// The raw value, `None` when unset or blank.
    pub fn get(&self, key: &str) -> Option<String> {
        self.vars
            .get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A string with a default.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_owned())
    }

    /// Any `FromStr` value with a default; `what` describes the expected form.
    pub fn parse<T: FromStr>(&mut self, key: &str, default: T, what: &str) -> T {
        match self.get(key) {
            None => default,
            Some(raw) => match raw.parse() {
                Ok(v) => v,
                Err(_) => {
                    self.error(key, format!("`{raw}` is not {what}"));
                    default
                }
            },
        }
    }

    /// A socket address (`127.0.0.1:5001`).
    pub fn addr(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback = default.parse().expect("default address parses");
        self.parse(key, fallback, "a socket address like 127.0.0.1:5001")
    }

    /// A duration given in milliseconds.
    pub fn duration_ms(&mut self, key: &str, default: Duration) -> Duration {
        let ms = self.parse(
            key,
            u64::try_from(default.as_millis()).unwrap_or(u64::MAX),
            "a whole number of milliseconds",
        );
        Duration::from_millis(ms)
    }

    /// A duration in humantime form (`24h`, `90s`, `1h 30m`), within `min..=max`.
    ///
    /// ```
    /// use service_kit::config::Env;
    /// use std::time::Duration;
    ///
    /// let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
    /// let mut env = Env::from_pairs([("KEEP", "15m"), ("BAD", "soon"), ("BIG", "2h")]);
    /// assert_eq!(env.duration("KEEP", Duration::from_secs(60), min, max), Duration::from_secs(900));
    /// assert_eq!(env.duration("UNSET", Duration::from_secs(60), min, max), Duration::from_secs(60));
    /// env.duration("BAD", Duration::from_secs(60), min, max);
    /// env.duration("BIG", Duration::from_secs(60), min, max);
    /// assert_eq!(env.finish().unwrap_err().0.len(), 2);
    /// ```
    pub fn duration(
        &mut self,
        key: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(raw) = self.get(key) else {
            return default;
        };
        match humantime::parse_duration(&raw) {
            Ok(d) if (min..=max).contains(&d) => d,
            Ok(_) => {
                self.error(
                    key,
                    format!(
                        "`{raw}` is outside {} to {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Err(_) => {
                self.error(
                    key,
                    format!("`{raw}` is not a duration like 24h, 90s or 1h 30m"),
                );
                default
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int_in(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let v = self.parse(key, default, "a whole number");
        if !(min..=max).contains(&v) {
            self.error(key, format!("{v} is outside {min}..={max}"));
            return default;
        }
        v
    }

    /// One of a fixed set of words (case-insensitive); returns the lower-cased word.
    pub fn choice(&mut self, key: &str, default: &str, allowed: &[&str]) -> String {
        let v = self.string(key, default).to_ascii_lowercase();
        if allowed.contains(&v.as_str()) {
            v
        } else {
            self.error(key, format!("`{v}` is not one of {}", allowed.join(", ")));
            default.to_owned()
        }
    }

    /// Ok when nothing was wrong, else every error.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Reads a service's configuration from the process environment with `read`; on failure
/// prints every problem to stderr, prefixed with the service's name, and returns exit code 2.
pub fn load<T>(
    service: &str,
    read: impl FnOnce(Env) -> Result<T, ConfigErrors>,
) -> Result<T, std::process::ExitCode> {
    read(Env::from_process()).map_err(|e| {
        eprintln!("{service}: {e}");
        std::process::ExitCode::from(2)
    })
}

/// How log lines are written (`LOG_FORMAT`).
///
/// ```
/// use service_kit::config::LogFormat;
///
/// assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
/// assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
/// assert_eq!(LogFormat::Pretty.resolve(false), LogFormat::Pretty);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON lines when stdout is not a terminal (a file, a pipe, a container's log driver:
    /// whatever ships the lines wants them parseable), text when a person watches (the default).
    Auto,
    /// One JSON object per line (see [`crate::telemetry`] for the fields).
    Json,
    /// Multi-line text for reading at a terminal.
    Pretty,
    /// One line of text per event, with the span context.
    Text,
}

impl LogFormat {
    /// The format to write: [`LogFormat::Auto`] decided by whether stdout is a terminal.
    pub fn resolve(self, stdout_is_terminal: bool) -> Self {
        match self {
            Self::Auto if stdout_is_terminal => Self::Text,
            Self::Auto => Self::Json,
            other => other,
        }
    }
}

/// What [`crate::telemetry`] sets up: logs (`LOG_FORMAT`, `RUST_LOG`) and the trace export
/// (the standard `OTEL_*` variables, see [`TraceExport`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// `LOG_FORMAT`: auto (the default), json, pretty or text.
    pub log_format: LogFormat,
    /// `RUST_LOG` filter (default `info`).
    pub log_filter: String,
    /// Where spans go; `None` (the default) exports none.
    pub traces: Option<TraceExport>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            log_filter: "info".to_owned(),
            traces: None,
        }
    }
}

/// Spans exported over OTLP/HTTP with protobuf bodies, read from OpenTelemetry's standard
/// variables:
///
/// - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), else `OTEL_EXPORTER_OTLP_ENDPOINT`
///   (the collector's base URL; `/v1/traces` is appended): export is on when either is set.
///   Plain `http://` only: these builds carry no TLS stack, so send to a collector or agent
///   next to the service, which forwards over TLS if it must;
/// - `OTEL_SERVICE_NAME`: the `service.name` of the spans (default: the service's name);
/// - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off again;
///   `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, when set, must be
///   `http/protobuf`.
///
/// The SDK reads the rest itself: `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
/// `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`: a caller's unsampled
/// `traceparent` is honoured), `OTEL_BSP_*` (batching), `OTEL_RESOURCE_ATTRIBUTES`.
///
/// ```
/// use service_kit::config::{Env, TraceExport};
///
/// let mut env = Env::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]);
/// let export = TraceExport::read(&mut env).unwrap();
/// assert_eq!(export.endpoint, "http://127.0.0.1:4318/v1/traces");
/// assert_eq!(export.service_name, None);
/// assert!(TraceExport::read(&mut Env::from_pairs([])).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The URL spans are POSTed to.
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME`, when set.
    pub service_name: Option<String>,
}

impl TraceExport {
    /// Reads the variables above; `None` when export is off.
    pub fn read(env: &mut Env) -> Option<Self> {
        let disabled = env.choice("OTEL_SDK_DISABLED", "false", &["true", "false"]) == "true";
        let exporter = env.choice("OTEL_TRACES_EXPORTER", "otlp", &["otlp", "none"]);
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = env.get(var).filter(|p| p != "http/protobuf") {
                env.error(
                    var,
                    format!("`{p}` is not supported: only http/protobuf is built in"),
                );
            }
        }
        let (var, endpoint) = match (
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None) => return None,
        };
        match endpoint.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {}
            Ok(uri) if uri.scheme_str() == Some("https") => {
                env.error(
                    var,
                    format!("`{endpoint}`: https needs TLS, which these builds leave out; send to an OTLP collector over http:// (a local agent or sidecar)"),
                );
                return None;
            }
            _ => {
                env.error(
                    var,
                    format!("`{endpoint}` is not an http:// URL with a host"),
                );
                return None;
            }
        }
        if disabled || exporter == "none" {
            return None;
        }
        Some(Self {
            endpoint,
            service_name: env.get("OTEL_SERVICE_NAME"),
        })
    }
}

impl Telemetry {
    /// Reads `LOG_FORMAT`, `RUST_LOG` and the trace export ([`TraceExport::read`]).
    pub fn read(env: &mut Env) -> Self {
        let log_format = match env
            .choice("LOG_FORMAT", "auto", &["auto", "json", "pretty", "text"])
            .as_str()
        {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            "text" => LogFormat::Text,
            _ => LogFormat::Auto,
        };
        let mut log_filter = env.string("RUST_LOG", "info");
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            env.error("RUST_LOG", format!("`{log_filter}` is not a valid filter"));
            log_filter = "info".to_owned();
        }
        Self {
            log_format,
            log_filter,
            traces: TraceExport::read(env),
        }
    }
}

/// Settings every service has.
#[derive(Debug, Clone)]
pub struct Common {
    /// Where to listen.
    pub addr: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// `LOG_FORMAT`, `RUST_LOG` and the `OTEL_*` trace export.
    pub telemetry: Telemetry,
    /// `ADMIN_TOKEN`: bearer token for `/admin/*`; unset = admin routes disabled.
    pub admin_token: Option<String>,
    /// `SHUTDOWN_DELAY_MS` and `SHUTDOWN_TIMEOUT_MS`.
    pub shutdown: ShutdownTiming,
    /// `HEADER_READ_TIMEOUT_MS`, `IDLE_TIMEOUT_MS` and `MAX_CONNECTIONS`.
    pub connections: ConnectionLimits,
    /// `BODY_LIMIT_BYTES`: the largest request body accepted (413 above).
    pub body_limit: usize,
    /// `MIN_DEADLINE_MS`: a caller's deadline (`x-request-deadline-ms`) below this is answered
    /// 504 at once, before any work or downstream call (default 10 ms; 0 refuses only an
    /// expired one).
    pub min_deadline: Duration,
}

impl Common {
    /// Reads the common settings. `addr_var`/`default_addr` name the listen address variable;
    /// the database URL is `db_var` (service-specific), else `DATABASE_URL`, else `default_db`.
    pub fn read(
        env: &mut Env,
        addr_var: &str,
        default_addr: &str,
        db_var: &str,
        default_db: &str,
    ) -> Self {
        let addr = env.addr(addr_var, default_addr);
        let database_url = env
            .get(db_var)
            .or_else(|| env.get("DATABASE_URL"))
            .unwrap_or_else(|| default_db.to_owned());
        if crate::store::Backend::of(&database_url).is_none() {
            env.error(
                db_var,
                format!("`{database_url}` is not a sqlite: or postgres:// URL"),
            );
        }
        let admin_token = env.get("ADMIN_TOKEN");
        if admin_token.as_ref().is_some_and(|t| t.len() < 8) {
            env.error("ADMIN_TOKEN", "must be at least 8 characters");
        }
        Self {
            addr,
            database_url,
            telemetry: Telemetry::read(env),
            admin_token,
            shutdown: ShutdownTiming::read(env),
            connections: ConnectionLimits::read(env),
            body_limit: usize::try_from(env.int_in("BODY_LIMIT_BYTES", 64 * 1024, 256, 16 << 20))
                .unwrap_or(64 * 1024),
            min_deadline: Duration::from_millis(env.int_in("MIN_DEADLINE_MS", 10, 0, 60_000)),
        }
    }
}

/// How shutdown proceeds (see [`crate::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownTiming {
    /// `SHUTDOWN_DELAY_MS` (default 250): readiness fails this long before the listener closes.
    pub delay: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (default 10000): in-flight requests get at most this long to finish.
    pub timeout: Duration,
}

impl ShutdownTiming {
    /// Reads `SHUTDOWN_DELAY_MS` and `SHUTDOWN_TIMEOUT_MS`.
    pub fn read(env: &mut Env) -> Self {
        Self {
            delay: env.duration_ms("SHUTDOWN_DELAY_MS", Duration::from_millis(250)),
            timeout: env.duration_ms("SHUTDOWN_TIMEOUT_MS", Duration::from_secs(10)),
        }
    }
}

/// What the accept loop allows a client connection (see [`crate::serve`]), so slow, idle or
/// too many clients cannot hold the server's sockets and tasks.
///
/// ```
/// use service_kit::config::{ConnectionLimits, Env};
/// use std::time::Duration;
///
/// let mut env = Env::from_pairs([("HEADER_READ_TIMEOUT_MS", "2000"), ("IDLE_TIMEOUT_MS", "5000")]);
/// let limits = ConnectionLimits::read(&mut env);
/// assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
/// let err = env.finish().unwrap_err();
/// assert!(err.to_string().contains("IDLE_TIMEOUT_MS"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HEADER_READ_TIMEOUT_MS` (default 10000): hyper's header-read timer. It starts when the
    /// connection begins waiting for a request, so a client gets this long from then to send
    /// the whole head, or the connection is closed.
    pub header_read_timeout: Duration,
    /// `IDLE_TIMEOUT_MS` (default 5000): a keep-alive connection with no request in flight is
    /// closed after this long. At most the header-read timeout, which bounds waiting anyway
    /// (unset, it defaults to the smaller of 5000 and `HEADER_READ_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS` (default 1024): open connections at most; past it a new connection is
    /// answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: 1024,
        }
    }
}

impl ConnectionLimits {
    /// Reads `HEADER_READ_TIMEOUT_MS`, `IDLE_TIMEOUT_MS` and `MAX_CONNECTIONS`.
    pub fn read(env: &mut Env) -> Self {
        let d = Self::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let header = env.int_in(
            "HEADER_READ_TIMEOUT_MS",
            ms(d.header_read_timeout),
            100,
            600_000,
        );
        // Unset, it follows a shorter header-read timeout rather than contradict it.
        let idle = env.int_in(
            "IDLE_TIMEOUT_MS",
            ms(d.idle_timeout).min(header),
            100,
            600_000,
        );
        if idle > header {
            env.error(
                "IDLE_TIMEOUT_MS",
                format!("{idle} is above HEADER_READ_TIMEOUT_MS ({header}), which already closes a connection waiting that long for a request"),
            );
        }
        let max = env.int_in("MAX_CONNECTIONS", d.max_connections as u64, 1, 65_536);
        Self {
            header_read_timeout: Duration::from_millis(header),
            idle_timeout: Duration::from_millis(idle.min(header)),
            max_connections: usize::try_from(max).unwrap_or(d.max_connections),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error() {
        let mut env = Env::from_pairs([
            ("ADDR", "nope"),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_FORMAT", "xml"),
            ("BODY_LIMIT_BYTES", "1"),
        ]);
        let c = Common::read(
            &mut env,
            "ADDR",
            "127.0.0.1:5001",
            "X_DB",
            "sqlite://data/x.db",
        );
        assert_eq!(c.addr.to_string(), "127.0.0.1:5001");
        let errs = env.finish().unwrap_err().0;
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].starts_with("ADDR:"));
    }

    #[test]
    fn defaults_bind_loopback() {
        let mut env = Env::from_pairs([]);
        let c = Common::read(
            &mut env,
            "ADDR",
            "127.0.0.1:5001",
            "X_DB",
            "sqlite://data/x.db",
        );
        assert!(c.addr.ip().is_loopback());
        assert_eq!(c.admin_token, None);
        assert_eq!(c.min_deadline, Duration::from_millis(10));
        assert_eq!(c.connections, ConnectionLimits::default());
        assert_eq!(c.telemetry, Telemetry::default());
        assert_eq!(c.telemetry.log_format, LogFormat::Auto);
        env.finish().unwrap();
    }

    #[test]
    fn log_format_takes_every_word_and_keeps_the_old_ones() {
        for (word, format) in [
            ("auto", LogFormat::Auto),
            ("JSON", LogFormat::Json),
            ("pretty", LogFormat::Pretty),
            ("text", LogFormat::Text),
        ] {
            let mut env = Env::from_pairs([("LOG_FORMAT", word), ("RUST_LOG", "debug,hyper=info")]);
            let t = Telemetry::read(&mut env);
            env.finish().unwrap();
            assert_eq!(t.log_format, format, "{word}");
            assert_eq!(t.log_filter, "debug,hyper=info");
        }
        let mut env = Env::from_pairs([("LOG_FORMAT", "xml"), ("RUST_LOG", "[")]);
        assert_eq!(Telemetry::read(&mut env), Telemetry::default());
        let errs = env.finish().unwrap_err().0;
        assert!(
            errs[0].starts_with("LOG_FORMAT: `xml` is not one of auto, json, pretty, text"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("RUST_LOG:"), "{errs:?}");
    }

    #[test]
    fn traces_are_exported_only_when_an_endpoint_is_set() {
        let read = |pairs: &[(&str, &str)]| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            let t = TraceExport::read(&mut env);
            (t, env.finish().err().map(|e| e.0).unwrap_or_default())
        };
        assert_eq!(read(&[]), (None, vec![]));
        assert_eq!(read(&[("OTEL_SERVICE_NAME", "orders")]), (None, vec![]));
        let (t, errs) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SERVICE_NAME", "orders"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
        let t = t.unwrap();
        assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(t.service_name.as_deref(), Some("orders"));
        // The signal's own variable is the whole URL and wins.
        let (t, _) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:9/spans",
            ),
        ]);
        assert_eq!(t.unwrap().endpoint, "http://127.0.0.1:9/spans");
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let (t, errs) = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]);
            assert_eq!((t, errs), (None, vec![]), "{off:?}");
        }
    }

    #[test]
    fn a_trace_export_that_cannot_work_is_refused_at_start() {
        let mut env = Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ]);
        assert_eq!(TraceExport::read(&mut env), None);
        let errs = env.finish().unwrap_err().0;
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("OTEL_TRACES_EXPORTER: `zipkin` is not one of otlp, none"));
        assert!(
            errs[1].contains("only http/protobuf is built in"),
            "{errs:?}"
        );
        assert!(errs[2].contains("https needs TLS"), "{errs:?}");
        let mut env = Env::from_pairs([("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318")]);
        assert_eq!(TraceExport::read(&mut env), None);
        assert!(env.finish().unwrap_err().0[0].contains("is not an http:// URL with a host"));
    }

    #[test]
    fn connection_limits_are_validated() {
        let mut env = Env::from_pairs([
            ("HEADER_READ_TIMEOUT_MS", "0"),
            ("IDLE_TIMEOUT_MS", "soon"),
            ("MAX_CONNECTIONS", "0"),
        ]);
        assert_eq!(
            ConnectionLimits::read(&mut env),
            ConnectionLimits::default()
        );
        let errs = env.finish().unwrap_err().0;
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("HEADER_READ_TIMEOUT_MS: 0 is outside"));
        assert!(errs[1].starts_with("IDLE_TIMEOUT_MS: `soon`"));
        assert!(errs[2].starts_with("MAX_CONNECTIONS: 0 is outside"));

        let mut env =
            Env::from_pairs([("HEADER_READ_TIMEOUT_MS", "500"), ("MAX_CONNECTIONS", "8")]);
        let limits = ConnectionLimits::read(&mut env);
        env.finish().unwrap();
        assert_eq!(limits.max_connections, 8);
        assert_eq!(
            limits.idle_timeout,
            Duration::from_millis(500),
            "follows the header timeout"
        );

        let mut env = Env::from_pairs([
            ("HEADER_READ_TIMEOUT_MS", "500"),
            ("IDLE_TIMEOUT_MS", "900"),
        ]);
        ConnectionLimits::read(&mut env);
        let errs = env.finish().unwrap_err().0;
        assert!(
            errs[0].starts_with("IDLE_TIMEOUT_MS: 900 is above"),
            "{errs:?}"
        );
    }
}
