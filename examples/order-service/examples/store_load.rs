//! The order store alone under load: `CLIENTS` tasks each placing one order after another
//! through the group commit (or, with `--per-order`, a transaction per order, as before it)
//! for `SECONDS`, on the database of `DATABASE_URL`. Prints one JSON line: orders/s, latency
//! quantiles, commits. No HTTP and no user lookup: what the store can commit.
//!
//! ```sh
//! cargo run --release -p order-service --example store_load -- sqlite://data/load/orders.db 64 10
//! cargo run --release -p order-service --example store_load -- sqlite://data/load/orders.db 64 10 --per-order
//! cargo run --release -p order-service --example store_load -- postgres://u:p@127.0.0.1/db 64 10 --writers 2
//! ```

use std::time::Duration;

use order_service::{
    OrderStatus,
    group_commit::{OrderWriter, WriterConfig},
    render_order,
    store::{self, Inserted, MIGRATIONS, NewOrder},
};
use service_kit::store::{Store, now_ms};
use tokio::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "sqlite://data/store-load/orders.db".into());
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let per_order = args.iter().any(|a| a == "--per-order");
    let writers = args
        .iter()
        .position(|a| a == "--writers")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    let store = Store::connect(&url, &MIGRATIONS)
        .await
        .expect("open the store");
    let config = WriterConfig {
        max_batch: WriterConfig::MAX_BATCH,
        queue: WriterConfig::QUEUE,
        writers: writers.unwrap_or_else(|| WriterConfig::default_writers(store.backend())),
    };
    let writer = OrderWriter::spawn(store.clone(), config, render_order);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (writer, store, run) = (writer.clone(), store.clone(), run.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let key = format!("{run}-{c}-{n}");
                    let new = NewOrder {
                        user_id: c as i64 + 1,
                        product_id: "sku-42",
                        quantity: 1,
                        price: None,
                        status: OrderStatus::Confirmed,
                        idempotency_key: &key,
                        fingerprint: "fp",
                        now_ms: now_ms(),
                    };
                    let t = Instant::now();
                    let done = if per_order {
                        store::insert_with_key(&store, &new, render_order)
                            .await
                            .map_err(|e| e.to_string())
                    } else {
                        writer.insert(&new).await.map_err(|e| e.to_string())
                    };
                    match done {
                        Ok(Inserted::Created(..)) => latencies.push(t.elapsed()),
                        other => panic!("{other:?}"),
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let stats = writer.stats();
    println!(
        "{{\"backend\":\"{:?}\",\"mode\":\"{}\",\"writers\":{},\"clients\":{clients},\"orders\":{},\"orders_per_s\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"commits\":{},\"orders_per_commit\":{:.1}}}",
        store.backend(),
        if per_order { "per-order" } else { "group" },
        config.writers,
        all.len(),
        all.len() as f64 / elapsed,
        q(0.5),
        q(0.99),
        stats.batches,
        if stats.batches > 0 {
            stats.orders as f64 / stats.batches as f64
        } else {
            0.0
        },
    );
    store.close().await;
}
