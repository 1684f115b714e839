//! PostgreSQL, for several replicas sharing one database. Writers serialise on one
//! transaction-scoped advisory lock, which keeps the audit hash chain linear across
//! replicas; reads never take it.
//!
//! The statements are shared with SQLite (`store/sql.rs` and the aggregate modules);
//! this file opens the pool, makes PostgreSQL a [`Backend`], and listens for the
//! change notifications the database's triggers send.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Pool, Postgres};

use super::backend::Backend;
use super::errors::{database_error, OrDatabase};
use super::sql::{reusable, SqlStore};
use crate::domain::Result;

/// Arbitrary but fixed: the advisory lock key that orders audited writes.
const WRITE_LOCK_KEY: i64 = 0x7265_676b_6565_7031;

/// How long a request waits for a pooled connection (which, while the database is
/// down, means retrying to connect) before it fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

pub type PostgresStore = SqlStore<Postgres>;

impl Backend for Postgres {
    const LABEL: &'static str = "postgres";
    const ONE_WRITER_CONNECTION: bool = false;
    const NUMBERED_PARAMETERS: bool = true;

    async fn begin_write(writes: &Pool<Self>) -> Result<sqlx::Transaction<'static, Self>> {
        let mut transaction = writes.begin().await.or_db()?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK_KEY)
            .execute(&mut *transaction)
            .await
            .or_db()?;
        Ok(transaction)
    }

    /// A PostgreSQL database is backed up by its own tools, which know its roles,
    /// sequences and triggers; see [`crate::store::PG_DUMP_RECIPE`].
    async fn snapshot_into(_pool: &Pool<Self>, _path: &std::path::Path) -> Result<()> {
        Err(super::backup_needs_pg_dump())
    }
}

impl SqlStore<Postgres> {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // While the database is down every request waits this long for a connection
            // before answering 503: short, so clients are not left hanging.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(|connection, _| Box::pin(async move { Ok(reusable(connection)) }))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(super::migration_error)?;
        Ok(Self::new(pool.clone(), pool))
    }
}

/// The channel migration `0006_cache_invalidation`'s triggers notify on.
pub const INVALIDATE_CHANNEL: &str = "regkeeper_invalidate";

/// Waits between attempts to listen again: doubling from this, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a notification's payload (`KIND:TABLE/ID`) says to forget, or (for
/// `sign_outs:console_sign_outs/HEX`, migration 0015) which console session ended.
/// Anything unrecognised forgets everything.
pub fn parse_change(payload: &str) -> super::Change {
    match payload.split_once(':') {
        Some(("identities", _)) => super::Change::Identities,
        Some(("credentials", _)) => super::Change::Credentials,
        Some(("sign_outs", row)) => row
            .strip_prefix("console_sign_outs/")
            .and_then(|hex_id| {
                let mut id = [0u8; 16];
                hex::decode_to_slice(hex_id, &mut id).ok()?;
                Some(super::Change::SignOut(id))
            })
            .unwrap_or(super::Change::Everything),
        _ => super::Change::Everything,
    }
}

/// Subscribes to [`INVALIDATE_CHANNEL`] on a connection of its own (outside the pool),
/// once now — so a server that says it is listening has subscribed, if the database let
/// it — then keeps listening in a task. Whenever the subscription is (re)established or
/// lost, `on_change` gets `Everything`: a notification sent while nobody listened is
/// lost, so whatever was cached then is forgotten. Reconnects with backoff
/// (250 ms doubling to 30 s).
pub async fn watch_changes(
    url: SecretString,
    on_change: super::ChangeSink,
) -> tokio::task::JoinHandle<()> {
    let first = subscribe(&url).await;
    tokio::spawn(listen(url, first, on_change))
}

async fn subscribe(url: &SecretString) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url.expose_secret()).await?;
    listener.listen(INVALIDATE_CHANNEL).await?;
    Ok(listener)
}

async fn listen(
    url: SecretString,
    mut attempt: Result<PgListener, sqlx::Error>,
    on_change: super::ChangeSink,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match attempt {
            Ok(mut listener) => {
                on_change(super::Change::Everything);
                tracing::info!(channel = INVALIDATE_CHANNEL, "cache.listener_connected");
                let connected = tokio::time::Instant::now();
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => on_change(parse_change(notification.payload())),
                        Ok(None) => break "connection_lost",
                        Err(error) => break database_error(error).code(),
                    }
                };
                on_change(super::Change::Everything);
                tracing::warn!(error.code = lost, "cache.listener_lost");
                // A subscription that held for a while starts the backoff over; one that
                // keeps dropping at once keeps doubling it.
                if connected.elapsed() >= MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
            }
            Err(error) => {
                let code = database_error(error).code();
                tracing::warn!(
                    error.code = code,
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "cache.listener_connect_failed"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt = subscribe(&url).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Change;
    use super::parse_change;

    #[test]
    fn payloads_name_the_cache_to_forget() {
        assert_eq!(parse_change("identities:api_tokens/42"), Change::Identities);
        assert_eq!(
            parse_change("identities:memberships/w/u"),
            Change::Identities
        );
        assert_eq!(
            parse_change("credentials:credentials/7"),
            Change::Credentials
        );
        assert_eq!(parse_change("sync_targets:x"), Change::Everything);
        assert_eq!(
            parse_change("sign_outs:console_sign_outs/000102030405060708090a0b0c0d0e0f"),
            Change::SignOut(std::array::from_fn(|index| index as u8))
        );
        assert_eq!(
            parse_change("sign_outs:console_sign_outs/zz"),
            Change::Everything
        );
        assert_eq!(parse_change(""), Change::Everything);
    }
}
