//! Group commit: concurrent orders share one transaction, so one sync of the log makes a whole
//! batch durable.
//!
//! With a transaction per order, SQLite (WAL, `synchronous=FULL`) syncs its log once per order
//! through its one writer connection: one order per fsync, however many clients wait. Here a
//! handler hands its order to a writer task through a bounded queue ([`OrderWriter::insert`])
//! and waits. The writer takes what is queued (up to `ORDER_WRITE_BATCH` orders), begins a
//! write transaction, tops the batch up with whatever arrived while it waited for the
//! transaction, writes the whole batch with a few statements ([`store::insert_many`]),
//! commits once, and only then answers each waiter. Should any of those statements fail, the
//! batch is rolled back to its savepoint and written again one order at a time, each in a
//! savepoint of its own ([`store::insert_in`]), so that only the failing order fails. An
//! order alone in its batch is written without a savepoint ([`store::insert_alone`]): rolling
//! its transaction back undoes nothing else. Nothing waits on purpose: orders that arrive while
//! one batch commits make up the next, so a lone order is committed at once and batches grow
//! only with the load.
//!
//! - No order is acknowledged before the commit that holds it has returned (on SQLite with
//!   `synchronous=FULL`, once the log is on disk).
//! - An order whose statements fail is rolled back to its savepoint and answered with its own
//!   error; the rest of its batch commits.
//! - Statements are what a commit costs besides the sync: each one is a round trip to the
//!   connection's thread (on SQLite) or to the server, so a batch takes a fixed handful of
//!   them, not a handful per order.
//! - When the transaction cannot begin or commit, or a savepoint cannot be rolled back, every
//!   order of the batch is answered with an error and none is acknowledged. Should such a
//!   commit have reached the disk after all, the client's retry with the same key replays it.
//! - A waiter that has gone (client disconnected, deadline passed) before its batch begins is
//!   skipped: nobody could be told its order was stored, and a retry with its key places it.
//! - The queue is bounded (`ORDER_WRITE_QUEUE`): when it is full an order is refused at once
//!   with 503 and `Retry-After`, not queued behind more orders than the store can commit in a
//!   client's time.
//!
//! Idempotency is as with a transaction per order: each order runs the same statements (key
//! record first, `ON CONFLICT DO NOTHING`), so a key already taken, by an earlier batch, by an
//! earlier order of the same batch or by another replica, is answered with the stored answer.
//!
//! On PostgreSQL several writers can commit batches side by side (`ORDER_WRITERS`, each on a
//! connection of the pool; two by default, so that with few clients each order does not wait
//! for another's round trips to the server); on SQLite there is one writer connection, so one
//! writer. BENCHMARKS.md has the measurements behind both choices.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use service_kit::{
    problem::Problem,
    store::{Backend, Store},
};
use sqlx::{Any, Transaction};
use tokio::{
    sync::{Mutex, mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    Order, OrderStatus,
    store::{self, Inserted, NewOrder},
};

/// Renders an order as the body of its 201 (stored with its key, for replays).
pub type Render = fn(&Order) -> String;

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// `ORDER_WRITE_BATCH`: most orders in one transaction.
    pub max_batch: usize,
    /// `ORDER_WRITE_QUEUE`: most orders waiting for a writer; past it orders are refused.
    pub queue: usize,
    /// `ORDER_WRITERS`: writers committing side by side (1 on SQLite).
    pub writers: usize,
}

impl WriterConfig {
    /// Default `ORDER_WRITE_BATCH`.
    pub const MAX_BATCH: usize = 256;
    /// Default `ORDER_WRITE_QUEUE`.
    pub const QUEUE: usize = 1024;

    /// The default number of writers for `backend`: SQLite has one writer connection;
    /// PostgreSQL takes several transactions at once and flushes their commits together.
    pub fn default_writers(backend: Backend) -> usize {
        match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        }
    }
}

/// The handlers' side of the group commit: cheap to clone, all clones feed one queue.
#[derive(Debug, Clone)]
pub struct OrderWriter {
    queue: mpsc::Sender<Job>,
    stats: Arc<Stats>,
}

/// The writers' side, built by [`OrderWriter::new`] and started by [`Writers::spawn`].
#[derive(Debug)]
pub struct Writers {
    shared: Arc<Shared>,
    writers: usize,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    queue: Mutex<mpsc::Receiver<Job>>,
    max_batch: usize,
    render: Render,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    batches: AtomicU64,
    orders: AtomicU64,
    failed_batches: AtomicU64,
    one_by_one: AtomicU64,
}

/// What the writers have done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Orders in them (created, answered from a taken key, or failed alone).
    pub orders: u64,
    /// Batches that failed whole (begin, commit or a savepoint), none of their orders
    /// acknowledged.
    pub failed_batches: u64,
    /// Batches written again one order at a time, after a statement for all of them failed.
    pub one_by_one: u64,
}

/// One order waiting for a writer.
#[derive(Debug)]
struct Job {
    order: QueuedOrder,
    reply: oneshot::Sender<Result<Inserted, WriteError>>,
}

/// A [`NewOrder`] that owns its text, to cross to the writer task.
#[derive(Debug)]
struct QueuedOrder {
    user_id: i64,
    product_id: String,
    quantity: i64,
    price: Option<f64>,
    status: OrderStatus,
    idempotency_key: String,
    fingerprint: String,
    now_ms: i64,
}

impl QueuedOrder {
    fn new(new: &NewOrder<'_>) -> Self {
        Self {
            user_id: new.user_id,
            product_id: new.product_id.to_owned(),
            quantity: new.quantity,
            price: new.price,
            status: new.status,
            idempotency_key: new.idempotency_key.to_owned(),
            fingerprint: new.fingerprint.to_owned(),
            now_ms: new.now_ms,
        }
    }

    fn as_new(&self) -> NewOrder<'_> {
        NewOrder {
            user_id: self.user_id,
            product_id: &self.product_id,
            quantity: self.quantity,
            price: self.price,
            status: self.status,
            idempotency_key: &self.idempotency_key,
            fingerprint: &self.fingerprint,
            now_ms: self.now_ms,
        }
    }
}

/// Why an order was not written.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// The queue was full: the order was not queued.
    QueueFull {
        /// `ORDER_WRITE_QUEUE`.
        capacity: usize,
    },
    /// This order's statements failed and were rolled back alone.
    Row(Arc<sqlx::Error>),
    /// Its batch's transaction could not begin or commit: no order of it was acknowledged.
    Batch(Arc<sqlx::Error>),
    /// The writers have stopped.
    Stopped,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::QueueFull { capacity } => {
                write!(f, "the write queue is full ({capacity} orders)")
            }
            WriteError::Row(e) => write!(f, "the order's statements failed: {e}"),
            WriteError::Batch(e) => write!(f, "the batch's transaction failed: {e}"),
            WriteError::Stopped => f.write_str("the writers have stopped"),
        }
    }
}

impl std::error::Error for WriteError {}

impl WriteError {
    /// The answer: always 503 with `Retry-After` (the order was not stored; retrying later,
    /// with the same key, is safe).
    pub fn problem(&self) -> Problem {
        let retry = Duration::from_secs(1);
        match self {
            WriteError::QueueFull { capacity } => {
                metrics::counter!("orders_rejected_write_queue_full_total").increment(1);
                Problem::unavailable(
                    format!(
                        "order-service's write queue is full ({capacity} orders waiting to be committed); the order was not stored"
                    ),
                    retry,
                )
            }
            WriteError::Row(e) | WriteError::Batch(e) => service_kit::store::unavailable(e),
            WriteError::Stopped => {
                tracing::error!("order writers stopped; refusing orders");
                Problem::unavailable(
                    "order-service cannot write orders right now; the order was not stored",
                    retry,
                )
            }
        }
    }
}

impl OrderWriter {
    /// The queue and the writers that drain it over `store`; nothing runs until
    /// [`Writers::spawn`].
    pub fn new(store: Store, config: WriterConfig, render: Render) -> (Self, Writers) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            store,
            queue: Mutex::new(rx),
            max_batch: config.max_batch.max(1),
            render,
            stats: stats.clone(),
        });
        let writers = Writers {
            shared,
            writers: config.writers.max(1),
        };
        (Self { queue: tx, stats }, writers)
    }

    /// [`new`](OrderWriter::new), with the writers started. They stop once every clone of
    /// the returned handle is dropped and the queue is empty.
    pub fn spawn(store: Store, config: WriterConfig, render: Render) -> Self {
        let (writer, writers) = Self::new(store, config, render);
        writers.spawn();
        writer
    }

    /// Queues `new` and waits until the transaction holding it has committed: `Ok` only then.
    /// Refused at once when the queue is full.
    pub async fn insert(&self, new: &NewOrder<'_>) -> Result<Inserted, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            order: QueuedOrder::new(new),
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(WriteError::QueueFull {
                    capacity: self.queue.max_capacity(),
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WriteError::Stopped),
        }
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Orders queued and not yet taken by a writer.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// What the writers have done so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            orders: self.stats.orders.load(Ordering::Relaxed),
            failed_batches: self.stats.failed_batches.load(Ordering::Relaxed),
            one_by_one: self.stats.one_by_one.load(Ordering::Relaxed),
        }
    }
}

impl Writers {
    /// Starts the writer tasks. Each ends once the queue is closed (every [`OrderWriter`]
    /// dropped) and empty.
    pub fn spawn(self) -> Vec<JoinHandle<()>> {
        (0..self.writers)
            .map(|_| tokio::spawn(self.shared.clone().run()))
            .collect()
    }
}

impl Shared {
    async fn run(self: Arc<Self>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            // One writer waits on the queue at a time; the others wait for it to take a batch.
            let taken = self
                .queue
                .lock()
                .await
                .recv_many(&mut batch, self.max_batch)
                .await;
            if taken == 0 {
                return;
            }
            self.commit(&mut batch).await;
        }
    }

    /// Writes and commits `batch` (emptied), then answers each waiter.
    async fn commit(&self, batch: &mut Vec<Job>) {
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let mut tx = match self.store.begin_write().await {
            Ok(tx) => tx,
            Err(e) => return self.fail(batch, e),
        };
        // Orders that arrived while the transaction began (on SQLite, while another write
        // held the one connection) join this batch.
        if let Ok(mut queue) = self.queue.try_lock() {
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(job) if job.reply.is_closed() => {}
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        if batch.len() == 1 {
            // Alone in its transaction, an order needs no savepoint (two statements fewer: two
            // round trips, on PostgreSQL): should it fail, rolling back undoes nothing else.
            let outcome = store::insert_alone(&mut tx, &batch[0].order.as_new(), self.render).await;
            return match outcome {
                Ok(inserted) => self.commit_answering(tx, batch, vec![Ok(inserted)]).await,
                Err(e) => {
                    drop(tx);
                    if let Some(job) = batch.pop() {
                        let _ = job.reply.send(Err(WriteError::Row(Arc::new(e))));
                    }
                }
            };
        }
        let orders: Vec<NewOrder<'_>> = batch.iter().map(|job| job.order.as_new()).collect();
        let outcomes = match store::insert_many(&mut tx, &orders, self.render).await {
            Ok(Ok(all)) => all.into_iter().map(Ok).collect(),
            Ok(Err(e)) => {
                // Rolled back: one by one, so that only the failing order fails.
                tracing::warn!(error = %e, orders = orders.len(), "a batch of orders failed together; writing them one by one");
                self.stats.one_by_one.fetch_add(1, Ordering::Relaxed);
                let mut outcomes = Vec::with_capacity(orders.len());
                for order in &orders {
                    match store::insert_in(&mut tx, order, self.render).await {
                        Ok(outcome) => outcomes.push(outcome),
                        Err(e) => {
                            drop(orders);
                            drop(tx);
                            return self.fail(batch, e);
                        }
                    }
                }
                outcomes
            }
            Err(e) => {
                drop(orders);
                drop(tx);
                return self.fail(batch, e);
            }
        };
        drop(orders);
        self.commit_answering(tx, batch, outcomes).await;
    }

    /// Commits `tx`, then answers each waiter of `batch` (emptied) with its outcome; when the
    /// commit fails, every waiter with the commit's error.
    async fn commit_answering(
        &self,
        tx: Transaction<'static, Any>,
        batch: &mut Vec<Job>,
        outcomes: Vec<Result<Inserted, sqlx::Error>>,
    ) {
        if let Err(e) = tx.commit().await {
            return self.fail(batch, e);
        }
        let n = batch.len() as u64;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.orders.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("orders_write_batches_total").increment(1);
        metrics::counter!("orders_write_batch_orders_total").increment(n);
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let _ = job
                .reply
                .send(outcome.map_err(|e| WriteError::Row(Arc::new(e))));
        }
    }

    /// Answers every waiter of `batch` (emptied) with `e`.
    fn fail(&self, batch: &mut Vec<Job>, e: sqlx::Error) {
        tracing::warn!(error = %e, orders = batch.len(), "a batch of orders failed; none was acknowledged");
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("orders_write_batch_failures_total").increment(1);
        let e = Arc::new(e);
        for job in batch.drain(..) {
            let _ = job.reply.send(Err(WriteError::Batch(e.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use service_kit::store::testing;
    use sqlx::Executor;

    use super::*;
    use crate::store::MIGRATIONS;

    const CONFIG: WriterConfig = WriterConfig {
        max_batch: 256,
        queue: 1024,
        writers: 1,
    };

    fn render(o: &Order) -> String {
        format!("{{\"id\":{}}}", o.id)
    }

    fn order(user_id: i64, key: &str, product: &str) -> QueuedOrder {
        QueuedOrder {
            user_id,
            product_id: product.to_owned(),
            quantity: 1,
            price: None,
            status: OrderStatus::Confirmed,
            idempotency_key: key.to_owned(),
            fingerprint: "fp".to_owned(),
            now_ms: 1,
        }
    }

    /// Sends each order from a task of its own and returns the tasks once every order is
    /// queued, so a writer started afterwards finds them all in its first batch.
    async fn queue_all(
        writer: &OrderWriter,
        orders: Vec<QueuedOrder>,
    ) -> Vec<JoinHandle<Result<Inserted, WriteError>>> {
        let n = orders.len();
        let tasks = orders
            .into_iter()
            .map(|o| {
                let w = writer.clone();
                tokio::spawn(async move { w.insert(&o.as_new()).await })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(5), async {
            while writer.queued() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every order queued");
        tasks
    }

    async fn answers(
        tasks: Vec<JoinHandle<Result<Inserted, WriteError>>>,
    ) -> Vec<Result<Inserted, WriteError>> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("insert task"));
        }
        out
    }

    fn created_id(r: &Result<Inserted, WriteError>) -> i64 {
        match r {
            Ok(Inserted::Created(o, _)) => o.id,
            other => panic!("expected a created order, got {other:?}"),
        }
    }

    /// Runs each statement (PostgreSQL prepares one statement at a time).
    async fn run_sql(store: &Store, statements: &[&str]) {
        let mut conn = store.writer().acquire().await.unwrap();
        for s in statements {
            conn.execute(sqlx::AssertSqlSafe(*s)).await.unwrap();
        }
    }

    /// Makes inserting an order for product `poison-row` fail (its statement only).
    async fn poison_rows(store: &Store) {
        match store.backend() {
            Backend::Sqlite => run_sql(store, &["CREATE TRIGGER poison_row BEFORE INSERT ON orders
                 WHEN NEW.product_id = 'poison-row' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"]).await,
            Backend::Postgres => run_sql(store, &[
                "CREATE FUNCTION poison_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF NEW.product_id = 'poison-row' THEN RAISE EXCEPTION 'poisoned row'; END IF;
                 RETURN NEW; END $$",
                "CREATE TRIGGER poison_row BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION poison_row()",
            ]).await,
        }
    }

    /// Makes a transaction that inserted an order for product `poison-commit` fail at its
    /// `COMMIT`, every statement before having succeeded: a deferred constraint.
    async fn poison_commits(store: &Store) {
        match store.backend() {
            // Foreign keys are checked per connection, and the writer has one.
            Backend::Sqlite => run_sql(store, &[
                "PRAGMA foreign_keys = ON",
                "CREATE TABLE poison_parent (id INTEGER PRIMARY KEY)",
                "CREATE TABLE poison_child (parent INTEGER REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED)",
                "CREATE TRIGGER poison_commit AFTER INSERT ON orders WHEN NEW.product_id = 'poison-commit'
                 BEGIN INSERT INTO poison_child (parent) VALUES (-1); END",
            ]).await,
            Backend::Postgres => run_sql(store, &[
                "CREATE FUNCTION poison_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF NEW.product_id = 'poison-commit' THEN RAISE EXCEPTION 'poisoned commit'; END IF;
                 RETURN NULL; END $$",
                "CREATE CONSTRAINT TRIGGER poison_commit AFTER INSERT ON orders
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION poison_commit()",
            ]).await,
        }
    }

    #[tokio::test]
    async fn queued_orders_are_committed_together_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            let (writer, writers) = OrderWriter::new(s.clone(), CONFIG, render);
            let orders = (0..100).map(|i| order(1, &format!("k{i}"), "p")).collect();
            let tasks = queue_all(&writer, orders).await;
            writers.spawn();
            let got = answers(tasks).await;
            let mut ids: Vec<i64> = got.iter().map(created_id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 100);
            assert_eq!(
                writer.stats(),
                WriterStats {
                    batches: 1,
                    orders: 100,
                    failed_batches: 0,
                    one_by_one: 0,
                }
            );
            assert_eq!(store::count(&s).await.unwrap(), 100);
            assert_eq!(store::key_count(&s).await.unwrap(), 100);
            s.close().await;
        }
    }

    /// Written together, each key still names its own order: its stored answer and its
    /// acknowledgement carry the id of the order with its product.
    #[tokio::test]
    async fn a_batch_gives_each_key_its_own_order_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            let earlier = match store::insert_with_key(&s, &order(3, "k7", "old").as_new(), render)
                .await
                .unwrap()
            {
                Inserted::Created(o, _) => o.id,
                other => panic!("{other:?}"),
            };
            let (writer, writers) = OrderWriter::new(s.clone(), CONFIG, render);
            // Users 1..=3, keys k0..k19 each, one product per order; user 3's k7 is taken.
            let orders = (0..60)
                .map(|i| order(i % 3 + 1, &format!("k{}", i / 3), &format!("p{i}")))
                .collect();
            let tasks = queue_all(&writer, orders).await;
            writers.spawn();
            let got = answers(tasks).await;
            for (i, r) in got.iter().enumerate() {
                let (user, key, product) =
                    (i as i64 % 3 + 1, format!("k{}", i / 3), format!("p{i}"));
                let stored = store::find_key(&s, user, &key).await.unwrap().unwrap();
                if (user, key.as_str()) == (3, "k7") {
                    assert!(
                        matches!(r, Ok(Inserted::KeyTaken(st)) if st.order_id == earlier),
                        "{r:?}"
                    );
                    continue;
                }
                let id = created_id(r);
                let Ok(Inserted::Created(o, body)) = r else {
                    unreachable!()
                };
                assert_eq!((o.user_id, o.product_id.as_str()), (user, product.as_str()));
                assert_eq!(*body, format!("{{\"id\":{id}}}"));
                assert_eq!((stored.order_id, stored.body.as_str()), (id, body.as_str()));
                let read = store::get(&s, id).await.unwrap().unwrap();
                assert_eq!(&read, o);
            }
            let stats = writer.stats();
            assert_eq!((stats.batches, stats.one_by_one), (1, 0), "{stats:?}");
            assert_eq!(store::count(&s).await.unwrap(), 60);
            s.close().await;
        }
    }

    /// Many clients placing orders one after another: each commit carries several.
    #[tokio::test]
    async fn concurrent_clients_take_fewer_commits_than_orders_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            let writer = OrderWriter::spawn(s.clone(), CONFIG, render);
            let clients: Vec<_> = (0..32)
                .map(|c| {
                    let w = writer.clone();
                    tokio::spawn(async move {
                        for i in 0..5 {
                            let o = order(c, &format!("k{i}"), "p");
                            created_id(&w.insert(&o.as_new()).await);
                        }
                    })
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
            let stats = writer.stats();
            assert_eq!((stats.orders, stats.one_by_one), (160, 0), "{stats:?}");
            assert!(stats.batches < 160 / 2, "{stats:?}");
            assert_eq!(store::count(&s).await.unwrap(), 160);
            s.close().await;
        }
    }

    /// An acknowledged order is committed: another connection reads it at once. (That no answer
    /// comes before the commit's outcome is what the failed-commit test below shows.)
    #[tokio::test]
    async fn an_acknowledged_order_is_visible_to_other_connections_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            let writer = OrderWriter::spawn(s.clone(), CONFIG, render);
            let clients: Vec<_> = (0..50)
                .map(|c| {
                    let (w, s) = (writer.clone(), s.clone());
                    tokio::spawn(async move {
                        let id = created_id(&w.insert(&order(c, "k", "p").as_new()).await);
                        assert!(
                            store::get(&s, id).await.unwrap().is_some(),
                            "order {id} acknowledged before its commit"
                        );
                    })
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
            s.close().await;
        }
    }

    #[tokio::test]
    async fn an_order_that_fails_alone_does_not_fail_its_batch_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            poison_rows(&s).await;
            let earlier = match store::insert_with_key(&s, &order(1, "taken", "p").as_new(), render)
                .await
                .unwrap()
            {
                Inserted::Created(o, _) => o.id,
                other => panic!("{other:?}"),
            };
            let (writer, writers) = OrderWriter::new(s.clone(), CONFIG, render);
            let tasks = queue_all(
                &writer,
                vec![
                    order(1, "a", "p"),
                    order(1, "poisoned", "poison-row"),
                    order(1, "taken", "p"),
                    order(1, "b", "p"),
                ],
            )
            .await;
            writers.spawn();
            let got = answers(tasks).await;
            created_id(&got[0]);
            assert!(matches!(&got[1], Err(WriteError::Row(_))), "{:?}", got[1]);
            assert!(
                matches!(&got[2], Ok(Inserted::KeyTaken(st)) if st.order_id == earlier),
                "{:?}",
                got[2]
            );
            created_id(&got[3]);
            let stats = writer.stats();
            assert_eq!((stats.batches, stats.one_by_one), (1, 1), "{stats:?}");
            assert_eq!(store::count(&s).await.unwrap(), 3);
            // The failed order's key record went with its savepoint: a retry can place it.
            assert!(store::find_key(&s, 1, "poisoned").await.unwrap().is_none());
            assert!(store::find_key(&s, 1, "b").await.unwrap().is_some());
            s.close().await;
        }
    }

    /// Alone in its batch (no savepoint), a failing order is answered with its own error, and
    /// the next batch commits as usual.
    #[tokio::test]
    async fn a_lone_order_that_fails_gets_its_own_error_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            poison_rows(&s).await;
            let writer = OrderWriter::spawn(s.clone(), CONFIG, render);
            let failed = writer
                .insert(&order(1, "poisoned", "poison-row").as_new())
                .await;
            assert!(matches!(failed, Err(WriteError::Row(_))), "{failed:?}");
            created_id(&writer.insert(&order(1, "next", "p").as_new()).await);
            assert_eq!(store::count(&s).await.unwrap(), 1);
            assert!(store::find_key(&s, 1, "poisoned").await.unwrap().is_none());
            let stats = writer.stats();
            assert_eq!(
                (stats.batches, stats.failed_batches, stats.one_by_one),
                (1, 0, 0),
                "{stats:?}"
            );
            s.close().await;
        }
    }

    /// Two orders with one key in one batch (two replicas, or a retry racing its first
    /// attempt): the second is answered with the first's stored answer.
    #[tokio::test]
    async fn one_key_twice_in_a_batch_stores_one_order_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            let (writer, writers) = OrderWriter::new(s.clone(), CONFIG, render);
            let tasks = queue_all(&writer, vec![order(1, "k", "p"), order(1, "k", "p")]).await;
            writers.spawn();
            let got = answers(tasks).await;
            let first = created_id(&got[0]);
            assert!(
                matches!(&got[1], Ok(Inserted::KeyTaken(st)) if st.order_id == first && st.body == format!("{{\"id\":{first}}}")),
                "{:?}",
                got[1]
            );
            let stats = writer.stats();
            assert_eq!((stats.batches, stats.one_by_one), (1, 0), "{stats:?}");
            assert_eq!(store::count(&s).await.unwrap(), 1);
            s.close().await;
        }
    }

    #[tokio::test]
    async fn a_failed_commit_acknowledges_no_order_of_its_batch_on_every_backend() {
        for s in testing::all(&MIGRATIONS).await {
            poison_commits(&s).await;
            let (writer, writers) = OrderWriter::new(s.clone(), CONFIG, render);
            let tasks = queue_all(
                &writer,
                vec![
                    order(1, "a", "p"),
                    order(1, "poisoned", "poison-commit"),
                    order(1, "b", "p"),
                ],
            )
            .await;
            writers.spawn();
            for r in answers(tasks).await {
                let Err(e @ WriteError::Batch(_)) = r else {
                    panic!("acknowledged or answered alone in a failed commit: {r:?}");
                };
                let p = e.problem();
                assert_eq!(p.status, 503);
                assert!(p.retry_after.is_some());
            }
            assert_eq!(store::count(&s).await.unwrap(), 0);
            assert_eq!(store::key_count(&s).await.unwrap(), 0);
            assert_eq!(
                writer.stats(),
                WriterStats {
                    batches: 0,
                    orders: 0,
                    failed_batches: 1,
                    one_by_one: 0,
                }
            );
            // The writer goes on with the next batch.
            created_id(&writer.insert(&order(1, "a", "p").as_new()).await);
            assert_eq!(store::count(&s).await.unwrap(), 1);
            s.close().await;
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_with_503_and_retry_after() {
        let s = testing::sqlite(&MIGRATIONS).await;
        let config = WriterConfig { queue: 2, ..CONFIG };
        let (writer, writers) = OrderWriter::new(s.clone(), config, render);
        let tasks = queue_all(&writer, vec![order(1, "a", "p"), order(1, "b", "p")]).await;
        let refused = writer.insert(&order(1, "c", "p").as_new()).await;
        let Err(e @ WriteError::QueueFull { capacity: 2 }) = refused else {
            panic!("{refused:?}");
        };
        let p = e.problem();
        assert_eq!((p.status, p.retry_after), (503, Some(1)));
        assert!(p.detail.unwrap().contains("not stored"));
        writers.spawn();
        for r in answers(tasks).await {
            created_id(&r);
        }
        assert_eq!(store::count(&s).await.unwrap(), 2);
        s.close().await;
    }

    /// A waiter that gave up before its batch began is not written (nobody could be told).
    #[tokio::test]
    async fn an_order_whose_waiter_has_gone_is_not_written() {
        let s = testing::sqlite(&MIGRATIONS).await;
        let (writer, writers) = OrderWriter::new(s.clone(), CONFIG, render);
        let mut tasks =
            queue_all(&writer, vec![order(1, "gone", "p"), order(1, "kept", "p")]).await;
        let gone = tasks.remove(0);
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        let handles = writers.spawn();
        created_id(&tasks.remove(0).await.unwrap());
        assert_eq!(store::count(&s).await.unwrap(), 1);
        assert!(store::find_key(&s, 1, "gone").await.unwrap().is_none());
        // Every handle dropped: the writers end, and nothing can be queued any more.
        drop(writer);
        for h in handles {
            tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .expect("the writer ends")
                .unwrap();
        }
        s.close().await;
    }
}
