//! PostgreSQL, for several replicas sharing one database. Writers serialise on one
//! transaction-scoped advisory lock, which keeps the audit hash chain linear across
//! replicas; reads never take it.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

/// Arbitrary but fixed: the advisory lock key that orders audited writes.
const WRITE_LOCK_KEY: i64 = 0x7265_676b_6565_7031;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|connection, _| {
                Box::pin(async move { Ok(super::sql::reusable(connection)) })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Where statements that write outside a transaction go.
    fn write_pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> crate::domain::Result<sqlx::Transaction<'static, Postgres>> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(super::sql::database_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK_KEY)
            .execute(&mut *transaction)
            .await
            .map_err(super::sql::database_error)?;
        Ok(transaction)
    }
}

super::sql::impl_store!(PostgresStore, Postgres, "postgres");
