//! The embedded default: one SQLite file in WAL mode. Writers take the database's write
//! lock when their transaction begins (`BEGIN IMMEDIATE`), so the audit chain's
//! read-then-append can never interleave with another writer.
//!
//! Write transactions go through a pool of one connection, so this process's writers
//! queue in order for it instead of meeting in SQLite's busy handler, which sleeps for
//! milliseconds between attempts and would cap a busy server's resolves (each appends
//! an audit entry) far below what one connection can commit. Reads use their own pool
//! and, in WAL mode, never wait for the writer.
//!
//! Neither pool pings a connection before handing it out (sqlx's
//! `test_before_acquire`, on by default): every statement runs on the connection's
//! worker thread, so the ping was one more round trip to that thread on every query
//! and every audit append (half of each one's hand-offs), to detect a peer hanging up
//! that an in-process database file does not have. A connection whose worker has
//! stopped answers its next statement with an error all the same.
//!
//! The statements are shared with PostgreSQL (`store/sql.rs` and the aggregate
//! modules); this file opens the pools and makes SQLite a [`Backend`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use super::backend::Backend;
use super::errors::OrDatabase;
use super::sql::{reusable, SqlStore};
use crate::domain::Result;

pub type SqliteStore = SqlStore<Sqlite>;

impl Backend for Sqlite {
    const LABEL: &'static str = "sqlite";
    const ONE_WRITER_CONNECTION: bool = true;
    const NUMBERED_PARAMETERS: bool = false;

    async fn begin_write(writes: &Pool<Self>) -> Result<sqlx::Transaction<'static, Self>> {
        writes.begin_with("BEGIN IMMEDIATE").await.or_db()
    }

    /// `VACUUM INTO` runs in one read transaction: in WAL mode writers go on meanwhile,
    /// and the copy holds exactly what was committed when it began, the WAL's pages
    /// included, as one self-contained file.
    async fn snapshot_into(pool: &Pool<Self>, path: &Path) -> Result<()> {
        let path = path.to_str().ok_or_else(|| {
            crate::domain::Error::internal(format!(
                "the snapshot path {} is not UTF-8",
                path.display()
            ))
        })?;
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(pool)
            .await
            .or_db()?;
        Ok(())
    }
}

impl SqlStore<Sqlite> {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_release(|connection, _| Box::pin(async move { Ok(reusable(connection)) }))
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(super::migration_error)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .after_release(|connection, _| Box::pin(async move { Ok(reusable(connection)) }))
            .connect_with(options)
            .await?;
        Ok(Self::new(pool, writer))
    }
}

/// This release's SQLite migrations, which `open` applies.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// What `regkeeper restore` learns of a backup before putting it in place.
#[derive(Debug)]
pub struct BackupFacts {
    /// The migrations applied to it, in order.
    pub migrations: Vec<i64>,
    /// The master key versions it has checks for: more than none means its secrets
    /// open only with the key file (or KMS key) it was sealed with.
    pub key_versions: Vec<i64>,
    pub users: i64,
    pub credentials: i64,
}

/// The versions of this release's migrations.
pub fn known_migrations() -> Vec<i64> {
    MIGRATOR.iter().map(|migration| migration.version).collect()
}

/// Checks that `path` is a whole regkeeper SQLite database (`PRAGMA integrity_check`,
/// sqlx's migration table, the tables every release has) and reads what a restore
/// reports. Opens it read-write without creating it, in the rollback journal mode, so
/// it stays one file: it must be a copy the caller owns (the server sets WAL again
/// when it opens it).
pub async fn inspect_backup(path: &Path) -> anyhow::Result<BackupFacts> {
    use anyhow::Context as _;
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Delete)
        .busy_timeout(Duration::from_secs(1));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .context("it cannot be opened as an SQLite database")?;
    let result = async {
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .context("it is not an SQLite database")?;
        anyhow::ensure!(
            check == "ok",
            "SQLite's integrity check fails on it: {}",
            crate::text::echo(&check)
        );
        let migrations: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&pool)
        .await
        .context("it has no migration table: it is not a regkeeper database")?;
        let key_versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM master_key_checks ORDER BY version")
                .fetch_all(&pool)
                .await
                .context("it has no master key checks table: it is not a regkeeper database")?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&pool)
            .await?;
        let credentials: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials")
            .fetch_one(&pool)
            .await?;
        Ok(BackupFacts {
            migrations,
            key_versions,
            users,
            credentials,
        })
    }
    .await;
    pool.close().await;
    result
}

/// Makes the database at `path` one self-contained file, ready to be moved aside:
/// leaving WAL mode folds the WAL into it, and SQLite allows that only while no other
/// connection has the database open, so a database a running server uses is refused.
pub async fn release_for_replacement(path: &Path) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_millis(500));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let mode = sqlx::query_scalar::<_, String>("PRAGMA journal_mode = DELETE")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    match mode {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => Ok(()),
        Ok(mode) => anyhow::bail!("it stays in journal mode {mode}: another process has it open"),
        Err(error) => Err(anyhow::Error::new(error).context("another process has it open")),
    }
}
