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

    async fn begin_write(writes: &Pool<Self>) -> Result<sqlx::Transaction<'static, Self>> {
        writes.begin_with("BEGIN IMMEDIATE").await.or_db()
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
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .after_release(|connection, _| Box::pin(async move { Ok(reusable(connection)) }))
            .connect_with(options)
            .await?;
        Ok(Self::new(pool, writer))
    }
}
