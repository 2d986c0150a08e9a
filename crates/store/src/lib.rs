//! The SQL backends of the `Store` port (`callmeta_app::store`): SQLite (the embedded default) and
//! PostgreSQL (several nodes on one database), written once.
//!
//! Every statement is one text with `$N` placeholders, run through sqlx's
//! `Any` driver on either database; where the two databases truly differ
//! (how a write transaction starts, JSON functions, row locking, NOTIFY),
//! the statement asks its `dialect::Backend` for the fragment. The schema
//! only uses what both speak through `Any`: text, 64-bit integers (times are
//! epoch milliseconds, flags 0/1) and JSON stored as text.
//!
//! - [`open`] and [`SqlStore`]: connecting, pragmas, migrations.
//! - `dialect`: the fragments that differ per database.
//! - `store`: the `Store` implementation, one method per statement group.
//! - `calls`: the call writer that commits concurrent creations together,
//!   and the call-list query.
//! - `tokens`: API tokens, and telling every node of a deletion.
//! - `rows`: reading records back from rows.
//! - `schema`: the migrations, common ones merged with each database's own.
//! - `webhooks`: webhook endpoints, delivery attempts, the outbox of
//!   deliveries (jobs).
//! - `retention`: erasing a call or a table; retention policies, the calls
//!   and versions past them, the recurring job that applies them.
//! - `exports`: the daily export push: settings, a day's run, the upsert
//!   of a job asked for again.
//! - `error`: what a database error means for the caller.
//! - `audit`: the audit log, append-only (insert, pages by keyset, the
//!   retention prune).
//! - `users`: a tenant's users, their SSH keys, and their web sessions
//!   changed with them.

mod audit;
mod calls;
mod dialect;
mod error;
mod exports;
mod retention;
mod rows;
mod schema;
mod store;
mod tokens;
mod users;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use callmeta_app::store::StoreError;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::dialect::Backend;
use crate::error::db_error;

/// One database behind the `Store` trait.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Call creations go through one writer task that commits them in
    /// groups (`calls`).
    calls: tokio::sync::mpsc::Sender<calls::PendingCall>,
    /// Moves when any node activates a version or deletes a token
    /// (PostgreSQL's NOTIFY).
    changes: Option<dialect::Changes>,
}

/// Opens the database named by `url`: `sqlite:PATH` or `postgres://...`
/// (`postgresql://` too), creating the SQLite file if needed and bringing
/// the schema up to date.
pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        // `sqlite:` URLs may carry options; only the path is ours to read.
        let path = path.split('?').next().unwrap_or(path);
        SqlStore::open_sqlite(Path::new(path)).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        SqlStore::open_postgres(url).await
    } else {
        Err(StoreError::Unavailable(
            "unsupported database URL: expected sqlite:PATH or postgres://...".into(),
        ))
    }
}

impl SqlStore {
    /// Opens (creating if needed) one SQLite file in WAL mode. Readers never
    /// block the writer; `synchronous = FULL` makes a committed call survive
    /// a power cut, which is what "durable before acknowledged" means.
    pub async fn open_sqlite(path: &Path) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", escape_path(path));
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Another process (the CLI) may write while the server
                    // runs: wait for its lock rather than fail.
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| db_error(&format!("opening {}", path.display()), e))?;
        schema::migrator(Backend::Sqlite)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {}: {e}", path.display())))?;
        Ok(Self::with_pool(pool, Backend::Sqlite, None))
    }

    /// Connects to PostgreSQL and listens for version activations and token
    /// deletions.
    pub async fn open_postgres(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| db_error("connecting to PostgreSQL", e))?;
        schema::migrator(Backend::Postgres)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating the PostgreSQL schema: {e}")))?;
        let changes = dialect::listen_for_changes(url).await?;
        Ok(Self::with_pool(pool, Backend::Postgres, Some(changes)))
    }

    fn with_pool(pool: AnyPool, backend: Backend, changes: Option<dialect::Changes>) -> SqlStore {
        let calls = calls::spawn_writer(pool.clone(), backend);
        SqlStore {
            pool,
            backend,
            calls,
            changes,
        }
    }
}

/// A file path as the path part of a `sqlite://` URL.
fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}
