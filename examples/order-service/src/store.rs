//! Orders and idempotency keys in the store, the same SQL on SQLite and PostgreSQL.
//!
//! A key belongs to the user the order is for: its record's primary key is
//! `(user_id, idempotency_key)`, so two users never see each other's keys. The key's record
//! and the order are written in one transaction, the record first, so whatever happens (a
//! client retrying, two requests racing, the process killed between statements, a restart) a
//! key names at most one order while its record exists.
//!
//! Records expire: [`delete_expired`] removes those older than the retention in small batches
//! (see [`crate::idempotency::Sweeper`]). The order stays; only the record and its stored
//! answer go, so a request with an expired key creates a new order. Orders do not carry the
//! key: nothing that reads an order can learn it.
//!
//! Every write goes through the store's writer ([`Store::begin_write`], [`Store::writer`]):
//! on SQLite that is one connection, so concurrent orders take turns instead of polling
//! SQLite's busy handler for the write lock (which put 85-200 ms into the p99 of
//! `POST /orders` with 8 writers). Reads use the pool.
//!
//! An order is written either in a transaction of its own ([`insert_with_key`]) or, as the
//! service does, in a savepoint of a transaction shared with other orders ([`insert_in`],
//! driven by [`crate::group_commit`]): the same statements, so the same guarantees per key.

use service_kit::store::{Migrations, Store};
use sqlx::{Acquire, Any, AnyConnection, Row, Transaction, any::AnyRow};

use crate::{Order, OrderStatus};

/// The first schema with the dialect's identity column for `orders.id` filled in (as applied;
/// never edited: later changes are later migrations).
macro_rules! schema {
    ($id:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS orders (
                id ",
            $id,
            ",
                user_id BIGINT NOT NULL,
                product_id TEXT NOT NULL,
                quantity BIGINT NOT NULL,
                price DOUBLE PRECISION,
                status TEXT NOT NULL,
                idempotency_key TEXT NOT NULL UNIQUE,
                created_at_ms BIGINT NOT NULL,
                updated_at_ms BIGINT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id);
            CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, id);
            CREATE TABLE IF NOT EXISTS idempotency_keys (
                idempotency_key TEXT PRIMARY KEY,
                fingerprint TEXT NOT NULL,
                status_code INTEGER NOT NULL,
                response_body TEXT NOT NULL,
                order_id BIGINT NOT NULL,
                created_at_ms BIGINT NOT NULL
            );"
        )
    };
}

/// 2002 on SQLite: keys scoped by user, an index to find expired ones, and orders without the
/// key. SQLite cannot change a primary key or drop a `UNIQUE` column, so both tables are
/// rebuilt (copying ids keeps `AUTOINCREMENT` past every id handed out).
const SCOPED_KEYS_SQLITE: &str = "
    CREATE TABLE idempotency_keys_scoped (
        user_id BIGINT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        response_body TEXT NOT NULL,
        order_id BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (user_id, idempotency_key)
    );
    INSERT INTO idempotency_keys_scoped
        (user_id, idempotency_key, fingerprint, status_code, response_body, order_id, created_at_ms)
        SELECT o.user_id, k.idempotency_key, k.fingerprint, k.status_code, k.response_body,
               k.order_id, k.created_at_ms
        FROM idempotency_keys k JOIN orders o ON o.id = k.order_id;
    DROP TABLE idempotency_keys;
    ALTER TABLE idempotency_keys_scoped RENAME TO idempotency_keys;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
    CREATE TABLE orders_unkeyed (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id BIGINT NOT NULL,
        product_id TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price DOUBLE PRECISION,
        status TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    INSERT INTO orders_unkeyed
        (id, user_id, product_id, quantity, price, status, created_at_ms, updated_at_ms)
        SELECT id, user_id, product_id, quantity, price, status, created_at_ms, updated_at_ms
        FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_unkeyed RENAME TO orders;
    CREATE INDEX orders_by_user ON orders (user_id, id);
    CREATE INDEX orders_by_status ON orders (status, id);";

/// 2002 on PostgreSQL: the same change in place.
const SCOPED_KEYS_POSTGRES: &str = "
    ALTER TABLE idempotency_keys ADD COLUMN user_id BIGINT;
    UPDATE idempotency_keys k SET user_id = o.user_id FROM orders o WHERE o.id = k.order_id;
    DELETE FROM idempotency_keys WHERE user_id IS NULL;
    ALTER TABLE idempotency_keys ALTER COLUMN user_id SET NOT NULL;
    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
    ALTER TABLE idempotency_keys ADD PRIMARY KEY (user_id, idempotency_key);
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
    ALTER TABLE orders DROP COLUMN idempotency_key;";

/// The schema, per backend (versions 2xxx belong to order-service).
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        (
            2001,
            "orders and idempotency keys",
            schema!("INTEGER PRIMARY KEY AUTOINCREMENT"),
        ),
        (
            2002,
            "idempotency keys per user, expiring",
            SCOPED_KEYS_SQLITE,
        ),
    ],
    postgres: &[
        (
            2001,
            "orders and idempotency keys",
            schema!("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        ),
        (
            2002,
            "idempotency keys per user, expiring",
            SCOPED_KEYS_POSTGRES,
        ),
    ],
};

/// A stored answer to a `POST /orders`, replayed for the same key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// Fingerprint of the request body it answered.
    pub fingerprint: String,
    /// Its status code.
    pub status_code: u16,
    /// Its JSON body.
    pub body: String,
    /// The order it created.
    pub order_id: i64,
}

/// What to insert.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    /// The user.
    pub user_id: i64,
    /// The product.
    pub product_id: &'a str,
    /// How many.
    pub quantity: i64,
    /// Unit price.
    pub price: Option<f64>,
    /// confirmed or pending.
    pub status: OrderStatus,
    /// The request's key (scoped by `user_id`).
    pub idempotency_key: &'a str,
    /// The request body's fingerprint.
    pub fingerprint: &'a str,
    /// Now.
    pub now_ms: i64,
}

/// The outcome of [`insert_with_key`].
#[derive(Debug)]
pub enum Inserted {
    /// The order and key were committed together.
    Created(Order, String),
    /// The key was already taken (by a concurrent request or a previous run): nothing was
    /// written; answer with the stored response.
    KeyTaken(StoredResponse),
}

/// `SELECT <every order column> FROM orders <rest>`, as one static string.
macro_rules! select_orders {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, product_id, quantity, price, status, ",
            "created_at_ms, updated_at_ms FROM orders ",
            $rest
        )
    };
}

async fn fetch_orders(
    store: &Store,
    query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<Vec<Order>, sqlx::Error> {
    query
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(order)
        .collect()
}

fn order(row: &AnyRow) -> Result<Order, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        product_id: row.try_get("product_id")?,
        quantity: row.try_get("quantity")?,
        price: row.try_get("price")?,
        status: OrderStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown order status `{status}`").into())
        })?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn stored(row: &AnyRow) -> Result<StoredResponse, sqlx::Error> {
    let code: i64 = row.try_get("status_code")?;
    Ok(StoredResponse {
        fingerprint: row.try_get("fingerprint")?,
        status_code: u16::try_from(code).unwrap_or(201),
        body: row.try_get("response_body")?,
        order_id: row.try_get("order_id")?,
    })
}

/// The stored response for `user_id`'s `key`, if any.
pub async fn find_key(
    store: &Store,
    user_id: i64,
    key: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    find_key_on(store.pool(), user_id, key).await
}

async fn find_key_on<'c>(
    conn: impl sqlx::Executor<'c, Database = Any>,
    user_id: i64,
    key: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    sqlx::query(
        "SELECT fingerprint, status_code, response_body, order_id FROM idempotency_keys
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(key.to_owned())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(stored)
    .transpose()
}

/// Inserts the order and its key (with the 201 body built by `render`) in one transaction of
/// its own. Orders placed through the service go through the group commit instead
/// ([`crate::group_commit`], which writes each with [`insert_in`]).
pub async fn insert_with_key(
    store: &Store,
    new: &NewOrder<'_>,
    render: impl Fn(&Order) -> String,
) -> Result<Inserted, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let inserted = insert_alone(&mut tx, new, render).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Writes the order and its key inside `tx`, a write transaction from [`Store::begin_write`]
/// that holds nothing else, without a savepoint: on error `tx` must be rolled back (dropped),
/// which undoes only this order.
pub async fn insert_alone(
    tx: &mut Transaction<'static, Any>,
    new: &NewOrder<'_>,
    render: impl Fn(&Order) -> String,
) -> Result<Inserted, sqlx::Error> {
    write_order(tx, new, render).await
}

/// Writes the order and its key inside `tx`, a write transaction from [`Store::begin_write`]
/// shared with other orders, in a savepoint of its own: when one of its statements fails, the
/// savepoint is rolled back and the other orders of the transaction are untouched. Nothing is
/// durable until the caller commits `tx`.
///
/// The outer error says `tx` itself is broken (the savepoint could not be opened, released
/// or rolled back; on SQLite an I/O error may also have rolled back the whole transaction):
/// it must not be committed, since on PostgreSQL a `COMMIT` of an aborted transaction rolls
/// back and still reports success. The inner error is this order's own failure, already rolled
/// back; `tx` can go on and commit the others.
pub async fn insert_in(
    tx: &mut Transaction<'static, Any>,
    new: &NewOrder<'_>,
    render: impl Fn(&Order) -> String,
) -> Result<Result<Inserted, sqlx::Error>, sqlx::Error> {
    let mut savepoint = tx.begin().await?;
    match write_order(&mut savepoint, new, render).await {
        Ok(inserted) => {
            savepoint.commit().await?;
            Ok(Ok(inserted))
        }
        Err(e) => {
            savepoint.rollback().await?;
            Ok(Err(e))
        }
    }
}

/// Writes `orders` and their keys inside `tx` with three statements per
/// [`ROWS_PER_STATEMENT`] orders rather than three per order (the group commit's path), in a
/// savepoint of their own. Returns what [`insert_in`] would have returned for each, in order, with the
/// same guarantees per key: each key record is claimed first (`ON CONFLICT DO NOTHING`), an
/// order is inserted only for a claimed key, and a key already taken (by an earlier
/// transaction, or by an earlier order of `orders`) is answered with the stored answer.
///
/// Errors as for [`insert_in`], except that the inner error is the batch's: when any statement
/// fails, everything `orders` wrote is rolled back to the savepoint, and the caller writes them
/// one by one with [`insert_in`] so that only the failing order fails.
pub async fn insert_many(
    tx: &mut Transaction<'static, Any>,
    orders: &[NewOrder<'_>],
    render: impl Fn(&Order) -> String,
) -> Result<Result<Vec<Inserted>, sqlx::Error>, sqlx::Error> {
    let mut savepoint = tx.begin().await?;
    match write_orders(&mut savepoint, orders, render).await {
        Ok(inserted) => {
            savepoint.commit().await?;
            Ok(Ok(inserted))
        }
        Err(e) => {
            savepoint.rollback().await?;
            Ok(Err(e))
        }
    }
}

/// `(a, b, c), (d, e, f), ...`: `rows` tuples of `width` numbered placeholders, `$1` first.
fn placeholders(rows: usize, width: usize, fixed: &str) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(r * width + c + 1).to_string());
        }
        out.push_str(fixed);
        out.push(')');
    }
    out
}

/// Orders per statement in [`insert_many`]. SQLite finds a `$N` parameter by walking the
/// statement's list of parameter names, when it parses the statement and again for each
/// value bound, so a statement's cost grows with the square of its parameters; a few
/// statements of a few rows each cost less than one of hundreds.
const ROWS_PER_STATEMENT: usize = 16;

/// The statements of [`insert_many`], per [`ROWS_PER_STATEMENT`] orders: one to claim the
/// keys, one to insert the orders of the keys claimed, one to store their answers; and a read
/// per key found taken.
async fn write_orders(
    conn: &mut AnyConnection,
    orders: &[NewOrder<'_>],
    render: impl Fn(&Order) -> String,
) -> Result<Vec<Inserted>, sqlx::Error> {
    // A key may come twice (a retry racing its first attempt, or two replicas' requests):
    // only its first order may claim it; the others are answered like any taken key.
    let mut seen = std::collections::HashSet::new();
    let first: Vec<usize> = (0..orders.len())
        .filter(|&i| seen.insert((orders[i].user_id, orders[i].idempotency_key)))
        .collect();
    let mut claimed = std::collections::HashSet::new();
    for chunk in first.chunks(ROWS_PER_STATEMENT) {
        claimed.extend(claim_keys(conn, orders, chunk).await?);
    }
    let creators: Vec<usize> = first
        .into_iter()
        .filter(|&i| claimed.contains(&(orders[i].user_id, orders[i].idempotency_key.to_owned())))
        .collect();
    let mut created: Vec<Option<(Order, String)>> = vec![None; orders.len()];
    for chunk in creators.chunks(ROWS_PER_STATEMENT) {
        let rows = insert_orders(conn, orders, chunk).await?;
        let bodies = store_answers(conn, orders, chunk, &rows, &render).await?;
        for ((o, body), &i) in rows.into_iter().zip(bodies).zip(chunk) {
            created[i] = Some((o, body));
        }
    }
    let mut out = Vec::with_capacity(orders.len());
    for (i, made) in created.into_iter().enumerate() {
        out.push(match made {
            Some((o, body)) => Inserted::Created(o, body),
            None => {
                let o = &orders[i];
                match find_key_on(&mut *conn, o.user_id, o.idempotency_key).await? {
                    Some(s) => Inserted::KeyTaken(s),
                    None => return Err(sqlx::Error::RowNotFound),
                }
            }
        });
    }
    Ok(out)
}

/// Claims the keys of `orders[i]` for each `i` in `chunk`; returns those claimed (the others
/// were taken).
async fn claim_keys(
    conn: &mut AnyConnection,
    orders: &[NewOrder<'_>],
    chunk: &[usize],
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO idempotency_keys
            (user_id, idempotency_key, fingerprint, created_at_ms, status_code, response_body, order_id)
         VALUES {}
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING user_id, idempotency_key",
        placeholders(chunk.len(), 4, ", 0, '', 0")
    );
    // Not kept in the statement cache: the text changes with the chunk's size.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for &i in chunk {
        let o = &orders[i];
        query = query
            .bind(o.user_id)
            .bind(o.idempotency_key.to_owned())
            .bind(o.fingerprint.to_owned())
            .bind(o.now_ms);
    }
    query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Inserts `orders[i]` for each `i` in `chunk`; returns them as stored, in `chunk`'s order.
async fn insert_orders(
    conn: &mut AnyConnection,
    orders: &[NewOrder<'_>],
    chunk: &[usize],
) -> Result<Vec<Order>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO orders
            (user_id, product_id, quantity, price, status, created_at_ms, updated_at_ms)
         VALUES {}
         RETURNING id, user_id, product_id, quantity, price, status, created_at_ms, updated_at_ms",
        placeholders(chunk.len(), 7, "")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for &i in chunk {
        let o = &orders[i];
        query = query
            .bind(o.user_id)
            .bind(o.product_id.to_owned())
            .bind(o.quantity)
            .bind(o.price)
            .bind(o.status.as_str())
            .bind(o.now_ms)
            .bind(o.now_ms);
    }
    let mut rows = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(order)
        .collect::<Result<Vec<Order>, sqlx::Error>>()?;
    // Ids are handed out in the order of the VALUES rows (AUTOINCREMENT on SQLite, the
    // identity's sequence on PostgreSQL), but RETURNING promises no order: sorted by id, each
    // row must be the order at its place, or the batch goes one by one. (Two orders alike in
    // every column could only trade ids, which no one could tell apart.)
    rows.sort_unstable_by_key(|o| o.id);
    let matches = rows.len() == chunk.len()
        && rows.iter().zip(chunk).all(|(o, &i)| {
            let n = &orders[i];
            o.user_id == n.user_id
                && o.product_id == n.product_id
                && o.quantity == n.quantity
                && o.price == n.price
                && o.status == n.status
                && o.created_at_ms == n.now_ms
        });
    if !matches {
        return Err(sqlx::Error::Protocol(
            "the orders inserted together came back in an order that does not match".into(),
        ));
    }
    Ok(rows)
}

/// Stores the answer (201 and the body `render` makes) in the key record of each of `rows`,
/// the orders of `orders[i]` for each `i` in `chunk`; returns the bodies.
async fn store_answers(
    conn: &mut AnyConnection,
    orders: &[NewOrder<'_>],
    chunk: &[usize],
    rows: &[Order],
    render: impl Fn(&Order) -> String,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "UPDATE idempotency_keys SET status_code = 201, response_body = v.column3, order_id = v.column4
         FROM (VALUES {}) AS v
         WHERE idempotency_keys.user_id = v.column1 AND idempotency_keys.idempotency_key = v.column2",
        placeholders(chunk.len(), 4, "")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    let mut bodies = Vec::with_capacity(rows.len());
    for (o, &i) in rows.iter().zip(chunk) {
        let body = render(o);
        query = query
            .bind(o.user_id)
            .bind(orders[i].idempotency_key.to_owned())
            .bind(body.clone())
            .bind(o.id);
        bodies.push(body);
    }
    let done = query.execute(&mut *conn).await?;
    if done.rows_affected() != rows.len() as u64 {
        return Err(sqlx::Error::Protocol(format!(
            "{} answers stored for {} orders",
            done.rows_affected(),
            rows.len()
        )));
    }
    Ok(bodies)
}

/// The statements of one order, on a connection inside a transaction.
async fn write_order(
    conn: &mut AnyConnection,
    new: &NewOrder<'_>,
    render: impl Fn(&Order) -> String,
) -> Result<Inserted, sqlx::Error> {
    // The key row goes first: a second request with the same user and key stops here, before
    // any order row exists (and on PostgreSQL waits for the first to commit or roll back).
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys
            (user_id, idempotency_key, fingerprint, status_code, response_body, order_id, created_at_ms)
         VALUES ($1, $2, $3, 0, '', 0, $4)
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING order_id",
    )
    .bind(new.user_id)
    .bind(new.idempotency_key.to_owned())
    .bind(new.fingerprint.to_owned())
    .bind(new.now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_none() {
        // Read in the same transaction: the record may be an earlier order's of this very
        // transaction, which no other connection can see yet.
        return match find_key_on(&mut *conn, new.user_id, new.idempotency_key).await? {
            Some(s) => Ok(Inserted::KeyTaken(s)),
            None => Err(sqlx::Error::RowNotFound),
        };
    }
    let row = sqlx::query(
        "INSERT INTO orders
            (user_id, product_id, quantity, price, status, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(new.user_id)
    .bind(new.product_id.to_owned())
    .bind(new.quantity)
    .bind(new.price)
    .bind(new.status.as_str())
    .bind(new.now_ms)
    .fetch_one(&mut *conn)
    .await?;
    let created = Order {
        id: row.try_get(0)?,
        user_id: new.user_id,
        product_id: new.product_id.to_owned(),
        quantity: new.quantity,
        price: new.price,
        status: new.status,
        created_at_ms: new.now_ms,
        updated_at_ms: new.now_ms,
    };
    let body = render(&created);
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = 201, response_body = $1, order_id = $2
         WHERE user_id = $3 AND idempotency_key = $4",
    )
    .bind(body.clone())
    .bind(created.id)
    .bind(new.user_id)
    .bind(new.idempotency_key.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(Inserted::Created(created, body))
}

/// One order by id.
pub async fn get(store: &Store, id: i64) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query(select_orders!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .as_ref()
        .map(order)
        .transpose()
}

/// Up to `limit` orders with id above `after`, optionally of one user, by id.
pub async fn list(
    store: &Store,
    user_id: Option<i64>,
    after: i64,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let query = match user_id {
        Some(u) => sqlx::query(select_orders!(
            "WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(u),
        None => sqlx::query(select_orders!(
            "WHERE $1 = 0 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(0_i64),
    };
    fetch_orders(store, query.bind(after).bind(limit)).await
}

/// The oldest pending orders, up to `limit`.
pub async fn pending(store: &Store, limit: i64) -> Result<Vec<Order>, sqlx::Error> {
    let query = sqlx::query(select_orders!(
        "WHERE status = 'pending' ORDER BY id LIMIT $1"
    ));
    fetch_orders(store, query.bind(limit)).await
}

/// Moves a pending order to `status`; false when it was no longer pending.
pub async fn settle(
    store: &Store,
    id: i64,
    status: OrderStatus,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE orders SET status = $1, updated_at_ms = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(now_ms)
    .bind(id)
    .execute(store.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes up to `limit` key records created before `before_ms`, oldest first, in one
/// statement (so one short write on SQLite's single writer); returns how many went. Their
/// orders stay.
pub async fn delete_expired(store: &Store, before_ms: i64, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (user_id, idempotency_key) IN (
            SELECT user_id, idempotency_key FROM idempotency_keys
            WHERE created_at_ms < $1 ORDER BY created_at_ms LIMIT $2)",
    )
    .bind(before_ms)
    .bind(limit)
    .execute(store.writer())
    .await?;
    Ok(done.rows_affected())
}

/// How many orders exist.
pub async fn count(store: &Store) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM orders")
        .fetch_one(store.pool())
        .await?
        .try_get(0)
}

/// How many key records exist (the figure after retention: `idempotency_keys_stored`).
pub async fn key_count(store: &Store) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(store.pool())
        .await?
        .try_get(0)
}

#[cfg(test)]
mod tests {
    use service_kit::store::testing;

    use super::*;

    fn new_order(key: &'static str) -> NewOrder<'static> {
        NewOrder {
            user_id: 1,
            product_id: "p",
            quantity: 1,
            price: None,
            status: OrderStatus::Pending,
            idempotency_key: key,
            fingerprint: "fp",
            now_ms: 1,
        }
    }

    /// Every write waits for the writer (on SQLite, its one connection): the order with its
    /// key, the replay of a taken key, and settling.
    #[tokio::test]
    async fn every_write_goes_through_the_writer() {
        for s in testing::all(&MIGRATIONS).await {
            let w = s.clone();
            let created = testing::assert_writes_through_writer(&s, async move {
                insert_with_key(&w, &new_order("k"), |_| "{}".into()).await
            })
            .await
            .unwrap();
            let Inserted::Created(order, _) = created else {
                panic!("first insert creates: {created:?}");
            };
            let w = s.clone();
            let replayed = testing::assert_writes_through_writer(&s, async move {
                insert_with_key(&w, &new_order("k"), |_| "{}".into()).await
            })
            .await
            .unwrap();
            assert!(
                matches!(&replayed, Inserted::KeyTaken(st) if st.order_id == order.id),
                "{replayed:?}"
            );
            let w = s.clone();
            let settled = testing::assert_writes_through_writer(&s, async move {
                settle(&w, order.id, OrderStatus::Confirmed, 2).await
            })
            .await;
            assert!(settled.unwrap());
            assert_eq!(count(&s).await.unwrap(), 1);
            s.close().await;
        }
    }
}
