//! What replicas share besides the aggregates (migration 0015): the proxy's grants (when
//! the upstream last confirmed that a credential may read a digest), the index of the
//! blobs in the shared S3 cache with their last use, job leases (one replica at a time
//! sweeps the cache), and the console's sign-outs.
//!
//! None of these writes is audited, and none takes the audit chain's write lock: each
//! is one statement on the writer pool (SQLite's single writer connection; PostgreSQL's
//! pool), so a proxied pull never waits behind an audited write for its bookkeeping.

use super::backend::{Backend, RowsAffected as _};
use super::errors::OrDatabase;
use super::sql::SqlStore;
use super::CachedBlobRow;
use crate::domain::credential::Timestamp;
use crate::domain::Result;

pub(super) async fn record_proxy_grant<DB: Backend>(
    store: &SqlStore<DB>,
    grant_key: &str,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO proxy_grants (grant_key, confirmed_at) VALUES ($1, $2) \
         ON CONFLICT (grant_key) DO UPDATE SET confirmed_at = CASE \
         WHEN excluded.confirmed_at > proxy_grants.confirmed_at \
         THEN excluded.confirmed_at ELSE proxy_grants.confirmed_at END",
    )
    .bind(grant_key)
    .bind(at)
    .execute(&store.writer)
    .await
    .or_db()?;
    Ok(())
}

pub(super) async fn proxy_grant<DB: Backend>(
    store: &SqlStore<DB>,
    grant_key: &str,
) -> Result<Option<Timestamp>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT confirmed_at FROM proxy_grants WHERE grant_key = $1")
            .bind(grant_key)
            .fetch_optional(&store.pool)
            .await
            .or_db()?;
    Ok(row.map(|(confirmed_at,)| confirmed_at))
}

pub(super) async fn prune_proxy_grants<DB: Backend>(
    store: &SqlStore<DB>,
    before: Timestamp,
) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM proxy_grants WHERE confirmed_at < $1")
            .bind(before)
            .execute(&store.writer)
            .await
            .or_db()?
            .rows_affected(),
    )
}

pub(super) async fn cached_blob<DB: Backend>(
    store: &SqlStore<DB>,
    digest: &str,
) -> Result<Option<CachedBlobRow>> {
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT digest, size, last_used_at FROM proxy_cache_blobs WHERE digest = $1",
    )
    .bind(digest)
    .fetch_optional(&store.pool)
    .await
    .or_db()?;
    Ok(row.map(into_blob))
}

fn into_blob((digest, size, last_used_at): (String, i64, i64)) -> CachedBlobRow {
    CachedBlobRow {
        digest,
        size: u64::try_from(size).unwrap_or_default(),
        last_used_at,
    }
}

pub(super) async fn put_cached_blob<DB: Backend>(
    store: &SqlStore<DB>,
    digest: &str,
    size: u64,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO proxy_cache_blobs (digest, size, stored_at, last_used_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (digest) DO UPDATE \
         SET size = excluded.size, stored_at = excluded.stored_at, \
         last_used_at = excluded.last_used_at",
    )
    .bind(digest)
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(at)
    .execute(&store.writer)
    .await
    .or_db()?;
    Ok(())
}

pub(super) async fn touch_cached_blob<DB: Backend>(
    store: &SqlStore<DB>,
    digest: &str,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE proxy_cache_blobs SET last_used_at = $2 \
         WHERE digest = $1 AND last_used_at < $2",
    )
    .bind(digest)
    .bind(at)
    .execute(&store.writer)
    .await
    .or_db()?;
    Ok(())
}

pub(super) async fn delete_cached_blob<DB: Backend>(
    store: &SqlStore<DB>,
    digest: &str,
    last_used_at: Option<Timestamp>,
) -> Result<bool> {
    let deleted = match last_used_at {
        Some(last_used_at) => {
            sqlx::query("DELETE FROM proxy_cache_blobs WHERE digest = $1 AND last_used_at = $2")
                .bind(digest)
                .bind(last_used_at)
                .execute(&store.writer)
                .await
        }
        None => {
            sqlx::query("DELETE FROM proxy_cache_blobs WHERE digest = $1")
                .bind(digest)
                .execute(&store.writer)
                .await
        }
    };
    Ok(deleted.or_db()?.rows_affected() > 0)
}

pub(super) async fn cached_blob_totals<DB: Backend>(store: &SqlStore<DB>) -> Result<(i64, i64)> {
    let (count, bytes): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), CAST(SUM(size) AS BIGINT) FROM proxy_cache_blobs")
            .fetch_one(&store.pool)
            .await
            .or_db()?;
    Ok((count, bytes.unwrap_or_default()))
}

pub(super) async fn least_recently_used_blobs<DB: Backend>(
    store: &SqlStore<DB>,
    limit: i64,
) -> Result<Vec<CachedBlobRow>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT digest, size, last_used_at FROM proxy_cache_blobs \
         ORDER BY last_used_at, digest LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&store.pool)
    .await
    .or_db()?;
    Ok(rows.into_iter().map(into_blob).collect())
}

pub(super) async fn claim_job_lease<DB: Backend>(
    store: &SqlStore<DB>,
    name: &str,
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO job_leases (name, owner, lease_until) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
         lease_until = excluded.lease_until \
         WHERE job_leases.lease_until <= $4 OR job_leases.owner = excluded.owner",
    )
    .bind(name)
    .bind(owner)
    .bind(until)
    .bind(now)
    .execute(&store.writer)
    .await
    .or_db()?;
    Ok(claimed.rows_affected() > 0)
}

pub(super) async fn record_sign_out<DB: Backend>(
    store: &SqlStore<DB>,
    session_id: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<()> {
    // Sign-outs are rare: pruning the expired ones here keeps the table no larger than
    // the sessions of the last twelve hours, without a job of its own.
    sqlx::query("DELETE FROM console_sign_outs WHERE expires_at <= $1")
        .bind(now)
        .execute(&store.writer)
        .await
        .or_db()?;
    sqlx::query(
        "INSERT INTO console_sign_outs (id, expires_at) VALUES ($1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(session_id)
    .bind(expires_at)
    .execute(&store.writer)
    .await
    .or_db()?;
    Ok(())
}

pub(super) async fn sign_outs<DB: Backend>(
    store: &SqlStore<DB>,
    now: Timestamp,
) -> Result<Vec<(String, Timestamp)>> {
    sqlx::query_as("SELECT id, expires_at FROM console_sign_outs WHERE expires_at > $1")
        .bind(now)
        .fetch_all(&store.pool)
        .await
        .or_db()
}
