//! Command-line options (`--name value`), with loopback defaults.

use std::time::Duration;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// user-service base URL (`--user-url`, default the first of `USER_SERVICE_URLS` or 127.0.0.1:5001).
    pub user_url: String,
    /// order-service replicas' base URLs (`--order-url URL[,URL...]`, default
    /// `ORDER_SERVICE_URLS`, else `ORDER_SERVICE_URL`, else 127.0.0.1:5002). Orders are spread
    /// over them; see [`Args::order_url_for`].
    pub order_urls: Vec<String>,
    /// How long to place orders (`--duration`, seconds).
    pub duration: Duration,
    /// At most this many orders (keys) (`--max-orders`).
    pub max_orders: usize,
    /// Target orders per second across all workers (`--rate`).
    pub rate: f64,
    /// Concurrent workers (`--concurrency`).
    pub concurrency: usize,
    /// Users to create and spread orders over (`--users`).
    pub users: usize,
    /// Seed for every random choice (`--seed`).
    pub seed: u64,
    /// Client timeout per attempt (`--timeout-ms`).
    pub timeout: Duration,
    /// Attempts per key during the load, first included (`--attempts`).
    pub attempts: usize,
    /// How long healing may take (`--heal-timeout`, seconds).
    pub heal_timeout: Duration,
    /// The chaos script's event log, read after the run (`--events`).
    pub events: Option<String>,
    /// Where to write the JSON summary (`--json`); stdout when absent.
    pub json: Option<String>,
    /// Print progress every this many seconds (`--progress`, 0 = never).
    pub progress: u64,
    /// Orders placed at once on each SIGUSR1 (`--burst`).
    pub burst: usize,
    /// Where to write every attempt as CSV (`--attempts-csv`), for auditing the figures.
    pub attempts_csv: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            user_url: "http://127.0.0.1:5001".into(),
            order_urls: vec!["http://127.0.0.1:5002".into()],
            duration: Duration::from_secs(60),
            max_orders: 50_000,
            rate: 40.0,
            concurrency: 8,
            users: 10,
            seed: 1,
            timeout: Duration::from_secs(5),
            attempts: 4,
            heal_timeout: Duration::from_secs(90),
            events: None,
            json: None,
            progress: 10,
            burst: 50,
            attempts_csv: None,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "\
chaos-loadgen: place orders under chaos and check none was lost or duplicated

Options (defaults in brackets):
  --user-url URL       user-service  [$USER_SERVICE_URLS first, or http://127.0.0.1:5001]
  --order-url URL[,URL...]  order-service replicas: keys spread over them, each
                       retry of a key on the next one [$ORDER_SERVICE_URLS, else
                       $ORDER_SERVICE_URL, else http://127.0.0.1:5002]
  --duration SECS      load phase length [60]
  --max-orders N       stop after N orders [50000]
  --rate R             target orders/s [40]
  --concurrency C      workers [8]
  --users N            users to create [10]
  --seed S             random seed [1]
  --timeout-ms MS      client timeout per attempt [5000]
  --attempts N         attempts per key during load (unknown/refused are retried) [4]
  --heal-timeout SECS  how long to wait for health after the load [90]
  --events PATH        chaos event log (`<epoch_ms> <action> <target>` lines)
  --json PATH          write the JSON summary there (else to stdout)
  --progress SECS      progress line interval on stderr, 0 = off [10]
  --burst N            orders placed at once on each SIGUSR1 [50]
  --attempts-csv PATH  write every attempt there (seq,start_ms,latency_ms,result,detail,heal)
Only loopback addresses are accepted. Exit: 0 ok, 1 invariant violated, 2 could not run.";

impl Args {
    /// Parses `argv` (without the program name), taking defaults from `env`.
    pub fn parse(
        argv: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Args, String> {
        let mut a = Args::default();
        if let Some(urls) = env("USER_SERVICE_URLS")
            && let Some(first) = urls.split(',').map(str::trim).find(|u| !u.is_empty())
        {
            a.user_url = first.to_owned();
        }
        if let Some(urls) = env("ORDER_SERVICE_URLS").or_else(|| env("ORDER_SERVICE_URL")) {
            a.order_urls = list(&urls);
        }
        let mut it = argv.into_iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.to_owned());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let num = |v: &str| {
                v.parse::<f64>()
                    .map_err(|_| format!("{flag}: not a number: {v}"))
            };
            match flag.as_str() {
                "--user-url" => a.user_url = value,
                "--order-url" => a.order_urls = list(&value),
                "--duration" => a.duration = Duration::from_secs_f64(num(&value)?.max(0.0)),
                "--max-orders" => a.max_orders = num(&value)? as usize,
                "--rate" => a.rate = num(&value)?,
                "--concurrency" => a.concurrency = (num(&value)? as usize).max(1),
                "--users" => a.users = (num(&value)? as usize).max(1),
                "--seed" => a.seed = value.parse().map_err(|_| format!("--seed: {value}"))?,
                "--timeout-ms" => a.timeout = Duration::from_millis(num(&value)?.max(1.0) as u64),
                "--attempts" => a.attempts = (num(&value)? as usize).max(1),
                "--heal-timeout" => a.heal_timeout = Duration::from_secs_f64(num(&value)?.max(0.0)),
                "--events" => a.events = Some(value),
                "--json" => a.json = Some(value),
                "--progress" => a.progress = num(&value)? as u64,
                "--burst" => a.burst = num(&value)? as usize,
                "--attempts-csv" => a.attempts_csv = Some(value),
                other => return Err(format!("unknown option {other}\n\n{USAGE}")),
            }
        }
        if a.rate.is_nan() || a.rate <= 0.0 {
            return Err("--rate must be positive".into());
        }
        if a.order_urls.is_empty() {
            return Err("--order-url lists no URL".into());
        }
        a.user_url = loopback(&a.user_url)?;
        a.order_urls = a
            .order_urls
            .iter()
            .map(|u| loopback(u))
            .collect::<Result<_, _>>()?;
        Ok(a)
    }

    /// The first order-service URL: where the orders are read back (the replicas share one
    /// store) and whose breakers are followed.
    pub fn order_url(&self) -> &str {
        &self.order_urls[0]
    }

    /// Where attempt `attempt` (0 = the first) of key `seq` goes: keys take the replicas in
    /// turn, and each retry of a key goes to the next replica, as a load balancer moves on
    /// from one that did not answer. So with a replica killed, its keys are retried on the
    /// other one, and a key one replica stored may be replayed by the other: only the shared
    /// store's idempotency keeps that one order.
    pub fn order_url_for(&self, seq: usize, attempt: usize) -> &str {
        &self.order_urls[(seq + attempt) % self.order_urls.len()]
    }
}

/// The entries of a comma-separated list, trimmed, empty ones dropped.
fn list(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Accepts only `http://` URLs on a loopback host: chaos traffic never leaves the machine.
pub fn loopback(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let ok_host = match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if parsed.scheme() != "http" || !ok_host {
        return Err(format!("{url}: only http:// on loopback is allowed"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_env_and_flags() {
        let a = Args::parse(args(&[]), |_| None).unwrap();
        assert_eq!(a, Args::default());
        let a = Args::parse(
            args(&[
                "--duration",
                "5",
                "--seed",
                "42",
                "--rate",
                "10",
                "--order-url",
                "http://localhost:6002/",
            ]),
            |k| {
                (k == "USER_SERVICE_URLS")
                    .then(|| "http://127.0.0.1:6001,http://127.0.0.1:6003".into())
            },
        )
        .unwrap();
        assert_eq!(a.duration, Duration::from_secs(5));
        assert_eq!(a.seed, 42);
        assert_eq!(a.user_url, "http://127.0.0.1:6001");
        assert_eq!(a.order_urls, ["http://localhost:6002"]);
    }

    #[test]
    fn keys_spread_over_replicas_and_each_retry_takes_the_next() {
        let a = Args::parse(
            args(&[
                "--order-url",
                "http://127.0.0.1:6102, http://127.0.0.1:6104/",
            ]),
            |_| None,
        )
        .unwrap();
        assert_eq!(
            a.order_urls,
            ["http://127.0.0.1:6102", "http://127.0.0.1:6104"]
        );
        assert_eq!(a.order_url(), "http://127.0.0.1:6102");
        let first: Vec<_> = (0..4).map(|seq| a.order_url_for(seq, 0)).collect();
        assert_eq!(
            first,
            [
                &a.order_urls[0],
                &a.order_urls[1],
                &a.order_urls[0],
                &a.order_urls[1]
            ]
        );
        let retries: Vec<_> = (0..3).map(|n| a.order_url_for(1, n)).collect();
        assert_eq!(
            retries,
            [&a.order_urls[1], &a.order_urls[0], &a.order_urls[1]]
        );
        // The environment's list of replicas, and the single URL when there is no list.
        let env = Args::parse(args(&[]), |k| match k {
            "ORDER_SERVICE_URLS" => Some("http://127.0.0.1:6102,http://127.0.0.1:6104".into()),
            "ORDER_SERVICE_URL" => Some("http://127.0.0.1:6999".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(env.order_urls.len(), 2);
        let single = Args::parse(args(&[]), |k| {
            (k == "ORDER_SERVICE_URL").then(|| "http://127.0.0.1:6999".into())
        })
        .unwrap();
        assert_eq!(single.order_urls, ["http://127.0.0.1:6999"]);
        assert_eq!(single.order_url_for(7, 3), "http://127.0.0.1:6999");
        assert!(Args::parse(args(&["--order-url", " , "]), |_| None).is_err());
        assert!(
            Args::parse(
                args(&["--order-url", "http://127.0.0.1:1,http://10.0.0.1:2"]),
                |_| None
            )
            .is_err()
        );
    }

    #[test]
    fn refuses_anything_off_loopback() {
        assert!(Args::parse(args(&["--order-url", "http://10.0.0.1:5002"]), |_| None).is_err());
        assert!(Args::parse(args(&["--user-url", "https://127.0.0.1"]), |_| None).is_err());
        assert!(Args::parse(args(&["--user-url", "http://example.com"]), |_| None).is_err());
        assert!(loopback("http://[::1]:5001").is_ok());
        assert!(Args::parse(args(&["--bogus", "1"]), |_| None).is_err());
        assert!(Args::parse(args(&["--rate", "0"]), |_| None).is_err());
    }
}
