//! Configuration from the environment, validated at start with every problem named.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use reqwest::Url;
use resilience_layers::{cache::CacheConfig, stack::StackConfig};
use service_kit::{
    config::{Common, ConfigErrors, Env},
    store::Backend,
};

use crate::group_commit::WriterConfig;

/// The stack used when `RESILIENCE_CONFIG` names no file: calls to user-service get 2 s in
/// total, 500 ms per attempt, one retry within a 20 % budget, a breaker per instance that opens
/// after 5 failures in a row (or half of at least 5 calls in 10 s failing), waits 2 s (then
/// reads half-open on its own, so `/resilience` is truthful without traffic), and lets one
/// probe decide; at most 64 lookups in flight, and a lookup past them is refused at once
/// (503 naming order-service's own limit) rather than queued.
pub const DEFAULT_STACK: &str = r#"
deadline = "2s"
attempt_timeout = "500ms"

[bulkhead]
max_concurrent = 64
max_wait = "0ms"

[retry]
max_attempts = 2

[retry.backoff]
base = "50ms"
max = "500ms"
multiplier = 2.0
jitter = "full"

[retry.budget]
ttl = "10s"
min_per_sec = 10
retry_ratio = 0.2

[circuit_breaker]
failure_rate_threshold = 50.0
minimum_calls = 5
consecutive_failures = 5
wait_in_open = "2s"
permitted_calls_in_half_open = 1
max_wait_in_half_open = "2s"
automatic_transition_to_half_open = true

[circuit_breaker.window]
kind = "time"
duration = "10s"
buckets = 10
"#;

/// What to do with an order while user-service cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DegradedMode {
    /// 503 + `Retry-After` (the default).
    Fail,
    /// Store as `pending`; verify later.
    Accept,
}

/// Configuration, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database, logging, admin token, shutdown timing.
    pub common: Common,
    /// `USER_SERVICE_URLS`: every user-service instance.
    pub user_service_urls: Vec<Url>,
    /// `DEGRADED_MODE`: `fail` or `accept`.
    pub degraded: DegradedMode,
    /// The stack around calls to user-service; `None` with `RESILIENCE=off`.
    pub stack: Option<StackConfig>,
    /// `RESILIENCE_CONFIG`: the file the stack came from, read again on SIGHUP
    /// ([`crate::reload`]); `None` for the built-in stack.
    pub stack_file: Option<PathBuf>,
    /// `PENDING_RECHECK_MS`: how often pending orders are re-verified.
    pub pending_recheck: Duration,
    /// `IDEMPOTENCY_RETENTION`: how long a key's record (and stored answer) is kept.
    pub idempotency_retention: Duration,
    /// `ORDER_WRITE_BATCH`, `ORDER_WRITE_QUEUE`, `ORDER_WRITERS`: the group commit.
    pub writes: WriterConfig,
    /// `USER_CACHE` (`on`|`off`), `USER_CACHE_TTL`, `USER_CACHE_STALE`,
    /// `USER_CACHE_MAX_ENTRIES`: the cache of positive user verifications
    /// ([`crate::users`]); `None` with `USER_CACHE=off`.
    pub user_cache: Option<CacheConfig>,
}

/// The user cache when `USER_CACHE` is not set: a user verified in the last 5 minutes needs
/// no user-service round trip, and while user-service cannot answer, a user verified in the
/// last hour is still taken as existing; at most 100,000 users (about 10 MB).
pub fn default_user_cache() -> CacheConfig {
    user_cache(
        100_000,
        Duration::from_secs(5 * 60),
        Duration::from_secs(60 * 60),
    )
}

/// A user cache of `max_entries` users, each counted at [`USER_CACHE_ENTRY_BYTES`].
fn user_cache(max_entries: u64, ttl: Duration, stale_if_error: Duration) -> CacheConfig {
    CacheConfig {
        max_entries,
        max_bytes: max_entries.saturating_mul(USER_CACHE_ENTRY_BYTES),
        ttl,
        stale_if_error,
    }
}

/// What one cached verification is counted as (key, entry and moka's bookkeeping, rounded up).
const USER_CACHE_ENTRY_BYTES: u64 = 100;

impl Config {
    /// Reads and validates: `ORDER_SERVICE_ADDR` (127.0.0.1:5002), `ORDER_SERVICE_DATABASE_URL`
    /// or `DATABASE_URL` (`sqlite://data/orders.db`), `USER_SERVICE_URLS`
    /// (`http://127.0.0.1:5001`), `DEGRADED_MODE` (`fail`|`accept`), `RESILIENCE` (`on`|`off`),
    /// `RESILIENCE_CONFIG` (a TOML file for the stack, else [`DEFAULT_STACK`]),
    /// `PENDING_RECHECK_MS` (1000), `IDEMPOTENCY_RETENTION` (`24h`, from 1 s to 365 days),
    /// `ORDER_WRITE_BATCH` (most orders per commit, 256, 1 to 4096), `ORDER_WRITE_QUEUE`
    /// (most orders waiting for a commit before new ones get 503, 1024, 1 to 65536),
    /// `ORDER_WRITERS` (transactions committing side by side: 1 on SQLite, which has one
    /// writer connection; 1 to 8 on PostgreSQL, 2 by default), `USER_CACHE` (`on`|`off`,
    /// on by default), `USER_CACHE_TTL` (`5m`), `USER_CACHE_STALE` (`1h`; `0s` turns
    /// stale answers off), `USER_CACHE_MAX_ENTRIES` (100000), and the common settings.
    pub fn from_env(mut env: Env) -> Result<Self, ConfigErrors> {
        let common = Common::read(
            &mut env,
            "ORDER_SERVICE_ADDR",
            "127.0.0.1:5002",
            "ORDER_SERVICE_DATABASE_URL",
            "sqlite://data/orders.db",
        );
        let raw_urls = env.string("USER_SERVICE_URLS", "http://127.0.0.1:5001");
        let mut user_service_urls = Vec::new();
        for part in raw_urls.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match parse_upstream(part) {
                Ok(url) => user_service_urls.push(url),
                Err(e) => env.error("USER_SERVICE_URLS", format!("`{part}`: {e}")),
            }
        }
        if user_service_urls.is_empty() {
            env.error("USER_SERVICE_URLS", "lists no URL");
        }
        let degraded = match env
            .choice("DEGRADED_MODE", "fail", &["fail", "accept"])
            .as_str()
        {
            "accept" => DegradedMode::Accept,
            _ => DegradedMode::Fail,
        };
        let on = env.choice("RESILIENCE", "on", &["on", "off"]) == "on";
        let stack_file = env.get("RESILIENCE_CONFIG").map(PathBuf::from);
        let stack = match env.get("RESILIENCE_CONFIG") {
            Some(path) => match load_stack(Path::new(&path)) {
                Ok(s) => Some(s),
                Err(e) => {
                    env.error("RESILIENCE_CONFIG", e);
                    None
                }
            },
            None => Some(default_stack()),
        };
        let pending_recheck = env.duration_ms("PENDING_RECHECK_MS", Duration::from_secs(1));
        if pending_recheck.is_zero() {
            env.error("PENDING_RECHECK_MS", "must be greater than zero");
        }
        let idempotency_retention = env.duration(
            "IDEMPOTENCY_RETENTION",
            crate::idempotency::DEFAULT_RETENTION,
            Duration::from_secs(1),
            Duration::from_secs(365 * 24 * 60 * 60),
        );
        let backend = Backend::of(&common.database_url).unwrap_or(Backend::Sqlite);
        let writers_max = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 8,
        };
        let default_writers = WriterConfig::default_writers(backend) as u64;
        let writes = WriterConfig {
            max_batch: env.int_in("ORDER_WRITE_BATCH", WriterConfig::MAX_BATCH as u64, 1, 4096)
                as usize,
            queue: env.int_in("ORDER_WRITE_QUEUE", WriterConfig::QUEUE as u64, 1, 65536) as usize,
            writers: env.int_in("ORDER_WRITERS", default_writers, 1, writers_max) as usize,
        };
        let cache_on = env.choice("USER_CACHE", "on", &["on", "off"]) == "on";
        let defaults = default_user_cache();
        let day = Duration::from_secs(24 * 60 * 60);
        let max_entries = env.int_in(
            "USER_CACHE_MAX_ENTRIES",
            defaults.max_entries,
            1,
            10_000_000,
        );
        let user_cache = user_cache(
            max_entries,
            env.duration("USER_CACHE_TTL", defaults.ttl, Duration::from_secs(1), day),
            env.duration(
                "USER_CACHE_STALE",
                defaults.stale_if_error,
                Duration::ZERO,
                7 * day,
            ),
        );
        env.finish()?;
        Ok(Self {
            user_cache: cache_on.then_some(user_cache),
            common,
            user_service_urls,
            degraded,
            stack: stack.filter(|_| on),
            stack_file,
            pending_recheck,
            idempotency_retention,
            writes,
        })
    }
}

/// The built-in stack ([`DEFAULT_STACK`]).
pub fn default_stack() -> StackConfig {
    toml::from_str(DEFAULT_STACK).expect("DEFAULT_STACK parses")
}

/// Reads and validates the stack in `path`; the error names the file and the field.
pub(crate) fn load_stack(path: &Path) -> Result<StackConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let stack: StackConfig =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    stack
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(stack)
}

fn parse_upstream(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw).map_err(|e| e.to_string())?;
    if url.scheme() != "http" {
        return Err("only http:// is supported (plain HTTP on loopback)".into());
    }
    if url.host_str().is_none() {
        return Err("has no host".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}
