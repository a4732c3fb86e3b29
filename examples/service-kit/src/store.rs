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

use std::{borrow::Cow, path::Path, str::FromStr, time::Duration};

use futures_util::FutureExt;
use sqlx::{
    AnyPool, ConnectOptions, Connection, Executor, SqlSafeStr,
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
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
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
        let pool = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .after_connect(|conn, _meta| {
                    async move {
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    }
                    .boxed()
                })
                .connect_with(options)
                .await
                .map_err(|e| err("open SQLite", e))?,
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(|e| err("connect to PostgreSQL", e))?,
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
            .run(&pool)
            .await
            .map_err(|e| err("run migrations", e))?;
        Ok(Self { pool, backend })
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
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

    /// Closes the pool (waits for checked-out connections).
    pub async fn close(&self) {
        self.pool.close().await;
    }
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
}
