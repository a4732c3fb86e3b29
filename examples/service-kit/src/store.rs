//! The store: one sqlx `Any` pool over SQLite (default) or PostgreSQL, with embedded migrations.
//!
//! Why `Any`: the services run the same SQL on both backends (`$1` placeholders work in SQLite
//! too, `INSERT .. ON CONFLICT .. RETURNING` in both), so one code path serves both and the
//! PostgreSQL tests exercise exactly what production runs. Only the DDL differs (identity
//! columns), so each service embeds one migration set per backend.
//!
//! SQLite is opened in WAL mode with `synchronous=FULL`: a write acknowledged to a client is
//! on disk, so `kill -9` right after a 201 loses nothing. WAL is a property of the file and is
//! set once, on a single connection, before the pool opens (switching it needs an exclusive
//! lock); `synchronous` is per connection and set on every new one.
//!
//! Writes go through [`Store::writer`] (or [`Store::begin_write`]), reads through
//! [`Store::pool`]. SQLite lets one connection write at a time: with writers spread over a
//! pool, the losers of the race for the write lock poll in SQLite's busy handler, whose sleeps
//! grow to 100 ms, and that was the p99 of `POST /orders` with 8 concurrent writers (85 ms on
//! tmpfs, up to 200 ms on disk). So on SQLite the writer is a pool of one connection: writers
//! queue for it in order (sqlx's acquire is fair) and never meet a held lock in this process.
//! Write transactions there begin with `BEGIN IMMEDIATE`, which takes the write lock at
//! `BEGIN`: should another process hold it, the wait is in the busy handler before any work,
//! and a transaction that reads before it writes cannot fail to upgrade its snapshot
//! (`SQLITE_BUSY_SNAPSHOT`, which the busy handler does not retry). On PostgreSQL, whose
//! writers lock rows and not the database, the writer is the pool itself and transactions
//! begin with a plain `BEGIN`.

use std::{borrow::Cow, path::Path, str::FromStr, time::Duration};

use futures_util::FutureExt;
use sqlx::{
    Any, AnyPool, ConnectOptions, Connection, Executor, SqlSafeStr, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migration, MigrationType, Migrator},
};

use crate::problem::Problem;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Sorts a URL by scheme; `None` for anything else.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The statement that opens a write transaction, or `None` for the driver's plain
    /// `BEGIN`: `BEGIN IMMEDIATE` on SQLite (see the module doc), nothing special on
    /// PostgreSQL.
    ///
    /// ```
    /// use service_kit::store::Backend;
    ///
    /// assert_eq!(Backend::Sqlite.begin_write_statement(), Some("BEGIN IMMEDIATE"));
    /// assert_eq!(Backend::Postgres.begin_write_statement(), None);
    /// ```
    pub fn begin_write_statement(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => Some("BEGIN IMMEDIATE"),
            Backend::Postgres => None,
        }
    }
}

/// One embedded migration: version, description, SQL.
pub type MigrationStep = (i64, &'static str, &'static str);

/// A service's migrations, one list per backend (same versions, dialect-specific SQL).
///
/// Give each service its own version range (user-service 1xxx, order-service 2xxx) so two
/// services can share one PostgreSQL database without their migration histories clashing.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// For SQLite.
    pub sqlite: &'static [MigrationStep],
    /// For PostgreSQL.
    pub postgres: &'static [MigrationStep],
}

/// A connected, migrated store.
///
/// Read with [`pool`](Store::pool), write with [`writer`](Store::writer) or
/// [`begin_write`](Store::begin_write): on SQLite they are different pools (see the module
/// doc), so a write through `pool` would race the writer for SQLite's lock.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
}

/// The store could not be opened.
#[derive(Debug)]
pub struct StoreError(String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

fn err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{context}: {e}"))
}

impl Store {
    /// Connects to `url` (`sqlite://data/x.db` or `postgres://...`) and runs the migrations.
    pub async fn connect(url: &str, migrations: &Migrations) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).ok_or_else(|| {
            StoreError(format!(
                "unsupported database URL `{url}` (expected sqlite:... or postgres://...)"
            ))
        })?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite(url).await?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| err("database URL", e))?;
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let pool = sqlite_pool(8)
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| err("open SQLite", e))?;
                // One connection: writers queue here instead of in SQLite's busy handler.
                let writer = sqlite_pool(1)
                    .connect_with(options)
                    .await
                    .map_err(|e| err("open SQLite", e))?;
                (pool, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|e| err("connect to PostgreSQL", e))?;
                (pool.clone(), pool)
            }
        };
        let steps = match backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        let mut migrator = Migrator::with_migrations(
            steps
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        );
        // Other services may share the database (and its migrations table).
        migrator.set_ignore_missing(true);
        migrator
            .run(&writer)
            .await
            .map_err(|e| err("run migrations", e))?;
        Ok(Self {
            pool,
            writer,
            backend,
        })
    }

    /// The pool to read with (on SQLite it must not write: see [`writer`](Store::writer)).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool to write with, for statements that write on their own (an `INSERT`, an
    /// `UPDATE`); several statements that must commit together go in
    /// [`begin_write`](Store::begin_write). On SQLite it has one connection, so writers
    /// take turns in order; on PostgreSQL it is [`pool`](Store::pool).
    ///
    /// Step every statement run here to completion: `execute` or `fetch_all`, never
    /// `fetch_optional` or `fetch_one` (say, for `INSERT .. RETURNING`). Those stop after the
    /// first row and reset the statement; SQLite then commits, but only a statement that
    /// steps to its end runs the WAL auto-checkpoint, so the `-wal` file would grow with
    /// every write. (Inside [`begin_write`](Store::begin_write) either is fine: the
    /// `COMMIT` steps to its end.)
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Begins a write transaction on the [`writer`](Store::writer), with
    /// [`Backend::begin_write_statement`]. Hold it briefly: on SQLite every other write waits
    /// for its commit or rollback (or its drop, which rolls back), and a write through
    /// [`writer`](Store::writer) while it is open would wait for itself; run everything in it.
    ///
    /// ```no_run
    /// # async fn demo(store: service_kit::store::Store) -> Result<(), sqlx::Error> {
    /// let mut tx = store.begin_write().await?;
    /// sqlx::query("UPDATE orders SET status = 'rejected' WHERE id = $1")
    ///     .bind(7_i64)
    ///     .execute(&mut *tx)
    ///     .await?;
    /// tx.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend.begin_write_statement() {
            Some(statement) => self.writer.begin_with(statement).await,
            None => self.writer.begin().await,
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the store answers (for readiness), within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.pool.execute("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// Closes the pools (waits for checked-out connections).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// Pool options for SQLite: every connection durable (`synchronous=FULL`) and waiting up to
/// 5 s for a lock held by another process. A connection is to a local file that does not go
/// stale, so it is not pinged on every acquire: the ping would be one more round trip to the
/// connection's thread per read, and per write while the other writers wait.
fn sqlite_pool(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _meta| {
            async move {
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                Ok(())
            }
            .boxed()
        })
}

/// Creates the SQLite file's directory and switches the file to WAL; returns the URL to pool.
async fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError(
            "SQLite needs a file (sqlite://data/name.db): an in-memory database would lose acknowledged writes".into(),
        ));
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| err(&format!("create {}", dir.display()), e))?;
    }
    let query = if query.is_empty() {
        "mode=rwc".to_owned()
    } else if query.contains("mode=") {
        query.to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    let url = format!("sqlite://{path}?{query}");
    let mut conn = AnyConnectOptions::from_str(&url)
        .map_err(|e| err("database URL", e))?
        .connect()
        .await
        .map_err(|e| err(&format!("open {path}"), e))?;
    conn.execute("PRAGMA busy_timeout = 5000")
        .await
        .map_err(|e| err("set busy_timeout", e))?;
    conn.execute("PRAGMA journal_mode = WAL")
        .await
        .map_err(|e| err("switch SQLite to WAL", e))?;
    conn.close().await.ok();
    Ok(url)
}

/// Now, in milliseconds since the Unix epoch: what the services store in their `*_at_ms`
/// columns (0 before the epoch, saturating far after it).
///
/// ```
/// assert!(service_kit::store::now_ms() > 1_700_000_000_000);
/// ```
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Maps a store error to a 503 (the store is down or busy: retrying later may work; this is
/// never the client's fault and never a 500). The cause is logged, not sent.
pub fn unavailable(e: &sqlx::Error) -> Problem {
    tracing::error!(error = %e, "store error");
    Problem::unavailable(
        "the store is unavailable; retry later",
        Duration::from_secs(1),
    )
}

/// Test support: fresh stores to run store tests against.
pub mod testing {
    use super::*;

    /// A fresh SQLite store in a new temporary file.
    pub async fn sqlite(migrations: &Migrations) -> Store {
        let path = std::env::temp_dir()
            .join("service-kit-tests")
            .join(format!("{}.db", uuid::Uuid::now_v7().simple()));
        Store::connect(&format!("sqlite://{}", path.display()), migrations)
            .await
            .expect("open test SQLite store")
    }

    /// A fresh PostgreSQL store in its own schema of `TEST_DATABASE_URL`, when that is set.
    pub async fn postgres(migrations: &Migrations) -> Option<Store> {
        let base = std::env::var("TEST_DATABASE_URL").ok()?;
        sqlx::any::install_default_drivers();
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = AnyConnectOptions::from_str(&base)
            .expect("TEST_DATABASE_URL parses")
            .connect()
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("create test schema");
        conn.close().await.ok();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(
            Store::connect(&url, migrations)
                .await
                .expect("open test PostgreSQL store"),
        )
    }

    /// SQLite always, PostgreSQL too when `TEST_DATABASE_URL` is set.
    pub async fn all(migrations: &Migrations) -> Vec<Store> {
        let mut stores = vec![sqlite(migrations).await];
        stores.extend(postgres(migrations).await);
        stores
    }

    /// Runs `write` and checks it goes through the [`Store::writer`]: on SQLite it must not
    /// finish while the writer's one connection is held, and must once it is released (a
    /// write through [`Store::pool`] would not wait). On PostgreSQL, whose writer is the
    /// pool, it just runs `write`. Returns what `write` returned.
    pub async fn assert_writes_through_writer<F>(store: &Store, write: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if store.backend() != Backend::Sqlite {
            return write.await;
        }
        let held = store.writer().acquire().await.expect("acquire the writer");
        let mut task = tokio::spawn(write);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut task)
                .await
                .is_err(),
            "the write finished while the writer was held: it did not go through Store::writer"
        );
        drop(held);
        task.await.expect("the write task")
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    const T: Migrations = Migrations {
        sqlite: &[(
            9001,
            "t",
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v BIGINT NOT NULL)",
        )],
        postgres: &[(
            9001,
            "t",
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v BIGINT NOT NULL)",
        )],
    };

    async fn count(store: &Store) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM t")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0)
    }

    /// A connection of its own to the store's file that does not wait for locks.
    async fn impatient(url: &str) -> sqlx::AnyConnection {
        let mut conn = AnyConnectOptions::from_str(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        conn.execute("PRAGMA busy_timeout = 0").await.unwrap();
        conn
    }

    #[tokio::test]
    async fn sqlite_has_one_writer_connection_and_postgres_shares_its_pool() {
        for s in testing::all(&T).await {
            let writers = s.writer().options().get_max_connections();
            match s.backend() {
                Backend::Sqlite => assert_eq!(writers, 1),
                Backend::Postgres => assert_eq!(writers, s.pool().options().get_max_connections()),
            }
            s.close().await;
        }
    }

    /// `BEGIN IMMEDIATE`: the write lock is the transaction's from `BEGIN`, before it has
    /// run a statement (a deferred `BEGIN` takes no lock, so the other write would pass).
    #[tokio::test]
    async fn a_sqlite_write_transaction_holds_the_write_lock_from_begin() {
        sqlx::any::install_default_drivers();
        let path = std::env::temp_dir()
            .join("service-kit-tests")
            .join(format!("{}.db", uuid::Uuid::now_v7().simple()));
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url, &T).await.unwrap();
        let mut other = impatient(&format!("{url}?mode=rw")).await;
        let insert = "INSERT INTO t (v) VALUES (1)";

        let tx = store.begin_write().await.unwrap();
        let locked = other.execute(insert).await.unwrap_err().to_string();
        assert!(locked.contains("locked"), "{locked}");
        tx.rollback().await.unwrap();
        other.execute(insert).await.unwrap();
        assert_eq!(count(&store).await, 1);
        other.close().await.unwrap();
        store.close().await;
    }

    /// Transactions that read, then write: on SQLite, with the busy handler switched off,
    /// any two that overlapped would fail (`database is locked`); taking turns on the one
    /// writer connection they all commit. On PostgreSQL they run side by side.
    #[tokio::test]
    async fn concurrent_write_transactions_all_commit_without_the_busy_handler() {
        for s in testing::all(&T).await {
            if s.backend() == Backend::Sqlite {
                let mut conn = s.writer().acquire().await.unwrap();
                conn.execute("PRAGMA busy_timeout = 0").await.unwrap();
            }
            let tasks: Vec<_> = (0..16_i64)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        let mut tx = s.begin_write().await?;
                        let n: i64 = sqlx::query("SELECT COUNT(*) FROM t")
                            .fetch_one(&mut *tx)
                            .await?
                            .get(0);
                        sqlx::query("INSERT INTO t (v) VALUES ($1)")
                            .bind(n * 100 + i)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            assert_eq!(count(&s).await, 16);
            s.close().await;
        }
    }

    #[tokio::test]
    async fn assert_writes_through_writer_tells_writer_from_pool() {
        let s = testing::sqlite(&T).await;
        let w = s.clone();
        testing::assert_writes_through_writer(&s, async move {
            sqlx::query("INSERT INTO t (v) VALUES (1)")
                .execute(w.writer())
                .await
                .unwrap();
        })
        .await;
        let p = s.clone();
        let through_pool = tokio::spawn({
            let s = s.clone();
            async move {
                testing::assert_writes_through_writer(&s, async move {
                    sqlx::query("INSERT INTO t (v) VALUES (2)")
                        .execute(p.pool())
                        .await
                        .unwrap();
                })
                .await
            }
        });
        assert!(through_pool.await.unwrap_err().is_panic());
        assert_eq!(count(&s).await, 2);
        s.close().await;
    }
}
