//! The live part: users, paced workers, a breaker/metrics observer, healing and read-back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use prom_text::{self as prom, Accumulator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::args::Args;
use crate::check::{self, KeyOutcome, StoredOrder};
use crate::model::{Attempt, AttemptResult, BreakerObservation, OrderKey, epoch_ms};

/// Counters read from the services' `/metrics` during the load, summed across restarts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// `GET /users/{id}` requests user-service served (order-service's lookups, retries included).
    pub user_lookups: f64,
    /// Logical calls to user-service through order-service's retry layer (`/resilience` `retries[].requests_total`).
    pub retry_requests: f64,
    /// Extra attempts the retry layer made (`retries_total`).
    pub retry_retries: f64,
    /// Retries the budget refused (`budget_exhausted_total`).
    pub budget_exhausted: f64,
    /// Calls refused by an open circuit (`breakers[].rejected_total`).
    pub circuit_rejected: f64,
    /// Samples that succeeded (user-service `/metrics`, order-service `/resilience`).
    pub samples: (usize, usize),
}

/// Everything a run recorded, for [`crate::report`].
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Random id in every key of this run, so runs never collide in a persistent store.
    pub run_id: String,
    /// When the load started, ms since the epoch.
    pub load_start_ms: u64,
    /// When the load stopped.
    pub load_end_ms: u64,
    /// The orders the workers meant to place, by sequence number.
    pub keys: Vec<OrderKey>,
    /// Every attempt, load and heal, in start order.
    pub attempts: Vec<Attempt>,
    /// Breaker state changes seen on order-service's `/resilience`.
    pub breakers: Vec<BreakerObservation>,
    /// Counters from `/metrics`.
    pub counters: Counters,
    /// Orders read back for this run's users.
    pub stored: Vec<StoredOrder>,
    /// Time from the end of the load until both services were ready, ms.
    pub heal_ready_ms: Option<u64>,
    /// Keys sent again while healing.
    pub resent: usize,
}

/// Runs the whole thing: wait for health, users, load, heal, read back.
pub async fn run(args: &Args) -> anyhow::Result<RunOutput> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .connect_timeout(Duration::from_secs(1).min(args.timeout))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Registered first: SIGUSR1's default action would end the process.
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut out = RunOutput {
        run_id: run_id.clone(),
        ..RunOutput::default()
    };

    let ready_by = Instant::now() + args.heal_timeout;
    for url in std::iter::once(&args.user_url).chain(&args.order_urls) {
        if !wait_ready(&client, url, ready_by).await {
            bail!(
                "{url}/health/ready did not answer 200 within {:?}",
                args.heal_timeout
            );
        }
    }
    let users = create_users(&client, args, &run_id, ready_by).await?;
    eprintln!(
        "loadgen: run {run_id}, {} users, {:?} at {} orders/s with {} workers (seed {})",
        users.len(),
        args.duration,
        args.rate,
        args.concurrency,
        args.seed
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let observer = tokio::spawn(observe(args.clone(), stop_rx.clone()));
    // Let the observer take its first metrics sample before traffic starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        args: args.clone(),
        run_id,
        users: users.clone(),
        next: AtomicUsize::new(0),
        deadline: Instant::now() + args.duration,
        ok: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
    });
    out.load_start_ms = epoch_ms();
    let progress = tokio::spawn(progress(ctx.clone(), stop_rx.clone()));
    let bursts = tokio::spawn(bursts(ctx.clone(), signal, stop_rx));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| tokio::spawn(worker(w, ctx.clone())))
        .collect();
    for w in workers {
        let (keys, attempts) = w.await?;
        out.keys.extend(keys);
        out.attempts.extend(attempts);
    }
    out.load_end_ms = epoch_ms();
    let _ = stop_tx.send(true);
    let (keys, attempts) = bursts.await?;
    out.keys.extend(keys);
    out.attempts.extend(attempts);
    let (breakers, counters) = observer.await?;
    progress.abort();
    out.breakers = breakers;
    out.counters = counters;
    out.keys.sort_by_key(|k| k.seq);

    // Heal: both services ready, then settle every key whose fate is unknown.
    let heal_start = Instant::now();
    let heal_by = heal_start + args.heal_timeout;
    let mut ready = wait_ready(&client, &args.user_url, heal_by).await;
    for url in &args.order_urls {
        ready = ready && wait_ready(&client, url, heal_by).await;
    }
    if ready {
        out.heal_ready_ms = Some(heal_start.elapsed().as_millis() as u64);
    } else {
        eprintln!("loadgen: services not ready after {:?}", args.heal_timeout);
    }
    // The checker's own verdict: resend exactly the keys it would count as unknown.
    let outcomes = check::outcomes(out.keys.len(), &out.attempts);
    let unresolved: Vec<&OrderKey> = out
        .keys
        .iter()
        .filter(|k| outcomes.get(k.seq) == Some(&KeyOutcome::Unknown))
        .collect();
    out.resent = unresolved.len();
    if !unresolved.is_empty() {
        eprintln!(
            "loadgen: healing: sending {} unresolved keys again",
            unresolved.len()
        );
    }
    for key in unresolved {
        for n in 0..10u32 {
            if Instant::now() >= heal_by {
                break;
            }
            let url = args.order_url_for(key.seq, n as usize);
            let a = place(&client, url, key, true).await;
            let done = a.result.is_final();
            out.attempts.push(a);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(n + 1))).await;
        }
    }
    out.attempts.sort_by_key(|a| a.start_ms);

    // Read back every order of this run's users.
    for user in &users {
        let orders = read_back(&client, args.order_url(), user, heal_by)
            .await
            .with_context(|| format!("reading back the orders of user {user}"))?;
        for o in orders {
            let Some(id) = o.get("id").and_then(id_string) else {
                continue;
            };
            out.stored.push(StoredOrder {
                id,
                seq: seq_of(&o, &out.run_id),
            });
        }
    }
    Ok(out)
}

struct Ctx {
    client: reqwest::Client,
    args: Args,
    run_id: String,
    users: Vec<Value>,
    next: AtomicUsize,
    deadline: Instant,
    ok: AtomicUsize,
    errors: AtomicUsize,
}

/// Product ids carry the key's sequence number, so an order read back can be
/// matched to its key: order-service never returns idempotency keys.
pub fn product_id(run_id: &str, seq: usize) -> String {
    format!("chaos-{run_id}-{seq}")
}

/// The key sequence number an order read back carries, if it is one of this run's.
pub fn seq_of(order: &Value, run_id: &str) -> Option<usize> {
    order
        .get("product_id")
        .and_then(Value::as_str)
        .and_then(|p| {
            p.strip_prefix("chaos-")?
                .strip_prefix(run_id)?
                .strip_prefix('-')?
                .parse()
                .ok()
        })
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn worker(w: usize, ctx: Arc<Ctx>) -> (Vec<OrderKey>, Vec<Attempt>) {
    let args = &ctx.args;
    let mut rng = StdRng::seed_from_u64(mix(args.seed, w as u64 + 1));
    let period = Duration::from_secs_f64(args.concurrency as f64 / args.rate);
    let stagger = period.mul_f64(w as f64 / args.concurrency as f64);
    let mut tick = tokio::time::interval_at(Instant::now() + stagger, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut keys = Vec::new();
    let mut attempts = Vec::new();
    loop {
        tick.tick().await;
        if Instant::now() >= ctx.deadline {
            break;
        }
        let Some((key, mut tried)) = order(&ctx, &mut rng).await else {
            break;
        };
        keys.push(key);
        attempts.append(&mut tried);
    }
    (keys, attempts)
}

fn mix(seed: u64, n: u64) -> u64 {
    seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Places one new order: the first attempt, then the same key again while the outcome is
/// unknown (or the connection was refused), with a short backoff. `None` once the count is spent.
async fn order(ctx: &Ctx, rng: &mut StdRng) -> Option<(OrderKey, Vec<Attempt>)> {
    let args = &ctx.args;
    let seq = ctx.next.fetch_add(1, Ordering::Relaxed);
    if seq >= args.max_orders {
        return None;
    }
    let user = rng.random_range(0..ctx.users.len());
    let key = OrderKey {
        seq,
        key: format!("{}-{seq}", ctx.run_id),
        user,
        body: json!({
            "user_id": ctx.users[user],
            "product_id": product_id(&ctx.run_id, seq),
            "quantity": rng.random_range(1..=5u32),
            "price": rng.random_range(100..=10_000u32) as f64 / 100.0,
        }),
    };
    let mut attempts = Vec::new();
    for n in 0..args.attempts {
        let a = place(&ctx.client, args.order_url_for(seq, n), &key, false).await;
        let done = a.result.is_final();
        if a.result.is_error() {
            ctx.errors.fetch_add(1, Ordering::Relaxed);
        } else {
            ctx.ok.fetch_add(1, Ordering::Relaxed);
        }
        attempts.push(a);
        if done || Instant::now() >= ctx.deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis((100 << n).min(1000))).await;
    }
    Some((key, attempts))
}

/// On each SIGUSR1, places `--burst` orders at once (the chaos script kills order-service
/// right after, so requests are in flight when it dies). Ends when `stop` flips.
async fn bursts(
    ctx: Arc<Ctx>,
    mut signal: Option<tokio::signal::unix::Signal>,
    mut stop: watch::Receiver<bool>,
) -> (Vec<OrderKey>, Vec<Attempt>) {
    let mut tasks = Vec::new();
    let mut n = 0u64;
    loop {
        let fired = async {
            match signal.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = fired => {
                eprintln!("loadgen: burst of {} orders", ctx.args.burst);
                for _ in 0..ctx.args.burst {
                    n += 1;
                    let ctx = ctx.clone();
                    let mut rng = StdRng::seed_from_u64(mix(ctx.args.seed, 1_000_000 + n));
                    tasks.push(tokio::spawn(async move { order(&ctx, &mut rng).await }));
                }
            }
            _ = stop.changed() => break,
        }
    }
    let mut keys = Vec::new();
    let mut attempts = Vec::new();
    for t in tasks {
        if let Ok(Some((key, mut tried))) = t.await {
            keys.push(key);
            attempts.append(&mut tried);
        }
    }
    (keys, attempts)
}

/// One `POST /orders` attempt with the key's `Idempotency-Key`.
pub async fn place(client: &reqwest::Client, base: &str, key: &OrderKey, heal: bool) -> Attempt {
    let start_ms = epoch_ms();
    let started = Instant::now();
    let sent = client
        .post(format!("{base}/orders"))
        .header("Idempotency-Key", &key.key)
        .json(&key.body)
        .send()
        .await;
    let result = match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(body) => {
                    let id = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("id").and_then(id_string));
                    AttemptResult::from_status(status, id)
                }
                Err(e) => unknown(&e),
            }
        }
        Err(e) if e.is_connect() => AttemptResult::Refused,
        Err(e) => unknown(&e),
    };
    Attempt {
        seq: key.seq,
        start_ms,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        result,
        heal,
    }
}

fn unknown(e: &reqwest::Error) -> AttemptResult {
    AttemptResult::Unknown {
        why: if e.is_timeout() { "timeout" } else { "reset" }.to_owned(),
    }
}

async fn progress(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    if ctx.args.progress == 0 {
        return;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(ctx.args.progress));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        eprintln!(
            "loadgen: t={:>4}s orders={} ok={} errors={}",
            started.elapsed().as_secs(),
            ctx.next.load(Ordering::Relaxed).min(ctx.args.max_orders),
            ctx.ok.load(Ordering::Relaxed),
            ctx.errors.load(Ordering::Relaxed)
        );
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str, until: Instant) -> bool {
    loop {
        let ok = client
            .get(format!("{base}/health/ready"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_users(
    client: &reqwest::Client,
    args: &Args,
    run_id: &str,
    until: Instant,
) -> anyhow::Result<Vec<Value>> {
    let mut users = Vec::new();
    for i in 0..args.users {
        let body = json!({
            "name": format!("chaos {run_id} {i}"),
            "email": format!("chaos-{run_id}-{i}@example.test"),
        });
        loop {
            let resp = client
                .post(format!("{}/users", args.user_url))
                .json(&body)
                .send()
                .await;
            if let Ok(resp) = resp {
                let status = resp.status();
                if let Ok(v) = resp.json::<Value>().await
                    && status.is_success()
                    && let Some(id) = v.get("id")
                {
                    users.push(id.clone());
                    break;
                }
                if status.is_client_error() {
                    bail!("POST /users answered {status}");
                }
            }
            if Instant::now() >= until {
                bail!("could not create users on {}", args.user_url);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(users)
}

/// `GET /orders?user_id=` until it answers, following a `next_cursor` if the service pages.
async fn read_back(
    client: &reqwest::Client,
    base: &str,
    user: &Value,
    until: Instant,
) -> anyhow::Result<Vec<Value>> {
    let user = id_string(user).context("user id is neither a string nor a number")?;
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = reqwest::Url::parse(&format!("{base}/orders"))?;
        url.query_pairs_mut()
            .append_pair("user_id", &user)
            .append_pair("limit", "100");
        if let Some(c) = &cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let doc = loop {
            let resp = client.get(url.clone()).send().await;
            match resp {
                Ok(r) if r.status().is_success() => break r.json::<Value>().await?,
                Ok(r) if r.status().is_client_error() => {
                    bail!("GET /orders answered {}", r.status())
                }
                _ if Instant::now() >= until => bail!("GET /orders kept failing"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let (page, next) = page(&doc);
        orders.extend(page);
        match next {
            Some(n) if Some(&n) != cursor.as_ref() => cursor = Some(n),
            _ => return Ok(orders),
        }
    }
}

/// The orders in one listing page (a bare array or `{"orders"|"items"|"data": [...]}`) and the next cursor.
pub fn page(doc: &Value) -> (Vec<Value>, Option<String>) {
    if let Some(list) = doc.as_array() {
        return (list.clone(), None);
    }
    let list = ["orders", "items", "data"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_array))
        .cloned()
        .unwrap_or_default();
    let next = ["next_cursor", "next"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_str))
        .map(str::to_owned);
    (list, next)
}

/// Polls every order-service replica's `/resilience` (breaker states, retry and rejection
/// counts) and user-service's `/metrics` (lookups served) every 200 ms until `stop` flips.
/// Counters are followed per replica across its restarts and summed; what a killed process
/// served since the last poll is not seen. With several replicas a breaker's name is prefixed
/// by its replica's address, since each replica has breakers of its own.
async fn observe(
    args: Args,
    mut stop: watch::Receiver<bool>,
) -> (Vec<BreakerObservation>, Counters) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .no_proxy()
        .build()
        .expect("a plain HTTP client always builds");
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut observations = Vec::new();
    let mut replicas: Vec<ReplicaCounters> = args
        .order_urls
        .iter()
        .map(|_| ReplicaCounters::default())
        .collect();
    let mut lookups = Accumulator::default();
    let mut counters = Counters::default();
    loop {
        let stopping = *stop.borrow();
        let polls = args
            .order_urls
            .iter()
            .map(|url| client.get(format!("{url}/resilience")).send());
        let (reports, metrics) = tokio::join!(
            futures_util::future::join_all(polls),
            client.get(format!("{}/metrics", args.user_url)).send(),
        );
        for ((resp, url), acc) in reports.into_iter().zip(&args.order_urls).zip(&mut replicas) {
            let Ok(doc) = (match resp {
                Ok(r) => r.json::<Value>().await,
                Err(e) => Err(e),
            }) else {
                continue;
            };
            counters.samples.1 += 1;
            let t_ms = epoch_ms();
            let breakers = doc.get("breakers").and_then(Value::as_array);
            for b in breakers.into_iter().flatten() {
                let (Some(name), Some(state)) = (
                    b.get("name").and_then(Value::as_str),
                    b.get("state").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let name = match args.order_urls.len() {
                    1 => name.to_owned(),
                    _ => format!("{} {name}", url.trim_start_matches("http://")),
                };
                if seen.get(&name).map(String::as_str) != Some(state) {
                    seen.insert(name.clone(), state.to_owned());
                    observations.push(BreakerObservation {
                        t_ms,
                        name,
                        state: state.to_owned(),
                    });
                }
            }
            acc.rejected
                .sample(total(&doc, "breakers", "rejected_total"));
            acc.requests
                .sample(total(&doc, "retries", "requests_total"));
            acc.retries.sample(total(&doc, "retries", "retries_total"));
            acc.exhausted
                .sample(total(&doc, "retries", "budget_exhausted_total"));
        }
        if let Ok(r) = metrics
            && let Ok(text) = r.text().await
        {
            counters.samples.0 += 1;
            lookups.sample(prom::sum(
                &prom::parse(&text),
                "http_server_request_duration_seconds_count",
                |s| {
                    s.label("method") == Some("GET")
                        && s.label("route").is_some_and(|r| r.starts_with("/users/"))
                },
            ));
        }
        if stopping {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => {}
        }
    }
    counters.user_lookups = lookups.total;
    for r in &replicas {
        counters.retry_requests += r.requests.total;
        counters.retry_retries += r.retries.total;
        counters.budget_exhausted += r.exhausted.total;
        counters.circuit_rejected += r.rejected.total;
    }
    (observations, counters)
}

/// Sum of `field` over the entries of the `list` array of a `/resilience` document.
fn total(doc: &Value, list: &str, field: &str) -> f64 {
    doc.get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get(field).and_then(Value::as_f64))
        .sum()
}

/// One replica's `/resilience` counters, each followed across that replica's restarts.
#[derive(Default)]
struct ReplicaCounters {
    requests: Accumulator,
    retries: Accumulator,
    exhausted: Accumulator,
    rejected: Accumulator,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_matched_to_keys_by_product_id() {
        let run = "abc123";
        assert_eq!(
            seq_of(&json!({"product_id": product_id(run, 5)}), run),
            Some(5)
        );
        assert_eq!(
            seq_of(&json!({"product_id": product_id("other", 5)}), run),
            None
        );
        assert_eq!(seq_of(&json!({"product_id": "sku-1"}), run), None);
        assert_eq!(id_string(&json!(42)), Some("42".into()));
        let doc = json!({"retries": [{"retries_total": 3}, {"retries_total": 4}, {}]});
        assert_eq!(total(&doc, "retries", "retries_total"), 7.0);
    }

    #[test]
    fn pages_come_bare_or_wrapped() {
        let (list, next) = page(&json!([{"id": 1}]));
        assert_eq!((list.len(), next), (1, None));
        let (list, next) = page(&json!({"orders": [{"id": 1}, {"id": 2}], "next_cursor": "c2"}));
        assert_eq!((list.len(), next.as_deref()), (2, Some("c2")));
        let (list, _) = page(&json!({"items": []}));
        assert!(list.is_empty());
    }
}
